using System.Diagnostics;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Model;
using FleetLearn.Core.Numerics;
using FleetLearn.Core.Privacy;
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
/// vehicle) and updates are folded in the plan's order. For the same reason the simulator's DP
/// noise comes from a seeded generator: a simulation is an experiment, not a deployment. The
/// agent and aggregator use the cryptographically secure source.
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
    private readonly bool[] _unclipped;
    private readonly PrivacyLedger? _ledger;
    private readonly PrivacyLedger? _vehicleLedgers;
    private readonly AdaptiveClipping? _adaptive;
    private readonly RandomizedResponse? _telemetry;
    private readonly long[] _telemetryReports;
    private readonly long[] _telemetryTruth;
    private double _clipNorm;
    private int _privateReleases;

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
        _unclipped = new bool[workers];
        ModelBytes = 4L * options.Model.ParameterCount;
        if (options.Privacy is { } dp)
        {
            _clipNorm = dp.ClipNorm;
            // The ledger accounts each participation as the full Gaussian mechanism (q = 1): the
            // per-vehicle guarantee that holds without assuming uniform sampling.
            _ledger = new PrivacyLedger(new PrivacyLedgerOptions(dp.EpsilonBudget ?? double.MaxValue, dp.Delta));
            // Each vehicle keeps its own record too (one entry per vehicle; in a deployment it lives
            // in the agent's store) and refuses to send when its own budget would be exceeded.
            _vehicleLedgers = new PrivacyLedger(new PrivacyLedgerOptions(dp.EpsilonBudget ?? double.MaxValue, dp.Delta));
            if (dp.AdaptiveClip)
                // σ_b = K/20 as Andrew et al. suggest, but never below σ so that σ_Δ stays close to σ on small cohorts.
                _adaptive = new AdaptiveClipping(dp.ClipNorm, dp.TargetQuantile, dp.ClipLearningRate, countNoiseStdDev: Math.Max(options.CohortSize / 20.0, dp.NoiseMultiplier));
        }
        _telemetryReports = new long[train.ClassCount];
        _telemetryTruth = new long[train.ClassCount];
        if (options.TelemetryEpsilon is { } te) _telemetry = new RandomizedResponse(train.ClassCount, te);
    }

    /// <summary>
    /// Noise multiplier applied to the update sum. With adaptive clipping part of the privacy
    /// budget goes to the noised clipped-count, so the update gets σ_Δ = (σ⁻² − (2σ_b)⁻²)^(−1/2)
    /// (Andrew et al. 2021, §3) and the pair is accounted as σ.
    /// </summary>
    private double UpdateNoiseMultiplier =>
        _options.Privacy is not { } dp ? 0
        : _adaptive is null ? dp.NoiseMultiplier
        : AdaptiveClipping.UpdateNoiseMultiplier(dp.NoiseMultiplier, _adaptive.CountNoiseStdDev);

    /// <summary>m_min of distributed noise: the fewest survivors whose shares still add up to σ²C².</summary>
    private int MinSurvivors => _options.MinParticipants ?? _options.CohortSize;

    /// <summary>The aggregator's per-vehicle ledger (null when DP is off).</summary>
    public PrivacyLedger? Ledger => _ledger;

    /// <summary>The vehicles' own ledgers, one record per vehicle (null when DP is off).</summary>
    public PrivacyLedger? VehicleLedgers => _vehicleLedgers;

    /// <summary>Telemetry: (estimated, true) label frequencies over every report so far; null when telemetry is off.</summary>
    public (double[] Estimated, double[] True)? TelemetryEstimate
    {
        get
        {
            if (_telemetry is null) return null;
            long n = _telemetryTruth.Sum();
            if (n == 0) return null;
            return (_telemetry.EstimateFrequencies(_telemetryReports), _telemetryTruth.Select(c => c / (double)n).ToArray());
        }
    }

    /// <summary>Fleet-level ε after the private releases so far, sampled Gaussian mechanism with q = K/N.</summary>
    public double FleetEpsilon => _options.Privacy is not { } dp || _privateReleases == 0 ? (_options.Privacy is null ? double.NaN : 0)
        : RdpAccountant.GetEpsilon(Math.Min(1.0, (double)_options.CohortSize / _options.Vehicles), dp.NoiseMultiplier, _privateReleases, dp.Delta).Epsilon;

    private static string VehicleId(int vehicle) => vehicle.ToString(System.Globalization.CultureInfo.InvariantCulture);

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
        // A vehicle with no data has nothing to contribute: it never checks in. One whose next
        // participation would exceed its privacy budget declines.
        int declined = 0;
        var charge = _options.Privacy is { } privacy ? PrivacyCharge.Participation(privacy.NoiseMultiplier) : default;
        bool Eligible(int v)
        {
            if (Partitions[v].Length == 0) return false;
            if (_ledger is null || _options.Privacy?.EpsilonBudget is null || _ledger.CanParticipate(VehicleId(v), charge)) return true;
            declined++;
            return false;
        }
        var plan = RoundPlanner.Plan(round, _options.Vehicles, Work, settings, _options.Behavior, _options.Seed, Eligible);
        var accepted = plan.Accepted.ToArray();
        var aggregator = _strategy.CreateAggregator(_global.Length);
        double lossSum = 0, clipUsed = _clipNorm;
        int unclippedCount = 0;
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
                if (_vehicleLedgers is not null)
                {
                    // The vehicle checks and records its own spend before its update leaves it.
                    if (!_vehicleLedgers.TryRecord(VehicleId(vehicle), round, charge, out _))
                    {
                        declined++;
                        continue;
                    }
                }
                // Under DP every clipped update weighs the same, so the sum's sensitivity is C.
                double weight = _options.Privacy is not null ? 1 : Partitions[vehicle].Length;
                if (_options.WeightCap is { } cap) weight = Math.Min(weight, cap);
                aggregator.Add(_deltas[w], weight);
                lossSum += _losses[w];
                if (_unclipped[w]) unclippedCount++;
                // The spend is recorded before the update is used (a crash can only over-count ε).
                _ledger?.Record(VehicleId(vehicle), round, charge);
                if (_telemetry is not null) ReportTelemetry(round, vehicle);
            }
        }
        bool applied = aggregator.Count >= settings.MinParticipants && aggregator.Count > 0;
        if (_options.Privacy is { Mode: NoiseMode.Distributed } && aggregator.Count < MinSurvivors)
            applied = false; // fewer shares of noise than accounted: the sum must not be released
        if (applied)
        {
            aggregator.Complete(_combined);
            if (_options.Privacy is { Mode: NoiseMode.Central })
            {
                // N(0, σ²C²) on the sum is N(0, σ²C²/n²) on the mean of n updates.
                var source = new SeededNoiseSource(DeterministicRandom.Derive(_options.Seed, 0xCE27, (ulong)round).NextUInt64());
                GaussianNoise.Add(_combined, UpdateNoiseMultiplier * _clipNorm / aggregator.Count, source);
            }
            if (_options.Privacy is not null) _privateReleases++;
            if (_adaptive is not null)
            {
                var source = new SeededNoiseSource(DeterministicRandom.Derive(_options.Seed, 0xADA9, (ulong)round).NextUInt64());
                _adaptive.Update(unclippedCount, _options.CohortSize, source);
                _clipNorm = _adaptive.ClipNorm;
            }
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
            Epsilon = FleetEpsilon,
            MaxVehicleEpsilon = _ledger is null ? double.NaN : _ledger.Vehicles.Select(v => v.Epsilon).DefaultIfEmpty(0).Max(),
            ClipNorm = _options.Privacy is null ? double.NaN : clipUsed,
            Declined = declined,
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
        if (_options.Privacy is { } dp)
        {
            // On the vehicle: clip to C, then (distributed mode) add this vehicle's share of the noise.
            double norm = L2Clipping.Clip(delta, _clipNorm);
            _unclipped[worker] = AdaptiveClipping.IsUnclipped(norm, _clipNorm);
            if (dp.Mode == NoiseMode.Distributed)
            {
                var source = new SeededNoiseSource(DeterministicRandom.Derive(_options.Seed, 0xD157, ((ulong)(uint)round << 32) | (uint)vehicle).NextUInt64());
                GaussianNoise.Add(delta, UpdateNoiseMultiplier * _clipNorm / Math.Sqrt(MinSurvivors), source);
            }
        }
    }

    private void ReportTelemetry(int round, int vehicle)
    {
        // The vehicle reports one class it saw this period (a label drawn from its data) through
        // k-ary randomized response; the aggregator only ever sees the perturbed report.
        var rows = Partitions[vehicle];
        var rng = DeterministicRandom.Derive(_options.Seed, 0x7E1E, ((ulong)(uint)round << 32) | (uint)vehicle);
        int label = _train.Labels[rows[rng.NextInt(rows.Length)]];
        var source = new SeededNoiseSource(rng.NextUInt64());
        _telemetryReports[_telemetry!.Perturb(label, source)]++;
        _telemetryTruth[label]++;
    }

    public void Dispose()
    {
        foreach (var t in _trainers) t.Dispose();
    }
}
