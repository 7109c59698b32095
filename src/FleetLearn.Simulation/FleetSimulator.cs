using System.Diagnostics;
using System.Security.Cryptography;
using FleetLearn.Core.Compression;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Model;
using FleetLearn.Core.Numerics;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Random;
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
    private readonly PrivacyLedger? _ledger;
    private readonly PrivacyLedger? _vehicleLedgers;
    private readonly AdaptiveClipping? _adaptive;
    private readonly RandomizedResponse? _telemetry;
    private readonly long[] _telemetryReports;
    private readonly long[] _telemetryTruth;
    private readonly UpdatePipeline _pipeline;
    private readonly ErrorFeedbackStore? _residuals;
    private readonly Dictionary<int, ECDsa> _deviceKeys = [];
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

    /// <summary>Runs one round: plan, train the accepted vehicles, encode and aggregate their updates, apply, evaluate.</summary>
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
        if (_vehicleLedgers is not null)
        {
            // Each vehicle checks and records its own spend before its update leaves it; one whose
            // own record says the round would exceed its budget declines.
            var sending = new List<int>(accepted.Length);
            foreach (int vehicle in accepted)
            {
                if (_vehicleLedgers.TryRecord(VehicleId(vehicle), round, charge, out _)) sending.Add(vehicle);
                else declined++;
            }
            accepted = sending.ToArray();
        }
        double clipUsed = _clipNorm;
        double noiseStd = _options.Privacy is { Mode: NoiseMode.Distributed } ? UpdateNoiseMultiplier * _clipNorm / Math.Sqrt(MinSurvivors) : 0;
        ulong codecSeed = DeterministicRandom.Derive(_options.Seed, 0xC0DE, (ulong)round).NextUInt64();
        var codecRound = _pipeline.ForRound((ulong)round, codecSeed, _options.Privacy is not null || _options.NormBound is not null ? _clipNorm : null, noiseStd);

        var outcome = _pipeline.IsSecure
            ? SecureRound(round, plan, accepted, codecRound, cancellationToken)
            : PlainRound(round, accepted, codecRound, cancellationToken);
        foreach (int vehicle in outcome.Contributors)
        {
            // The spend is recorded before the update is used (a crash can only over-count ε).
            _ledger?.Record(VehicleId(vehicle), round, charge);
            if (_telemetry is not null) ReportTelemetry(round, vehicle);
        }
        int count = outcome.Contributors.Count;
        bool applied = outcome.Mean is not null && count >= settings.MinParticipants && count > 0;
        if (_options.Privacy is { Mode: NoiseMode.Distributed } && count < MinSurvivors)
            applied = false; // fewer shares of noise than accounted: the sum must not be released
        if (applied)
        {
            var combined = outcome.Mean!;
            if (_options.Privacy is { Mode: NoiseMode.Central })
            {
                // N(0, σ²C²) on the sum is N(0, σ²C²/n²) on the mean of n updates.
                var source = SimulationRandomness.CentralNoise(_options.Seed, round);
                GaussianNoise.Add(combined, UpdateNoiseMultiplier * _clipNorm / count, source);
            }
            if (_options.Privacy is not null) _privateReleases++;
            if (_adaptive is not null)
            {
                var source = new SeededNoiseSource(DeterministicRandom.Derive(_options.Seed, 0xADA9, (ulong)round).NextUInt64());
                _adaptive.Update(outcome.UnclippedCount, _options.CohortSize, source);
                _clipNorm = _adaptive.ClipNorm;
            }
            _strategy.ApplyUpdate(_global, combined);
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
            TrainLoss = accepted.Length == 0 ? double.NaN : outcome.LossSum / accepted.Length,
            Available = plan.Available,
            Selected = plan.Selected.Count,
            Participants = count,
            Dropped = plan.CountOf(VehicleOutcome.Dropped),
            Stragglers = plan.CountOf(VehicleOutcome.Straggler),
            Applied = applied,
            BytesDown = plan.Selected.Count * ModelBytes + outcome.ExtraBytesDown,
            BytesUp = outcome.BytesUp,
            BytesUpPerVehicle = outcome.AcceptedBytesUp.Count == 0 ? 0 : outcome.AcceptedBytesUp.Sum() / outcome.AcceptedBytesUp.Count,
            Clamped = outcome.Clamped,
            SecAggAbortReason = outcome.AbortReason,
            Seconds = clock.Elapsed.TotalSeconds,
            SimulatedSeconds = plan.SimulatedSeconds,
            Epsilon = FleetEpsilon,
            MaxVehicleEpsilon = _ledger is null ? double.NaN : _ledger.Vehicles.Select(v => v.Epsilon).DefaultIfEmpty(0).Max(),
            ClipNorm = _options.Privacy is null ? double.NaN : clipUsed,
            Declined = declined,
        };
    }

    /// <summary>What the upload half of a round produced.</summary>
    private sealed class RoundOutcome
    {
        public List<int> Contributors { get; } = [];
        public float[]? Mean { get; set; }
        public int UnclippedCount { get; set; }
        public double LossSum { get; set; }
        public long BytesUp { get; set; }
        public List<long> AcceptedBytesUp { get; } = [];
        public long ExtraBytesDown { get; set; }
        public long Clamped { get; set; }
        public string? AbortReason { get; set; }
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

    /// <summary>Plaintext: each vehicle encodes an envelope; the aggregator decodes it and folds it in the plan's order.</summary>
    private RoundOutcome PlainRound(int round, int[] accepted, UpdatePipelineRound codec, CancellationToken cancellationToken)
    {
        var result = new RoundOutcome();
        var aggregator = _strategy.CreateAggregator(_global.Length);
        var envelopes = new byte[_trainers.Length][];
        var clamped = new int[_trainers.Length];
        for (int start = 0; start < accepted.Length; start += _trainers.Length)
        {
            cancellationToken.ThrowIfCancellationRequested();
            int n = Math.Min(_trainers.Length, accepted.Length - start);
            void Work(int w)
            {
                int vehicle = accepted[start + w];
                TrainVehicle(w, round, vehicle);
                var residual = _residuals?.GetOrCreate(vehicle);
                envelopes[w] = codec.EncodePlain(_deltas[w], Weight(vehicle), (ulong)vehicle, UpdateId(round, vehicle), NoiseFor(round, vehicle), RoundingFor(round, vehicle), residual, out var info);
                clamped[w] = info.Clamped;
            }
            if (n == 1) Work(0);
            else Parallel.For(0, n, new ParallelOptions { MaxDegreeOfParallelism = n, CancellationToken = cancellationToken }, Work);
            for (int w = 0; w < n; w++)
            {
                int vehicle = accepted[start + w];
                var decoded = codec.Decode(envelopes[w], (ulong)vehicle);
                aggregator.Add(decoded.Delta, decoded.Header.Weight);
                result.Contributors.Add(vehicle);
                result.LossSum += _losses[w];
                result.BytesUp += envelopes[w].Length;
                result.AcceptedBytesUp.Add(envelopes[w].Length);
                result.Clamped += clamped[w];
                if (decoded.Header.Unclipped) result.UnclippedCount++;
            }
        }
        if (aggregator.Count > 0)
        {
            result.Mean = new float[_global.Length];
            aggregator.Complete(result.Mean);
        }
        return result;
    }

    private Guid UpdateId(int round, int vehicle)
    {
        var rng = DeterministicRandom.Derive(_options.Seed, 0x1D1D, PerVehicle(round, vehicle));
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

    /// <summary>
    /// Secure aggregation with the real state machines: every selected vehicle advertises keys and shares them; the accepted
    /// ones train, encode to fixed point and send masked inputs; dropped, straggling and surplus vehicles vanish after
    /// ShareKeys (the costliest case: their masks are rebuilt from shares); the server unmasks only the sum.
    /// Every message travels through <see cref="SecAggCodec"/>, and its bytes are what <c>bytes_up</c> counts.
    /// </summary>
    private RoundOutcome SecureRound(int round, RoundForecast plan, int[] accepted, UpdatePipelineRound codec, CancellationToken cancellationToken)
    {
        var result = new RoundOutcome();
        var cohort = plan.Selected.Select(p => p.Vehicle).ToArray();
        int n = cohort.Length;
        if (n < 3)
        {
            result.AbortReason = $"only {n} vehicles selected; secure aggregation needs at least 3";
            return result;
        }
        var index = new Dictionary<int, int>(n);
        for (int i = 0; i < n; i++) index[cohort[i]] = i;
        var roundSeed = SimulationRandomness.SecAggSeed(_options.Seed, round);
        var parameters = _pipeline.CreateSecAggParameters((ulong)round, n, roundSeed, TimeSpan.FromMinutes(1));
        var time = new ManualTimeProvider();
        int workers = _trainers.Length;
        // One key registry per worker: ECDsa verification from several threads on one instance is not documented as safe.
        var registries = new ArrayRegistry[workers + 1];
        for (int r = 0; r <= workers; r++) registries[r] = new ArrayRegistry(n);
        for (int i = 0; i < n; i++)
        {
            var spki = DeviceKey(cohort[i]).ExportSubjectPublicKeyInfo();
            foreach (var registry in registries) registry.Add(i, spki);
        }
        int WorkerOf(int i) => (int)((long)i * workers / n);
        var vehicles = new SecAggVehicle[n];
        for (int i = 0; i < n; i++) vehicles[i] = new SecAggVehicle(parameters, i, DeviceKey(cohort[i]), registries[WorkerOf(i)], time);
        using var server = new SecAggServer(parameters, registries[workers], time, new SecAggServerOptions { MaxDegreeOfParallelism = workers });
        var sent = new long[n];
        var outbox = new List<SecAggMessage>();
        try
        {
            void Deliver(byte[] data)
            {
                var step = server.Receive(SecAggCodec.Decode(data, parameters.Round));
                outbox.AddRange(step.Outbox);
            }
            // Runs the vehicles' side of one phase in parallel (each vehicle on its worker) and delivers the answers in cohort order.
            void Phase(IReadOnlyList<SecAggMessage> requests, Func<int, SecAggMessage?, byte[]?> act)
            {
                var downlink = requests.Select(m => SecAggCodec.Encode(m)).ToArray();
                result.ExtraBytesDown += downlink.Sum(d => (long)d.Length);
                var answers = new byte[]?[requests.Count];
                Parallel.For(0, workers, new ParallelOptions { MaxDegreeOfParallelism = workers, CancellationToken = cancellationToken }, w =>
                {
                    for (int j = 0; j < requests.Count; j++)
                    {
                        int i = requests[j].VehicleId;
                        if (WorkerOf(i) != w) continue;
                        answers[j] = act(i, SecAggCodec.Decode(downlink[j], parameters.Round));
                    }
                });
                outbox.Clear();
                for (int j = 0; j < answers.Length; j++)
                {
                    if (answers[j] is not { } a) continue;
                    sent[requests[j].VehicleId] += a.Length;
                    Deliver(a);
                }
            }

            // Phase 0: AdvertiseKeys (every selected vehicle).
            var starts = new byte[n][];
            Parallel.For(0, workers, new ParallelOptions { MaxDegreeOfParallelism = workers }, w =>
            {
                for (int i = 0; i < n; i++) if (WorkerOf(i) == w) starts[i] = SecAggCodec.Encode(vehicles[i].Start());
            });
            for (int i = 0; i < n; i++) { sent[i] += starts[i].Length; Deliver(starts[i]); }
            // Phase 1: ShareKeys.
            if (server.Phase == SecAggServerPhase.ShareKeys)
                Phase([.. outbox], (i, m) => SecAggCodec.Encode(vehicles[i].HandleKeyDirectory((KeyDirectoryMessage)m!)));
            // Phase 2: the accepted vehicles train and send masked inputs; the others drop out here.
            if (server.Phase == SecAggServerPhase.MaskedInputCollection)
            {
                var forwarded = outbox.Where(m => plan.Selected[m.VehicleId].Outcome == VehicleOutcome.Accepted)
                    .OrderBy(m => Array.IndexOf(accepted, cohort[m.VehicleId])).ToArray();
                result.ExtraBytesDown += outbox.Sum(m => SecAggCodec.EncodedLength(m));
                outbox.Clear();
                for (int start = 0; start < forwarded.Length; start += workers)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    int count = Math.Min(workers, forwarded.Length - start);
                    var answers = new byte[count][];
                    var clamped = new int[count];
                    var unclipped = new bool[count];
                    void Work(int w)
                    {
                        var message = forwarded[start + w];
                        int i = message.VehicleId, vehicle = cohort[i];
                        TrainVehicle(w, round, vehicle);
                        var input = codec.EncodeSecure(_deltas[w], Weight(vehicle), NoiseFor(round, vehicle), RoundingFor(round, vehicle), out var info);
                        clamped[w] = info.Clamped;
                        var shares = SecAggCodec.Decode<ForwardedSharesMessage>(SecAggCodec.Encode(message), parameters.Round);
                        answers[w] = SecAggCodec.Encode(vehicles[i].HandleForwardedShares(shares, input));
                    }
                    if (count == 1) Work(0);
                    else Parallel.For(0, count, new ParallelOptions { MaxDegreeOfParallelism = count, CancellationToken = cancellationToken }, Work);
                    for (int w = 0; w < count; w++)
                    {
                        sent[forwarded[start + w].VehicleId] += answers[w].Length;
                        Deliver(answers[w]);
                        result.LossSum += _losses[w];
                        result.Clamped += clamped[w];
                    }
                }
                if (server.Phase == SecAggServerPhase.MaskedInputCollection)
                {
                    // The rest of the cohort never answers: the phase closes at its deadline and they count as dropped.
                    time.Advance(parameters.PhaseTimeout);
                    outbox.AddRange(server.Tick().Outbox);
                }
            }
            // Phase 3: Unmasking.
            if (server.Phase == SecAggServerPhase.Unmasking)
                Phase([.. outbox], (i, m) => SecAggCodec.Encode(vehicles[i].HandleUnmaskRequest((UnmaskRequestMessage)m!)));
        }
        finally
        {
            foreach (var v in vehicles) v?.Dispose();
            foreach (var r in registries) r.Dispose();
        }
        result.BytesUp = sent.Sum();
        if (server.Phase != SecAggServerPhase.Completed)
        {
            result.AbortReason = server.AbortReason ?? $"secure aggregation stopped in phase {server.Phase}";
            return result;
        }
        var sum = server.Result!;
        foreach (int i in sum.Survivors)
        {
            result.Contributors.Add(cohort[i]);
            result.AcceptedBytesUp.Add(sent[i]);
        }
        var decoded = codec.DecodeSum(sum.Sum.Span, sum.Survivors.Length);
        result.UnclippedCount = decoded.UnclippedCount;
        result.Mean = decoded.WeightSum > 0 ? decoded.Mean : null;
        return result;
    }

    /// <summary>Device public keys of one round's cohort, by cohort index.</summary>
    private sealed class ArrayRegistry(int n) : IDeviceKeyRegistry, IDisposable
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

    /// <summary>Local training on the vehicle: leaves Δ = w_local − w in the worker's buffer (the pipeline protects it next).</summary>
    private void TrainVehicle(int worker, int round, int vehicle)
    {
        var trainer = _trainers[worker];
        trainer.LoadParameters(_global);
        trainer.SetProximalTerm(_strategy.ProximalMu > 0 ? _global : [], _strategy.ProximalMu);
        var rows = Partitions[vehicle].ToArray();
        var rng = SimulationRandomness.DataOrder(_options.Seed, round, vehicle);
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
        foreach (var k in _deviceKeys.Values) k.Dispose();
    }
}
