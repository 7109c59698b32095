using System.Diagnostics;
using FleetLearn.Core.Compression;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Model;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Random;
using FleetLearn.Core.Rounds;
using FleetLearn.Core.SecureAggregation;
using FleetLearn.Core.Training;

namespace FleetLearn.Simulation.Traces;

/// <summary>
/// A fleet whose vehicles may train only in their trace's eligible windows, run in simulated time on a
/// <see cref="ManualTimeProvider"/> (hours, not wall-clock): what the synchronous (<see cref="SyncTraceSimulation"/>) and the
/// buffered (<see cref="FedBuffSimulation"/>) runs share — data, local training, encoding, evaluation, the ledger and the
/// waste tally. The rounds themselves are Core's coordinators.
/// </summary>
public abstract partial class TraceFleetSimulation : IDisposable
{
    private readonly ITrainer _trainer;
    private readonly float[] _delta;
    private readonly Dictionary<WasteCause, long> _wasted = [];
    private readonly List<TracePoint> _points = [];
    private readonly Dictionary<string, int> _abortReasons = new(StringComparer.Ordinal);
    private double _lastEvaluation = double.NegativeInfinity;
    private long _tasks;

    /// <summary>Sets up the fleet; <paramref name="trace"/> must hold at least <see cref="SimulationOptions.Vehicles"/> vehicles.</summary>
    protected TraceFleetSimulation(SimulationOptions options, TraceSettings settings, AvailabilityTrace trace, LabeledData train, LabeledData test, Func<ModelSpec, int, ITrainer> createTrainer)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(trace);
        ArgumentNullException.ThrowIfNull(createTrainer);
        options.Validate();
        settings.Validate();
        if (options.SecAggMaliciousServer)
            throw new ArgumentException("--trace runs secure aggregation against a semi-honest server; --secagg-malicious is not simulated on traces.");
        if (options.Privacy is { AdaptiveClip: true } || options.Privacy is { Mode: NoiseMode.Distributed } && options.SecureAggregation == SecureAggregationMode.Off)
            throw new ArgumentException("--trace runs support --dp central with a fixed --clip, and --dp distributed with --secagg (each secure group's size is fixed before its members add their noise shares).");
        if (options.Codec.ErrorFeedback) throw new ArgumentException("--trace runs do not keep top-k error-feedback residuals.");
        if (settings.Hours > trace.Hours + 1e-9)
            throw new ArgumentException($"--hours {settings.Hours} exceeds the trace's {trace.Hours:0.##} hours.");
        Options = options;
        Settings = settings;
        Trace = trace.Take(options.Vehicles);
        Train = train;
        Test = test;
        Partitions = Partitioner.Split(train.Labels, options.Vehicles, options.Partition, options.Seed);
        Pipeline = options.CreatePipeline(Partitions.Max(p => p.Length));
        Rules = options.RoundRules(Partitions.Max(p => p.Length));
        // Distributed DP: charged at the σ equivalent of the discrete Gaussian shares the codec adds (as every runner charges).
        if (options.Privacy is { Mode: NoiseMode.Distributed } shares)
            Rules = Rules with { ChargedNoiseMultiplier = RoundRules.ChargeFor(CodecFor(1), Rules.MinNoiseShares, shares.NoiseMultiplier, shares.NoiseMultiplier) };
        Strategy = StrategyCatalog.Parse(options.Strategy, options.ServerLearningRate);
        InitialModel = ModelInitializer.Initialize(options.Model, options.Seed, options.Init);
        _trainer = createTrainer(options.Model, Math.Max(options.Batch, 256));
        _delta = new float[options.Model.ParameterCount];
        Clock = new ManualTimeProvider(Trace.Origin);
        if (options.Privacy is { } dp) Ledger = new PrivacyLedger(new PrivacyLedgerOptions(dp.EpsilonBudget ?? double.MaxValue, dp.Delta));
        ModelBytes = 4L * options.Model.ParameterCount;
        UpdateBytes = Pipeline.KeptCount * (long)(Pipeline.QuantizationBits ?? 32) / 8;
        VehicleIds = Enumerable.Range(0, options.Vehicles).Select(v => v.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        Participations = new int[options.Vehicles];
    }

    /// <summary>Creates the run <paramref name="settings"/> asks for (FedBuff with secure aggregation: a group per buffer).</summary>
    public static TraceFleetSimulation Create(SimulationOptions options, TraceSettings settings, AvailabilityTrace trace, LabeledData train, LabeledData test, Func<ModelSpec, int, ITrainer> createTrainer) =>
        settings.Mode != RoundMode.FedBuff ? new SyncTraceSimulation(options, settings, trace, train, test, createTrainer)
        : options.SecureAggregation != SecureAggregationMode.Off ? new SecureBufferGroups(options, settings, trace, train, test, createTrainer)
        : new FedBuffSimulation(options, settings, trace, train, test, createTrainer);

    /// <summary>The run's options.</summary>
    protected SimulationOptions Options { get; }

    /// <summary>The trace settings.</summary>
    protected TraceSettings Settings { get; }

    /// <summary>The fleet's trace (its first <see cref="SimulationOptions.Vehicles"/> vehicles).</summary>
    public AvailabilityTrace Trace { get; }

    /// <summary>Training data.</summary>
    protected LabeledData Train { get; }

    /// <summary>Test data.</summary>
    protected LabeledData Test { get; }

    /// <summary>Row indices held by each vehicle.</summary>
    public int[][] Partitions { get; }

    /// <summary>The update pipeline.</summary>
    public UpdatePipeline Pipeline { get; }

    /// <summary>The rules both coordinators read.</summary>
    protected RoundRules Rules { get; }

    /// <summary>The server strategy.</summary>
    public IFederatedStrategy Strategy { get; }

    /// <summary>The model at hour 0.</summary>
    protected float[] InitialModel { get; }

    /// <summary>The simulated clock (starts at the trace's origin).</summary>
    protected ManualTimeProvider Clock { get; }

    /// <summary>The aggregator's privacy ledger (null without DP).</summary>
    public PrivacyLedger? Ledger { get; }

    /// <summary>Bytes of a model download and of one encoded update (without the envelope header).</summary>
    protected long ModelBytes { get; }

    /// <summary>Bytes of one encoded update.</summary>
    protected long UpdateBytes { get; }

    /// <summary>Vehicle ids (their index as text).</summary>
    protected string[] VehicleIds { get; }

    /// <summary>Contributions to applied steps per vehicle.</summary>
    protected int[] Participations { get; }

    /// <summary>The global model now.</summary>
    public abstract ReadOnlySpan<float> GlobalModel { get; }

    /// <summary>Steps or rounds applied so far.</summary>
    protected abstract long Version { get; }

    /// <summary>Description of the training backend.</summary>
    public string Backend => _trainer.Description;

    /// <summary>Simulated hours since the origin (exact; the clock follows it to the tick).</summary>
    protected double Now { get; private set; }

    /// <summary>Vehicle compute hours spent on used and wasted updates.</summary>
    protected double UsedComputeHours { get; set; }

    /// <summary>Vehicle compute hours thrown away.</summary>
    protected double WastedComputeHours { get; set; }

    /// <summary>Updates in applied steps.</summary>
    protected long UsedUpdates { get; set; }

    /// <summary>Target reached (the run may stop).</summary>
    protected double? HoursToTarget { get; private set; }

    /// <summary>Runs the trace; <paramref name="progress"/> sees each evaluation.</summary>
    public TraceRunResult Run(Action<TracePoint>? progress = null, CancellationToken cancellationToken = default)
    {
        var clock = Stopwatch.StartNew();
        Evaluate(progress, force: true);
        var (applied, aborted, staleness) = RunCore(progress, cancellationToken);
        if (_points[^1].Hours < Now) Evaluate(progress, force: true);
        return new TraceRunResult
        {
            Mode = Settings.Mode,
            Points = [.. _points],
            HoursToTarget = HoursToTarget,
            Hours = Math.Min(Now, Settings.Hours),
            Applied = applied,
            Aborted = aborted,
            UsedUpdates = UsedUpdates,
            WastedUpdates = Enum.GetValues<WasteCause>().ToDictionary(c => c, c => _wasted.GetValueOrDefault(c)),
            ComputeHours = (UsedComputeHours, WastedComputeHours),
            Staleness = staleness,
            Participations = [.. Participations],
            AbortReasons = new Dictionary<string, int>(_abortReasons),
            Secure = SecureStats,
            CheckInsPerHour = CheckInLoad,
            MaxVehicleEpsilon = Ledger is null ? double.NaN : Ledger.Vehicles.Select(v => v.Epsilon).DefaultIfEmpty(0).Max(),
            VehicleLedgerEpsilon = VehicleEpsilons,
            VehicleDeclines = VehicleDeclines,
            Seconds = clock.Elapsed.TotalSeconds,
        };
    }

    /// <summary>Check-ins per simulated hour, where the mode counts them.</summary>
    protected virtual IReadOnlyList<long>? CheckInLoad => null;

    /// <summary>The mode's event loop: returns steps applied and aborted, and the staleness histogram.</summary>
    protected abstract (long Applied, long Aborted, IReadOnlyDictionary<long, long> Staleness) RunCore(Action<TracePoint>? progress, CancellationToken cancellationToken);

    /// <summary>Whether the run is over: past its hours, or at the target when it stops there.</summary>
    protected bool Done(double hour) => hour >= Settings.Hours || Settings.StopAtTarget && HoursToTarget is not null;

    /// <summary>Moves the simulated clock to <paramref name="hour"/> (never backwards).</summary>
    protected void AdvanceTo(double hour)
    {
        if (!(hour > Now)) return;
        Now = hour;
        var target = Trace.Origin + TimeSpan.FromHours(hour);
        if (target > Clock.GetUtcNow()) Clock.Advance(target - Clock.GetUtcNow());
    }

    /// <summary>Notes why a round or step was not applied.</summary>
    protected void NoteAbort(RoundOutcome outcome)
    {
        if (outcome is RoundAborted a) _abortReasons[a.Reason] = _abortReasons.GetValueOrDefault(a.Reason) + 1;
    }

    /// <summary>Counts one wasted update and its compute.</summary>
    protected void Waste(WasteCause cause, double computeHours)
    {
        _wasted[cause] = _wasted.GetValueOrDefault(cause) + 1;
        WastedComputeHours += Math.Max(0, computeHours);
    }

    /// <summary>Hours from check-in to upload for <paramref name="vehicle"/>, and the compute hours of them.</summary>
    protected (double Task, double Compute) TaskHours(int vehicle) =>
        (Settings.Resources.TaskHours(Options.Seed, vehicle, ModelBytes, UpdateBytes), Settings.Resources.ComputeHours(Options.Seed, vehicle));

    /// <summary>Whether the vehicle may still contribute: under its participation cap and (with a budget) its ε budget, in the aggregator's ledger and its own.</summary>
    protected bool MayContribute(int vehicle) =>
        Partitions[vehicle].Length > 0
        && (Settings.MaxParticipations is not { } cap || Participations[vehicle] < cap)
        && (Ledger is null || Options.Privacy?.EpsilonBudget is null || Ledger.CanParticipate(VehicleIds[vehicle], Rules.Charge))
        && HasBudgetLeft(vehicle);

    /// <summary>
    /// The vehicle trains on <paramref name="model"/> (the version it was handed) and encodes its update with
    /// <paramref name="codec"/> as cohort member / slot <paramref name="index"/>: the message the coordinator receives.
    /// </summary>
    protected (Guid Id, PlainUpdateMessage Message) TrainAndEncode(int vehicle, ReadOnlySpan<float> model, UpdatePipelineRound codec, ulong index)
    {
        long task = NextTask();
        var (delta, loss, weight) = TrainLocally(task, vehicle, model);
        var random = Randomness(task, vehicle);
        var envelope = codec.EncodePlain(delta, weight, index, random.UpdateId, random.Noise, random.Rounding, null, out _);
        return (random.UpdateId, new PlainUpdateMessage(envelope, loss));
    }

    /// <summary>Numbers the next local update (its data order, noise, rounding and id derive from the number).</summary>
    protected long NextTask() => ++_tasks;

    /// <summary>Update <paramref name="task"/>: <paramref name="vehicle"/> trains from <paramref name="model"/>; Δ is a buffer the next call reuses.</summary>
    protected (float[] Delta, double Loss, double Weight) TrainLocally(long task, int vehicle, ReadOnlySpan<float> model)
    {
        var settings = new LocalTrainingSettings(Options.LocalEpochs, Options.Batch, Options.ClientLearningRate, Options.ClientMomentum, Strategy.ProximalMu);
        double loss = LocalTraining.Run(_trainer, model, Train, Partitions[vehicle].ToArray(), settings, SimulationRandomness.DataOrder(Options.Seed, task, vehicle), _delta);
        double weight = Options.Privacy is not null ? 1 : Partitions[vehicle].Length;
        if (Options.WeightCap is { } wc) weight = Math.Min(weight, wc);
        return (_delta, loss, weight);
    }

    /// <summary>The vehicle-side randomness of update <paramref name="task"/> (noise share, rounding, update id).</summary>
    protected VehicleRoundRandomness Randomness(long task, int vehicle)
    {
        var rng = DeterministicRandom.Derive(Options.Seed, 0x1D1E, (ulong)task);
        var id = new Guid((int)rng.NextUInt64(), (short)rng.NextUInt64(), (short)rng.NextUInt64(), BitConverter.GetBytes(rng.NextUInt64()));
        return new VehicleRoundRandomness(SimulationRandomness.Noise(Options.Seed, task, vehicle), SimulationRandomness.Rounding(Options.Seed, task, vehicle), id);
    }

    /// <summary>The codec of round or version <paramref name="round"/> (the same derivation as the synchronous simulator).</summary>
    protected UpdatePipelineRound CodecFor(long round)
    {
        ulong codecSeed = DeterministicRandom.Derive(Options.Seed, 0xC0DE, (ulong)round).NextUInt64();
        // Distributed DP: each vehicle's share σC/√m, m the fewest shares a released sum may carry.
        double noiseStd = Options.Privacy is { Mode: NoiseMode.Distributed } dp ? dp.NoiseMultiplier * dp.ClipNorm / Math.Sqrt(Options.EffectiveMinParticipants) : 0;
        return Pipeline.ForRound((ulong)round, codecSeed, Options.Privacy?.ClipNorm ?? Options.NormBound, noiseStd);
    }

    /// <summary>Records a step's ledger charges, before its model is used (the order <see cref="ChargeEffect"/> asks for).</summary>
    protected void Apply(RoundStep step)
    {
        foreach (var charge in step.Effects.OfType<ChargeEffect>())
            foreach (var v in charge.Vehicles) Ledger?.Record(v, charge.Round, charge.Charge);
    }

    /// <summary>Evaluates the global model if an evaluation is due (or <paramref name="force"/>); notes the target.</summary>
    protected void Evaluate(Action<TracePoint>? progress, bool force = false)
    {
        double hour = Now;
        if (!force && hour - _lastEvaluation < Settings.EvaluateEveryHours) return;
        _lastEvaluation = hour;
        _trainer.LoadParameters(GlobalModel);
        var eval = _trainer.Evaluate(Test);
        var point = new TracePoint(hour, Version, eval.Accuracy, eval.Loss, UsedUpdates, _wasted.Values.Sum());
        _points.Add(point);
        if (HoursToTarget is null && eval.Accuracy >= Options.Target) HoursToTarget = hour;
        progress?.Invoke(point);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _trainer.Dispose();
        DisposeDeviceKeys();
        GC.SuppressFinalize(this);
    }
}
