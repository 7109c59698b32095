// Long (over 450 lines) because it is the in-process runner of whole rounds: selection, training, plaintext and secure
// phases and accounting in one place, each driving the same Core state machines as the workers.
using System.Diagnostics;
using System.Security.Cryptography;
using FleetLearn.Core.Compression;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Model;
using FleetLearn.Core.Numerics;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Random;
using FleetLearn.Core.Rounds;
using FleetLearn.Core.SecureAggregation;
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
public sealed partial class FleetSimulator : IDisposable
{
    private readonly SimulationOptions _options;
    private readonly LabeledData _train;
    private readonly LabeledData _test;
    private readonly ITrainer[] _trainers;
    private readonly float[][] _deltas;
    private readonly double[] _losses;
    private readonly IFederatedStrategy _strategy;
    private readonly float[] _global;
    private readonly PrivacyLedger? _ledger;
    private readonly PrivacyLedger? _vehicleLedgers;
    private readonly AdaptiveClipping? _adaptive;
    private readonly RandomizedResponse? _telemetry;
    private readonly long[] _telemetryReports;
    private readonly long[] _telemetryTruth;
    private readonly Dictionary<int, List<(int Value, int Report)>> _telemetryLog = [];
    private readonly Dictionary<int, MemoizedRandomizedResponse> _telemetryMemos = [];
    private readonly UpdatePipeline _pipeline;
    private readonly ErrorFeedbackStore? _residuals;
    private readonly Dictionary<int, ECDsa> _deviceKeys = [];
    private MaliciousAggregatorKit? _malicious;
    private double _clipNorm;
    private int _privateReleases;
    private double[]? _fleetRdp;

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
        _global = ModelInitializer.Initialize(options.Model, options.Seed, options.Init);
        ModelBytes = 4L * options.Model.ParameterCount;
        _clipNorm = options.NormBound ?? 0;
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
        _pipeline = options.CreatePipeline(Partitions.Max(p => p.Length));
        if (options.Codec.ErrorFeedback)
            _residuals = new ErrorFeedbackStore(options.Model.ParameterCount, (int)Math.Min(int.MaxValue, options.ErrorFeedbackMemoryBytes / (4L * options.Model.ParameterCount)));
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

    /// <summary>The aggregator's per-vehicle ledger (null when DP is off).</summary>
    public PrivacyLedger? Ledger => _ledger;

    /// <summary>The vehicles' own ledgers, one record per vehicle (null when DP is off).</summary>
    public PrivacyLedger? VehicleLedgers => _vehicleLedgers;

    /// <summary>Every telemetry report the aggregator received from <paramref name="vehicle"/>, with the true value the simulator knows.</summary>
    internal IReadOnlyList<(int Value, int Report)> TelemetryOf(int vehicle) => _telemetryLog.TryGetValue(vehicle, out var log) ? log : [];

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

    /// <summary>
    /// Fleet-level ε after the private releases so far, sampled Gaussian mechanism with q = K/N, each release at the σ the ledgers
    /// charge (the discrete Gaussian's σ equivalent where the codec adds one), composed in RDP.
    /// </summary>
    public double FleetEpsilon => _options.Privacy is not { } dp || _privateReleases == 0 ? (_options.Privacy is null ? double.NaN : 0)
        : RdpAccountant.GetPrivacySpent(RdpAccountant.DefaultOrders, _fleetRdp!, dp.Delta).Epsilon;

    /// <summary>Adds one private release at noise multiplier <paramref name="sigma"/> to the fleet's RDP curve.</summary>
    private void AddFleetRelease(double sigma)
    {
        var rdp = RdpAccountant.ComputeRdp(Math.Min(1.0, (double)_options.CohortSize / _options.Vehicles), sigma, 1, RdpAccountant.DefaultOrders);
        _fleetRdp ??= new double[rdp.Length];
        for (int i = 0; i < rdp.Length; i++) _fleetRdp[i] += rdp[i];
        _privateReleases++;
    }

    private static string VehicleId(int vehicle) => vehicle.ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Row indices held by each vehicle.</summary>
    public int[][] Partitions { get; }

    /// <summary>The strategy in use.</summary>
    public IFederatedStrategy Strategy => _strategy;

    /// <summary>Description of the training backend.</summary>
    public string Backend => _trainers[0].Description;

    /// <summary>Bytes of one model download and one plaintext float32 update.</summary>
    public long ModelBytes { get; }

    /// <summary>The update pipeline every vehicle and the aggregator use.</summary>
    public UpdatePipeline Pipeline => _pipeline;

    /// <summary>Error-feedback residuals (null unless the codec uses top-k + EF).</summary>
    public ErrorFeedbackStore? Residuals => _residuals;

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

    /// <summary>
    /// Runs one round: the forecast picks the cohort and each member's fate (<see cref="RoundPlanner"/>, over
    /// <see cref="CohortSelection"/>), the accepted vehicles train and protect their updates, and the round itself — admission,
    /// secure aggregation, close policy, ledger charge, central noise, strategy — is <see cref="RoundCoordinator"/>'s, the
    /// same machine the aggregator worker runs. Dropped, straggling and surplus vehicles simply never send.
    /// </summary>
    public RoundReport RunRound(int round, CancellationToken cancellationToken = default)
    {
        var clock = Stopwatch.StartNew();
        var settings = new RoundSettings(_options.CohortSize, _options.OverSelection, _options.EffectiveMinParticipants, _options.DeadlineSeconds);
        long Work(int v) => (long)Partitions[v].Length * _options.LocalEpochs;
        // A vehicle with no data has nothing to contribute: it never checks in. One whose next
        // participation would exceed its privacy budget declines.
        int declined = 0;
        var rules = ShardRules(Rules());
        double clipUsed = _clipNorm;
        double noiseStd = _options.Privacy is { Mode: NoiseMode.Distributed } ? UpdateNoiseMultiplier * _clipNorm / Math.Sqrt(rules.MinNoiseShares) : 0;
        ulong codecSeed = DeterministicRandom.Derive(_options.Seed, 0xC0DE, (ulong)round).NextUInt64();
        // Adaptive clipping under the distributed discrete Gaussian: each vehicle adds its share σ_b/√m_min on the unclipped
        // bit too, so the aggregator learns the count only noised, as it learns the sum (issue 13 item 9). Otherwise the
        // aggregator noises the count itself (central DP, or plaintext updates it sees anyway).
        double bitShare = _adaptive?.VehicleBitShare(_pipeline, rules.MinNoiseShares) ?? 0;
        var codec = _pipeline.ForRound((ulong)round, codecSeed, _options.Privacy is not null || _options.NormBound is not null ? _clipNorm : null, noiseStd, bitShare);
        // Charged (both ledgers, and the budget checks) at the σ equivalent of the noise this round's codec actually adds.
        if (_options.Privacy is { } dp) rules = rules with { ChargedNoiseMultiplier = RoundRules.ChargeFor(codec, rules.MinNoiseShares, dp.NoiseMultiplier, UpdateNoiseMultiplier) };
        bool Eligible(int v)
        {
            if (Partitions[v].Length == 0) return false;
            if (_ledger is null || _options.Privacy?.EpsilonBudget is null || _ledger.CanParticipate(VehicleId(v), rules.Charge)) return true;
            declined++;
            return false;
        }
        var forecast = RoundPlanner.Plan(round, _options.Vehicles, Work, settings, _options.Behavior, _options.Seed, Eligible);
        var accepted = forecast.Accepted.ToArray();
        var cohort = forecast.Selected.Select(p => p.Vehicle).ToArray();
        var tally = new Tally { Charge = rules.Privacy is null ? null : rules.Charge, Model = new Checkpoint(_options.Model, round - 1, _global) };
        RoundOutcome outcome;
        IReadOnlyList<int>? lostShards = null;
        int shards = 1;
        if (_pipeline.IsSecure && cohort.Length < 3)
            outcome = new RoundAborted { Round = round, Contributors = [], Silent = [], TrainLoss = double.NaN, ClosedAt = default, Reason = $"only {cohort.Length} vehicles selected; secure aggregation needs at least 3" };
        else if (_options.Shards > 1)
        {
            shards = LiveShards.Count;
            outcome = ShardedRound(round, cohort, accepted, codec, rules, tally, out lostShards, cancellationToken);
        }
        else
        {
            var time = new ManualTimeProvider();
            var secure = _pipeline.IsSecure ? SecureSetup(round, cohort) : null;
            using var coordinator = new RoundCoordinator(new RoundSetup
            {
                Round = round,
                Cohort = cohort.Select(VehicleId).ToArray(),
                Global = _global,
                Strategy = _strategy,
                Codec = codec,
                Rules = rules,
                Deadline = time.GetUtcNow() + TimeSpan.FromDays(1),
                CentralNoiseMultiplier = UpdateNoiseMultiplier,
                CentralNoise = rules.Privacy == NoiseMode.Central ? SimulationRandomness.CentralNoise(_options.Seed, round) : null,
                Secure = secure,
            }, time);
            if (secure is not null) SecureRound(coordinator, time, secure.Parameters, round, cohort, accepted, codec, tally, cancellationToken);
            else PlainRound(coordinator, time, round, cohort, accepted, codec, tally, cancellationToken);
            if (coordinator.Phase is not Closed)
            {
                // Whoever has not sent by now never will: the round closes at its deadline.
                time.Advance(TimeSpan.FromDays(1));
                coordinator.Tick();
            }
            outcome = coordinator.Outcome!;
        }
        foreach (var charge in tally.Charges) foreach (var v in charge.Vehicles) _ledger?.Record(v, charge.Round, charge.Charge);
        foreach (var vehicle in outcome.Contributors)
            if (_telemetry is not null) ReportTelemetry(round, int.Parse(vehicle, System.Globalization.CultureInfo.InvariantCulture));
        if (outcome is RoundApplied applied)
        {
            applied.Parameters.CopyTo(_global.AsSpan());
            if (_options.Privacy is not null) AddFleetRelease(rules.Charge.NoiseMultiplier);
            if (_adaptive is not null)
            {
                if (bitShare > 0) _adaptive.UpdateWithNoisedCount(outcome.UnclippedCount, _options.CohortSize);
                else _adaptive.Update(outcome.UnclippedCount, _options.CohortSize, new SeededNoiseSource(DeterministicRandom.Derive(_options.Seed, 0xADA9, (ulong)round).NextUInt64()));
                _clipNorm = _adaptive.ClipNorm;
            }
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
            TrainLoss = tally.Trained == 0 ? double.NaN : tally.LossSum / tally.Trained,
            Available = forecast.Available,
            Selected = forecast.Selected.Count,
            Participants = outcome.Contributors.Count,
            Dropped = forecast.CountOf(VehicleOutcome.Dropped),
            Stragglers = forecast.CountOf(VehicleOutcome.Straggler),
            Applied = outcome is RoundApplied,
            BytesDown = forecast.Selected.Count * ModelBytes + tally.ExtraBytesDown,
            BytesUp = tally.BytesUp,
            BytesUpPerVehicle = outcome.Contributors.Count == 0 ? 0 : outcome.Contributors.Sum(v => tally.SentBy.GetValueOrDefault(v)) / outcome.Contributors.Count,
            Clamped = tally.Clamped,
            AbortReason = (outcome as RoundAborted)?.Reason,
            Seconds = clock.Elapsed.TotalSeconds,
            SimulatedSeconds = forecast.SimulatedSeconds,
            Epsilon = FleetEpsilon,
            MaxVehicleEpsilon = _ledger is null ? double.NaN : _ledger.Vehicles.Select(v => v.Epsilon).DefaultIfEmpty(0).Max(),
            ClipNorm = _options.Privacy is null ? double.NaN : clipUsed,
            UnclippedCount = _adaptive is null ? null : outcome.UnclippedCount,
            Declined = declined + tally.Declined,
            Shards = shards,
            LostShards = lostShards ?? [],
        };
    }

    /// <summary>The fleet's rules as the coordinator reads them (the aggregator worker builds the same from its settings).</summary>
    private RoundRules Rules() => _options.RoundRules(Partitions.Max(p => p.Length));

    /// <summary>What the vehicles' side of a round measured (bytes, losses) and the ledger charges the coordinator asked for.</summary>
    private sealed class Tally
    {
        public double LossSum { get; set; }
        public long BytesUp { get; set; }
        public Dictionary<string, long> SentBy { get; } = new(StringComparer.Ordinal);
        public long ExtraBytesDown { get; set; }
        public long Clamped { get; set; }
        public List<ChargeEffect> Charges { get; } = [];

        /// <summary>The charge of one participation (null without DP): what each vehicle's own ledger records.</summary>
        public PrivacyCharge? Charge { get; init; }

        /// <summary>The global model the round starts from, as every vehicle receives it.</summary>
        public required Checkpoint Model { get; init; }

        /// <summary>Vehicles that finished training / that left the round on their own (budget spent when their data would leave).</summary>
        public int Trained { get; set; }

        public int Declined { get; set; }

        public void Sent(string vehicle, long bytes)
        {
            BytesUp += bytes;
            SentBy[vehicle] = SentBy.GetValueOrDefault(vehicle) + bytes;
        }

        /// <summary>Keeps the step's charges; returns its routed messages.</summary>
        public IEnumerable<SecAggMessage> Take(RoundStep step)
        {
            Charges.AddRange(step.Effects.OfType<ChargeEffect>());
            return step.Effects.OfType<RouteEffect>().Select(r => r.Message);
        }
    }

    private double Weight(int vehicle)
    {
        // Under DP every clipped update weighs the same, so the sum's sensitivity is C.
        double weight = _options.Privacy is not null ? 1 : Partitions[vehicle].Length;
        if (_options.WeightCap is { } cap) weight = Math.Min(weight, cap);
        return weight;
    }

    private static ulong PerVehicle(int round, int vehicle) => ((ulong)(uint)round << 32) | (uint)vehicle;

    private SeededNoiseSource NoiseFor(int round, int vehicle) => SimulationRandomness.Noise(_options.Seed, round, vehicle);

    private SeededNoiseSource RoundingFor(int round, int vehicle) => SimulationRandomness.Rounding(_options.Seed, round, vehicle);

    /// <summary>
    /// One vehicle's part of the round: the same <see cref="VehicleRound"/> the agent runs (its own ledger charged when its
    /// data leaves, its codec, its noise share and rounding from the simulation seed), over the in-memory link.
    /// </summary>
    private VehicleRound Vehicle(TimeProvider time, int round, int vehicle, int index, UpdatePipelineRound codec, Tally tally,
        SecAggParameters? secure = null, IDeviceKeyRegistry? registry = null) => new(new VehicleRoundSetup
    {
        Round = round,
        VehicleId = VehicleId(vehicle),
        CohortIndex = index,
        ModelVersion = tally.Model.Version,
        Spec = _options.Model,
        Deadline = DateTimeOffset.MaxValue,
        Codec = codec,
        Charge = tally.Charge,
        Ledger = _vehicleLedgers is null ? null : new PrivacyLedgerAccount(_vehicleLedgers, VehicleId(vehicle)),
        SecAgg = secure is null ? null : new SecAggVehicle(secure, index, DeviceKey(vehicle), registry!, time, _malicious?.AggregatorKey, SimulationRandomness.SecAggHolders(_options.Seed, round, vehicle)),
        Randomness = new VehicleRoundRandomness(NoiseFor(round, vehicle), RoundingFor(round, vehicle), UpdateId(round, vehicle)),
        Residual = secure is null ? _residuals?.GetOrCreate(vehicle) : null,
    }, time);

    /// <summary>
    /// Plaintext: the accepted vehicles receive the model, train and send (in parallel, one <see cref="VehicleRound"/> each), and
    /// their updates reach the coordinator in finishing order.
    /// </summary>
    private void PlainRound(RoundCoordinator coordinator, TimeProvider time, int round, int[] cohort, int[] accepted, UpdatePipelineRound codec, Tally tally, CancellationToken cancellationToken)
    {
        var index = CohortIndex(cohort);
        var sent = new SendUpdateEffect?[_trainers.Length];
        var clamped = new int[_trainers.Length];
        for (int start = 0; start < accepted.Length; start += _trainers.Length)
        {
            cancellationToken.ThrowIfCancellationRequested();
            int n = Math.Min(_trainers.Length, accepted.Length - start);
            void Work(int w)
            {
                int vehicle = accepted[start + w];
                using var v = Vehicle(time, round, vehicle, index[vehicle], codec, tally);
                if (v.OnModel(tally.Model) is not [TrainEffect]) throw new InvalidOperationException($"vehicle {vehicle} did not train round {round}");
                TrainVehicle(w, round, vehicle, cancellationToken);
                sent[w] = v.OnTrained(_deltas[w], _losses[w], Partitions[vehicle].Length, Weight(vehicle)).OfType<SendUpdateEffect>().SingleOrDefault();
                clamped[w] = v.Clamped;
            }
            if (n == 1) Work(0);
            else Parallel.For(0, n, new ParallelOptions { MaxDegreeOfParallelism = n, CancellationToken = cancellationToken }, Work);
            for (int w = 0; w < n; w++)
            {
                string id = VehicleId(accepted[start + w]);
                tally.Trained++;
                tally.LossSum += _losses[w];
                tally.Clamped += clamped[w];
                if (sent[w] is not { } update)
                {
                    tally.Declined++; // its own ledger refused: the update stays on the vehicle
                    continue;
                }
                tally.Take(coordinator.Receive(id, update.UpdateId, new PlainUpdateMessage(update.Body, update.TrainLoss)));
                tally.Sent(id, update.Body.Length);
            }
        }
    }

    private static Dictionary<int, int> CohortIndex(int[] cohort)
    {
        var index = new Dictionary<int, int>(cohort.Length);
        for (int i = 0; i < cohort.Length; i++) index[cohort[i]] = i;
        return index;
    }

    private Guid UpdateId(int round, int vehicle) => MessageId(round, vehicle, 0);

    /// <summary>A deterministic message id (the coordinator dedupes by id, as the aggregator does for resends).</summary>
    private Guid MessageId(int round, int vehicle, int message)
    {
        var rng = DeterministicRandom.Derive(_options.Seed, 0x1D1D + (ulong)message, PerVehicle(round, vehicle));
        Span<byte> bytes = stackalloc byte[16];
        BitConverter.TryWriteBytes(bytes, rng.NextUInt64());
        BitConverter.TryWriteBytes(bytes[8..], rng.NextUInt64());
        return new Guid(bytes);
    }

    private ECDsa DeviceKey(int vehicle)
    {
        lock (_deviceKeys)
        {
            if (!_deviceKeys.TryGetValue(vehicle, out var key)) _deviceKeys[vehicle] = key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            return key;
        }
    }

    /// <summary>The round's SecAgg parameters and the cohort's device keys (the coordinator owns and disposes the registry).</summary>
    private SecureRoundSetup SecureSetup(int round, int[] cohort)
    {
        int minNoiseShares = _options.Privacy is { Mode: NoiseMode.Distributed } ? Math.Min(cohort.Length, _options.EffectiveMinParticipants) : 1;
        var parameters = _pipeline.CreateSecAggParameters((ulong)round, cohort.Length, SimulationRandomness.SecAggSeed(_options.Seed, round), TimeSpan.FromMinutes(1), minNoiseShares);
        if (_options.SecAggMaliciousServer)
        {
            _malicious ??= new MaliciousAggregatorKit();
            return new SecureRoundSetup(MaliciousAggregatorKit.Harden(parameters), _malicious.Registry(cohort, DeviceKey, VehicleId), _trainers.Length, _malicious.AggregatorKey);
        }
        var registry = new ArrayRegistry(cohort.Length);
        for (int i = 0; i < cohort.Length; i++) registry.Add(i, DeviceKey(cohort[i]).ExportSubjectPublicKeyInfo());
        return new SecureRoundSetup(parameters, registry, _trainers.Length);
    }

    /// <summary>
    /// Secure aggregation: every selected vehicle runs <see cref="SecAggVehicle"/> — advertises keys and shares them; the
    /// accepted ones train, encode to fixed point and send masked inputs; dropped, straggling and surplus vehicles vanish after
    /// ShareKeys (the costliest case: their masks are rebuilt from shares). Messages travel through <see cref="SecAggCodec"/>
    /// to the coordinator, whose routed answers are the next phase's requests; their bytes are what <c>bytes_up</c> counts.
    /// </summary>
    private void SecureRound(RoundCoordinator coordinator, ManualTimeProvider time, SecAggParameters parameters, int round, int[] cohort, int[] accepted, UpdatePipelineRound codec, Tally tally, CancellationToken cancellationToken, bool diesAfterShareKeys = false)
    {
        int n = cohort.Length;
        int workers = _trainers.Length;
        // One key registry per worker: ECDsa verification from several threads on one instance is not documented as safe.
        // Against a malicious aggregator each vehicle checks the cohort's certificates against the device CA.
        var registries = new IDeviceKeyRegistry[workers];
        for (int r = 0; r < workers; r++)
        {
            if (_malicious is not null)
            {
                registries[r] = _malicious.Registry(cohort, DeviceKey, VehicleId);
                continue;
            }
            var registry = new ArrayRegistry(n);
            for (int i = 0; i < n; i++) registry.Add(i, DeviceKey(cohort[i]).ExportSubjectPublicKeyInfo());
            registries[r] = registry;
        }
        int WorkerOf(int i) => (int)((long)i * workers / n);
        var vehicles = new VehicleRound[n];
        for (int i = 0; i < n; i++) vehicles[i] = Vehicle(time, round, cohort[i], i, codec, tally, parameters, registries[WorkerOf(i)]);
        static byte[]? Answer(IReadOnlyList<VehicleEffect> effects) => effects.OfType<SendSecAggEffect>().Select(e => SecAggCodec.Encode(e.Message)).SingleOrDefault();
        var acceptedSet = accepted.ToHashSet();
        var order = accepted.Select((v, k) => (v, k)).ToDictionary(p => p.v, p => p.k);
        var outbox = new List<SecAggMessage>();
        int sequence = 0;
        bool InPhase(SecAggServerPhase phase) => coordinator.Phase is CollectingSecure s && s.Phase == phase;
        void Deliver(int i, byte[] data)
        {
            string id = VehicleId(cohort[i]);
            tally.Sent(id, data.Length);
            outbox.AddRange(tally.Take(coordinator.Receive(id, MessageId(round, cohort[i], ++sequence), new SecureUpdateMessage(SecAggCodec.Decode(data, parameters.Round)))));
        }
        try
        {
            // Runs the vehicles' side of one phase in parallel (each vehicle on its worker) and delivers the answers in cohort order.
            void Phase(IReadOnlyList<SecAggMessage> requests, Func<int, SecAggMessage, byte[]?> act)
            {
                var downlink = requests.Select(m => SecAggCodec.Encode(m)).ToArray();
                tally.ExtraBytesDown += downlink.Sum(d => (long)d.Length);
                var answers = new byte[]?[requests.Count];
                Parallel.For(0, workers, new ParallelOptions { MaxDegreeOfParallelism = workers, CancellationToken = cancellationToken }, w =>
                {
                    for (int j = 0; j < requests.Count; j++)
                    {
                        int i = requests[j].VehicleId;
                        if (WorkerOf(i) == w) answers[j] = act(i, SecAggCodec.Decode(downlink[j], parameters.Round));
                    }
                });
                outbox.Clear();
                for (int j = 0; j < answers.Length; j++)
                    if (answers[j] is { } a) Deliver(requests[j].VehicleId, a);
            }

            // Phase 0: AdvertiseKeys (every selected vehicle).
            var starts = new byte[n][];
            Parallel.For(0, workers, new ParallelOptions { MaxDegreeOfParallelism = workers }, w =>
            {
                for (int i = 0; i < n; i++) if (WorkerOf(i) == w) starts[i] = Answer(vehicles[i].Start())!;
            });
            for (int i = 0; i < n; i++) Deliver(i, starts[i]);
            // Phase 1: ShareKeys.
            if (InPhase(SecAggServerPhase.ShareKeys))
                Phase([.. outbox], (i, m) => Answer(vehicles[i].OnSecAgg(m)));
            if (diesAfterShareKeys) return; // a shard that died mid-round: nothing more reaches it
            // Phase 2: the accepted vehicles train and send masked inputs, in finishing order; the others drop out here.
            if (InPhase(SecAggServerPhase.MaskedInputCollection))
            {
                var forwarded = outbox.Where(m => acceptedSet.Contains(cohort[m.VehicleId])).OrderBy(m => order[cohort[m.VehicleId]]).ToArray();
                tally.ExtraBytesDown += outbox.Sum(m => SecAggCodec.EncodedLength(m));
                outbox.Clear();
                for (int start = 0; start < forwarded.Length; start += workers)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    int count = Math.Min(workers, forwarded.Length - start);
                    var answers = new byte[]?[count];
                    var clamped = new int[count];
                    void Work(int w)
                    {
                        var message = forwarded[start + w];
                        int i = message.VehicleId, vehicle = cohort[i];
                        if (vehicles[i].OnModel(tally.Model) is not [TrainEffect]) throw new InvalidOperationException($"vehicle {vehicle} did not train round {round}");
                        vehicles[i].OnSecAgg(SecAggCodec.Decode<ForwardedSharesMessage>(SecAggCodec.Encode(message), parameters.Round)); // held until the input is ready
                        TrainVehicle(w, round, vehicle, cancellationToken);
                        answers[w] = Answer(vehicles[i].OnTrained(_deltas[w], _losses[w], Partitions[vehicle].Length, Weight(vehicle)));
                        clamped[w] = vehicles[i].Clamped;
                    }
                    if (count == 1) Work(0);
                    else Parallel.For(0, count, new ParallelOptions { MaxDegreeOfParallelism = count, CancellationToken = cancellationToken }, Work);
                    for (int w = 0; w < count; w++)
                    {
                        tally.Trained++;
                        tally.LossSum += _losses[w];
                        tally.Clamped += clamped[w];
                        if (answers[w] is { } masked) Deliver(forwarded[start + w].VehicleId, masked);
                        else tally.Declined++; // its own ledger refused: it drops out here
                    }
                }
                if (InPhase(SecAggServerPhase.MaskedInputCollection))
                {
                    // The rest of the cohort never answers: the phase closes at its deadline and they count as dropped.
                    time.Advance(parameters.PhaseTimeout);
                    outbox.AddRange(tally.Take(coordinator.Tick()));
                }
            }
            // Against a malicious aggregator: every survivor signs U3 (ConsistencyCheck).
            if (InPhase(SecAggServerPhase.ConsistencyCheck))
                Phase([.. outbox], (i, m) => Answer(vehicles[i].OnSecAgg(m)));
            // Phase 3: Unmasking.
            if (InPhase(SecAggServerPhase.Unmasking))
                Phase([.. outbox], (i, m) => Answer(vehicles[i].OnSecAgg(m)));
        }
        finally
        {
            foreach (var v in vehicles) v?.Dispose();
            foreach (var r in registries) (r as IDisposable)?.Dispose();
        }
    }

    /// <summary>Device public keys of one round's cohort, by cohort index.</summary>
    internal sealed class ArrayRegistry(int n) : IDeviceKeyRegistry, IDisposable
    {
        private readonly ECDsa?[] _keys = new ECDsa?[n];

        public void Add(int index, byte[] subjectPublicKeyInfo)
        {
            var key = ECDsa.Create();
            key.ImportSubjectPublicKeyInfo(subjectPublicKeyInfo, out _);
            _keys[index] = key;
        }

        public ECDsa? FindDeviceKey(int vehicleId) => vehicleId >= 0 && vehicleId < _keys.Length ? _keys[vehicleId] : null;

        public void Dispose()
        {
            foreach (var k in _keys) k?.Dispose();
        }
    }

    /// <summary>Test loss and accuracy of the current global model.</summary>
    public EvaluationResult Evaluate()
    {
        _trainers[0].LoadParameters(_global);
        return _trainers[0].Evaluate(_test);
    }

    /// <summary>Local training on the vehicle (the one function the agent runs too): leaves Δ in the worker's buffer.</summary>
    private void TrainVehicle(int worker, int round, int vehicle, CancellationToken cancellationToken)
    {
        var settings = new LocalTrainingSettings(_options.LocalEpochs, _options.Batch, _options.ClientLearningRate, _options.ClientMomentum, _strategy.ProximalMu);
        _losses[worker] = LocalTraining.Run(_trainers[worker], _global, _train, Partitions[vehicle].ToArray(), settings,
            SimulationRandomness.DataOrder(_options.Seed, round, vehicle), _deltas[worker], cancellationToken);
    }

    private void ReportTelemetry(int round, int vehicle)
    {
        // The vehicle reports one class it saw this period (a label drawn from its data) through
        // k-ary randomized response; the aggregator only ever sees the perturbed report.
        var rows = Partitions[vehicle];
        var rng = DeterministicRandom.Derive(_options.Seed, 0x7E1E, ((ulong)(uint)round << 32) | (uint)vehicle);
        int label = _train.Labels[rows[rng.NextInt(rows.Length)]];
        var source = new SeededNoiseSource(rng.NextUInt64());
        // Permanent randomized response (issue 13 item 9): the vehicle keeps its first report of each value and repeats it,
        // so averaging rounds undoes nothing; that first report is charged to the vehicle's ledger (it charges itself
        // before it sends, and declines when its budget cannot afford it) and to the aggregator's.
        if (!_telemetryMemos.TryGetValue(vehicle, out var memo)) _telemetryMemos[vehicle] = memo = new MemoizedRandomizedResponse(_telemetry!);
        string id = VehicleId(vehicle);
        if (!memo.Memo.ContainsKey(label) && _vehicleLedgers is not null && !_vehicleLedgers.TryRecord(id, memo.ReleaseId(label), memo.ChargeFor(), out _))
            return;
        int report = memo.Report(label, source, out bool first);
        if (first) _ledger?.Record(id, memo.ReleaseId(label), memo.ChargeFor());
        _telemetryReports[report]++;
        _telemetryTruth[label]++;
        if (!_telemetryLog.TryGetValue(vehicle, out var log)) _telemetryLog[vehicle] = log = [];
        log.Add((label, report));
    }

    public void Dispose()
    {
        _malicious?.Dispose();
        foreach (var t in _trainers) t.Dispose();
        foreach (var k in _deviceKeys.Values) k.Dispose();
    }
}
