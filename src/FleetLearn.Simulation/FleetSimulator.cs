using System.Diagnostics;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Model;
using FleetLearn.Core.Numerics;
using FleetLearn.Core.Random;
using FleetLearn.Core.Training;

namespace FleetLearn.Simulation;

/// <summary>
/// Runs federated rounds over a virtual fleet on one machine with the real trainer and
/// aggregation code. A vehicle costs its partition's row indices and nothing else: its
/// availability, dropout and speed are pure functions of the seed (see <see cref="FleetBehavior"/>),
/// so fleets of 10,000+ vehicles fit in little memory. Updates are folded into the aggregator as
/// they are produced; only <see cref="SimulationOptions.Workers"/> update buffers exist at once.
/// </summary>
/// <remarks>
/// Vehicles that the behaviour model says will drop out or miss the deadline are not trained: their
/// work would be discarded anyway. Their download still counts in <see cref="RoundReport.BytesDown"/>.
/// Results are identical for any worker count: each vehicle's training is seeded by (seed, round,
/// vehicle) and updates are folded in the plan's order.
/// </remarks>
public sealed class FleetSimulator : IDisposable
{
    private readonly SimulationOptions _options;
    private readonly LabeledData _train;
    private readonly LabeledData _test;
    private readonly ITrainer[] _trainers;
    private readonly float[][] _deltas;
    private readonly double[] _losses;
    private readonly IFederatedStrategy _strategy;
    private readonly float[] _global;
    private readonly float[] _combined;

    /// <summary>Creates a simulator; <paramref name="createTrainer"/> is called once per worker.</summary>
    public FleetSimulator(SimulationOptions options, LabeledData train, LabeledData test, Func<ModelSpec, int, ITrainer> createTrainer)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(train);
        ArgumentNullException.ThrowIfNull(test);
        ArgumentNullException.ThrowIfNull(createTrainer);
        options.Validate();
        if (options.Model.InputSize != train.FeatureSize || options.Model.OutputSize != train.ClassCount)
            throw new ArgumentException($"Model {options.Model} does not fit the data: it needs {train.FeatureSize} inputs and {train.ClassCount} outputs.");
        _options = options;
        _train = train;
        _test = test;
        _strategy = StrategyCatalog.Parse(options.Strategy, options.ServerLearningRate);
        Partitions = Partitioner.Split(train.Labels, options.Vehicles, options.Partition, options.Seed);
        int workers = Math.Min(options.Workers, options.CohortSize);
        _trainers = new ITrainer[workers];
        _deltas = new float[workers][];
        _losses = new double[workers];
        for (int w = 0; w < workers; w++)
        {
            _trainers[w] = createTrainer(options.Model, Math.Max(options.Batch, 256));
            _deltas[w] = new float[options.Model.ParameterCount];
        }
        _global = ModelInitializer.Initialize(options.Model, options.Seed);
        _combined = new float[options.Model.ParameterCount];
        ModelBytes = 4L * options.Model.ParameterCount;
    }

    /// <summary>Row indices held by each vehicle.</summary>
    public int[][] Partitions { get; }

    /// <summary>The strategy in use.</summary>
    public IFederatedStrategy Strategy => _strategy;

    /// <summary>Description of the training backend.</summary>
    public string Backend => _trainers[0].Description;

    /// <summary>Bytes of one model download and one plaintext float32 update.</summary>
    public long ModelBytes { get; }

    /// <summary>The current global model (read-only view).</summary>
    public ReadOnlySpan<float> GlobalModel => _global;

    /// <summary>Runs every round, yielding a report after each.</summary>
    public IEnumerable<RoundReport> Run(CancellationToken cancellationToken = default)
    {
        for (int round = 1; round <= _options.Rounds; round++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            yield return RunRound(round, cancellationToken);
        }
    }

    /// <summary>Runs one round: plan, train the accepted vehicles, aggregate, apply, evaluate.</summary>
    public RoundReport RunRound(int round, CancellationToken cancellationToken = default)
    {
        var clock = Stopwatch.StartNew();
        var settings = new RoundSettings(_options.CohortSize, _options.OverSelection, _options.MinParticipants ?? 1, _options.DeadlineSeconds);
        long Work(int v) => (long)Partitions[v].Length * _options.LocalEpochs;
        // A vehicle with no data has nothing to contribute: it never checks in.
        var plan = RoundPlanner.Plan(round, _options.Vehicles, Work, settings, _options.Behavior, _options.Seed, v => Partitions[v].Length > 0);
        var accepted = plan.Accepted.ToArray();
        var aggregator = _strategy.CreateAggregator(_global.Length);
        double lossSum = 0;
        for (int start = 0; start < accepted.Length; start += _trainers.Length)
        {
            cancellationToken.ThrowIfCancellationRequested();
            int n = Math.Min(_trainers.Length, accepted.Length - start);
            if (n == 1)
            {
                TrainVehicle(0, round, accepted[start]);
            }
            else
            {
                Parallel.For(0, n, new ParallelOptions { MaxDegreeOfParallelism = n, CancellationToken = cancellationToken },
                    w => TrainVehicle(w, round, accepted[start + w]));
            }
            for (int w = 0; w < n; w++)
            {
                int vehicle = accepted[start + w];
                double weight = Partitions[vehicle].Length;
                if (_options.WeightCap is { } cap) weight = Math.Min(weight, cap);
                aggregator.Add(_deltas[w], weight);
                lossSum += _losses[w];
            }
        }
        bool applied = aggregator.Count >= settings.MinParticipants && aggregator.Count > 0;
        if (applied)
        {
            aggregator.Complete(_combined);
            _strategy.ApplyUpdate(_global, _combined);
            if (!VectorMath.AllFinite(_global))
                throw new InvalidOperationException($"Round {round}: the global model diverged (NaN or ∞). Lower the learning rates.");
        }

        double accuracy = double.NaN, loss = double.NaN;
        if (round % _options.EvaluateEvery == 0 || round == _options.Rounds)
        {
            var eval = Evaluate();
            accuracy = eval.Accuracy;
            loss = eval.Loss;
        }
        return new RoundReport
        {
            Round = round,
            TestAccuracy = accuracy,
            TestLoss = loss,
            TrainLoss = accepted.Length == 0 ? double.NaN : lossSum / accepted.Length,
            Available = plan.Available,
            Selected = plan.Selected.Count,
            Participants = aggregator.Count,
            Dropped = plan.CountOf(VehicleOutcome.Dropped),
            Stragglers = plan.CountOf(VehicleOutcome.Straggler),
            Applied = applied,
            BytesDown = plan.Selected.Count * ModelBytes,
            BytesUp = accepted.Length * ModelBytes,
            Seconds = clock.Elapsed.TotalSeconds,
            SimulatedSeconds = plan.SimulatedSeconds,
        };
    }

    /// <summary>Test loss and accuracy of the current global model.</summary>
    public EvaluationResult Evaluate()
    {
        _trainers[0].LoadParameters(_global);
        return _trainers[0].Evaluate(_test);
    }

    private void TrainVehicle(int worker, int round, int vehicle)
    {
        var trainer = _trainers[worker];
        trainer.LoadParameters(_global);
        trainer.SetProximalTerm(_strategy.ProximalMu > 0 ? _global : [], _strategy.ProximalMu);
        var rows = Partitions[vehicle].ToArray();
        var rng = DeterministicRandom.Derive(_options.Seed, 0xC11E, ((ulong)(uint)round << 32) | (uint)vehicle);
        var sgd = new SgdOptions(_options.ClientLearningRate, _options.ClientMomentum);
        var schedule = new LearningRateSchedule.Constant(_options.ClientLearningRate);
        long step = 0;
        TrainingLoop.EpochResult last = default;
        for (int e = 0; e < _options.LocalEpochs; e++)
            last = TrainingLoop.RunEpoch(trainer, _train, rows, _options.Batch, sgd, schedule, ref step, 0, rng);
        var delta = _deltas[worker];
        trainer.ReadParameters(delta);
        VectorMath.Subtract(delta, _global, delta);
        _losses[worker] = last.MeanLoss;
    }

    public void Dispose()
    {
        foreach (var t in _trainers) t.Dispose();
    }
}
