using System.Security.Cryptography;
using System.Threading.Channels;
using FleetLearn.Core.Compression;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Model;
using FleetLearn.Core.Numerics;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Random;
using FleetLearn.Core.SecureAggregation;
using FleetLearn.Storage;
using FleetLearn.Transport.Mqtt;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using RoundPlan = FleetLearn.Transport.Mqtt.RoundPlan;

namespace FleetLearn.Aggregator;

/// <summary>
/// Randomness the aggregator draws: central DP noise and the public SecAgg round seed. Production uses
/// <see cref="Secure"/> (cryptographically secure); a simulation that must reproduce the in-process simulator bit for bit
/// passes seeded ones.
/// </summary>
/// <param name="CentralNoise">The noise source of round N's central DP noise.</param>
/// <param name="SecAggSeed">32 public random bytes for round N's SecAgg+ graph.</param>
public sealed record AggregatorRandomness(Func<long, INoiseSource> CentralNoise, Func<long, byte[]> SecAggSeed)
{
    /// <summary>Cryptographically secure noise and seeds (DESIGN.md: DP noise never from <see cref="System.Random"/>).</summary>
    public static AggregatorRandomness Secure { get; } = new(_ => new SecureNoiseSource(), _ => RandomNumberGenerator.GetBytes(32));
}

/// <summary>
/// The cloud worker. Per round: waits for check-ins, selects a cohort (with over-selection; vehicles out of privacy
/// budget are not selected), publishes the model (retained, chunked) and a signed plan that carries the round's
/// protection (codec, clip norm, DP noise, secure aggregation with the cohort's device keys). Plaintext rounds fold
/// each decoded update as it arrives (streaming; deduplicated by vehicle and update id) until the cohort is complete or
/// the deadline passes. Secure rounds run the <see cref="SecAggServer"/> state machine: key advertisements, share
/// routing, masked inputs and unmasking, each phase closed when complete or at its deadline; only the sum is ever
/// decoded. Every vehicle message is acknowledged at the application level so that vehicles can empty their outboxes.
/// Then: the privacy ledger records each contributor's spend (before the model is used), central noise is added, the
/// strategy is applied, and the round record and model N+1 are checkpointed in LiteDB. A restarted aggregator resumes
/// from its newest model; a round left open by a crash is recorded as aborted (its partial sum lived in memory only, and
/// its vehicles' round keys are never reused: the next round starts afresh).
/// </summary>
public sealed class AggregatorWorker(
    IOptions<AggregatorOptions> aggregatorOptions,
    IOptions<MqttTransportOptions> mqttOptions,
    AggregatorStatus status,
    TimeProvider time,
    ILogger<AggregatorWorker> logger,
    IHostApplicationLifetime? lifetime = null,
    AggregatorRandomness? randomness = null) : BackgroundService
{
    private readonly AggregatorOptions _options = aggregatorOptions.Value;
    private readonly AggregatorRandomness _random = randomness ?? AggregatorRandomness.Secure;
    private readonly Dictionary<string, Checkin> _checkedIn = new(StringComparer.Ordinal);
    private readonly Dictionary<long, int> _publishedModels = [];
    private ChunkAssembler _uplink = null!;
    private MqttConnection _mqtt = null!;
    private Channel<MqttIncoming> _inbox = null!;
    private LiteDbRoundStore _store = null!;
    private LiteDbPrivacyLedgerStore? _ledger;
    private long _lastClosedRound;
    private readonly Dictionary<long, HashSet<Guid>> _recentlySeen = [];
    private readonly Dictionary<long, Dictionary<string, int>> _completedSurvivors = [];

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var spec = ModelSpec.Parse(_options.Model);
        var strategy = StrategyCatalog.Parse(_options.Strategy, _options.ServerLearningRate);
        using var signingKey = SigningKeys.LoadOrCreate(_options.SigningKeyPath);
        using var store = LiteDbRoundStore.Open(_options.DatabasePath);
        _store = store;
        var privacy = AggregatorProtection.ParsePrivacy(_options.Privacy);
        using var ledger = privacy is null ? null : LiteDbPrivacyLedgerStore.Open(_options.PrivacyLedgerPath, new PrivacyLedgerOptions(_options.EpsilonBudget ?? double.MaxValue, _options.Delta));
        _ledger = ledger;
        if (ledger is not null) status.MaxVehicleEpsilon = ledger.Vehicles().Select(v => v.Epsilon).DefaultIfEmpty(0).Max();
        var model = store.LatestModel() ?? new Checkpoint(spec, 0, ModelInitializer.Initialize(spec, _options.Seed, ModelInitializer.ParseScheme(_options.Init)));
        if (model.Spec.ToString() != spec.ToString())
            throw new InvalidOperationException($"The stored model is {model.Spec}, the configuration asks for {spec}: use another database or fix Aggregator:Model.");
        if (model.Version == 0 && store.LatestModel() is null)
        {
            store.SaveModel(model);
            ExportOnnx(model);
        }
        long round = 1;
        foreach (var record in store.Rounds())
        {
            var closed = record;
            if (record.Status == RoundStatus.Open)
            {
                closed = record with { Status = RoundStatus.Aborted, ClosedAt = time.GetUtcNow(), Note = "aggregator restarted mid-round" };
                store.SaveRound(closed);
                logger.LogWarning("aggregator: round {Round} was open when the previous run stopped; recorded as aborted.", record.Round);
            }
            status.Record(closed, null);
            round = Math.Max(round, record.Round + 1);
        }
        _lastClosedRound = round - 1;

        _uplink = new ChunkAssembler(_options.MaxUpdateBytes, maxPendingTransfers: Math.Max(64, 4 * _options.CohortSize));
        _inbox = Channel.CreateBounded<MqttIncoming>(new BoundedChannelOptions(16_384) { FullMode = BoundedChannelFullMode.Wait, SingleReader = true });
        await using var mqtt = new MqttConnection(mqttOptions.Value, time, logger);
        _mqtt = mqtt;
        mqtt.MessageReceived += m => _inbox.Writer.WriteAsync(m, stoppingToken).AsTask();
        await mqtt.SubscribeAsync(mqtt.Topics.AllUp, stoppingToken).ConfigureAwait(false);
        await mqtt.SubscribeAsync(mqtt.Topics.AllCheckins, stoppingToken).ConfigureAwait(false);
        mqtt.Start(stoppingToken);
        // A plan left retained by a previous run announces a round this run has recorded as aborted (or closed): clear it,
        // so that vehicles arriving before the next cohort forms do not train for nothing. Agents ignore the empty payload.
        await mqtt.PublishReliablyAsync(mqtt.Topics.RoundCurrent, ReadOnlyMemory<byte>.Empty, retain: true, cancellationToken: stoppingToken).ConfigureAwait(false);
        logger.LogInformation("aggregator: model {Spec} version {Version}, strategy {Strategy}, codec {Codec}, secure aggregation {Secure}, privacy {Privacy}; starting at round {Round}.",
            spec, model.Version, strategy.Name, _options.Codec, _options.SecureAggregation, _options.Privacy, round);

        status.ModelVersion = model.Version;
        status.Running = true;
        try
        {
            int done = 0;
            while (!stoppingToken.IsCancellationRequested && (_options.Rounds == 0 || done < _options.Rounds))
            {
                model = await RunRoundAsync(round, model, strategy, signingKey, stoppingToken).ConfigureAwait(false);
                round++;
                done++;
            }
            // Answer what is still in flight for the last round (late unmask answers, resends), so that every vehicle's
            // outbox empties; a long-running aggregator does the same while it runs its next round.
            var drainUntil = time.GetUtcNow() + _options.DrainTime;
            while (time.GetUtcNow() < drainUntil && !stoppingToken.IsCancellationRequested)
                await ProcessNextAsync(null, drainUntil, stoppingToken).ConfigureAwait(false);
            status.Done.TrySetResult();
            if (_options.StopWhenDone) lifetime?.StopApplication();
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        finally
        {
            status.Running = false;
        }
    }

    /// <summary>What one round is collecting.</summary>
    private sealed class RoundState(long round, string[] cohort, RoundProtection protection, UpdatePipeline pipeline, UpdatePipelineRound codec, IUpdateAggregator aggregator, int dimension)
    {
        public long Round { get; } = round;
        public string[] Cohort { get; } = cohort;
        public Dictionary<string, int> Index { get; } = cohort.Select((v, i) => (v, i)).ToDictionary(p => p.v, p => p.i, StringComparer.Ordinal);
        public RoundProtection Protection { get; } = protection;
        public UpdatePipeline Pipeline { get; } = pipeline;
        public UpdatePipelineRound Codec { get; } = codec;
        public IUpdateAggregator Aggregator { get; } = aggregator;
        public int Dimension { get; } = dimension;
        public SecAggServer? Server { get; set; }
        public Dictionary<string, Guid> Contributors { get; } = new(StringComparer.Ordinal);
        public HashSet<Guid> Seen { get; } = [];
        public HashSet<string> Answered { get; } = new(StringComparer.Ordinal);
        public Dictionary<string, int> Received { get; } = new(StringComparer.Ordinal);
        public double LossSum { get; set; }
        public int Wanted { get; init; }
    }

    private async Task<Checkpoint> RunRoundAsync(long round, Checkpoint model, IFederatedStrategy strategy, ECDsa key, CancellationToken cancellationToken)
    {
        var topics = _mqtt.Topics;
        var secureMode = AggregatorProtection.ParseSecure(_options.SecureAggregation);
        var privacy = AggregatorProtection.ParsePrivacy(_options.Privacy);
        var charge = PrivacyCharge.Participation(_options.NoiseMultiplier);
        int selectionSize = (int)Math.Ceiling(_options.CohortSize * (1 + _options.OverSelection));
        bool Eligible(string v) => _ledger is null || _options.EpsilonBudget is null || _ledger.CanParticipate(v, charge);

        // 1. Cohort: wait for enough eligible check-ins (or for CohortWait with at least MinParticipants).
        var waitUntil = time.GetUtcNow() + _options.CohortWait;
        int minimum = Math.Max(_options.MinParticipants, secureMode == SecureAggregationMode.Off ? 1 : 3);
        while (true)
        {
            int eligible = _checkedIn.Keys.Count(Eligible);
            status.Activity = $"round {round}: waiting for check-ins ({eligible}/{selectionSize} eligible vehicles)";
            if (eligible >= selectionSize || eligible >= minimum && time.GetUtcNow() >= waitUntil) break;
            await ProcessNextAsync(null, waitUntil > time.GetUtcNow() ? waitUntil : time.GetUtcNow() + TimeSpan.FromSeconds(1), cancellationToken).ConfigureAwait(false);
        }
        var rng = DeterministicRandom.Derive(_options.Seed, 0xC0407, (ulong)round);
        var candidates = _checkedIn.Keys.Where(Eligible).Order(StringComparer.Ordinal).ToArray();
        rng.Shuffle(candidates.AsSpan());
        var cohort = candidates.Take(selectionSize).Order(StringComparer.Ordinal).ToArray();

        // 2. The round's protection: the same pipeline on every vehicle, from the signed plan.
        double maxWeight = _options.MaxWeight ?? Math.Min(_options.WeightCap ?? double.MaxValue, cohort.Max(v => (double)_checkedIn[v].Samples));
        var protection = AggregatorProtection.Describe(_options, cohort.Length, maxWeight) with
        {
            CodecSeed = DeterministicRandom.Derive(_options.Seed, 0xC0DE, (ulong)round).NextUInt64(),
            SecAggRoundSeed = secureMode == SecureAggregationMode.Off ? null : Convert.ToBase64String(_random.SecAggSeed(round)),
            DeviceKeys = secureMode == SecureAggregationMode.Off ? null : cohort.Select(v => Convert.ToBase64String(_checkedIn[v].DeviceKey)).ToArray(),
        };
        var pipeline = protection.CreatePipeline(model.Parameters.Length, cohort.Length);
        var state = new RoundState(round, cohort, protection, pipeline, protection.ForRound(pipeline, round), strategy.CreateAggregator(model.Parameters.Length), model.Parameters.Length)
        {
            Wanted = secureMode == SecureAggregationMode.Off ? Math.Min(_options.CohortSize, cohort.Length) : cohort.Length,
        };

        // 3. Model (retained, chunked, only once per version) and the signed plan.
        var modelBytes = model.ToBytes();
        await PublishModelAsync(model, modelBytes, cancellationToken).ConfigureAwait(false);
        var started = time.GetUtcNow();
        var deadline = started + _options.RoundTimeout;
        var plan = new RoundPlan
        {
            Fleet = topics.Fleet,
            Round = round,
            ModelVersion = model.Version,
            ModelSpec = model.Spec.ToString(),
            ModelSha256 = RoundPlanCodec.HashModel(modelBytes),
            ModelBytes = modelBytes.Length,
            Cohort = cohort,
            LocalEpochs = _options.LocalEpochs,
            Batch = _options.Batch,
            LearningRate = _options.LearningRate,
            ProximalMu = strategy.ProximalMu,
            Protection = protection,
            DeadlineUnixMs = deadline.ToUnixTimeMilliseconds(),
            IssuedUnixMs = started.ToUnixTimeMilliseconds(),
        };
        var record = new RoundRecord(round, model.Version, null, RoundStatus.Open, cohort.Length, 0, double.NaN, started, null);
        _store.SaveRound(record);
        status.Record(record, null);
        status.CurrentRound = round;
        using (var server = secureMode == SecureAggregationMode.Off ? null : CreateServer(state))
        {
            state.Server = server;
            var signed = RoundPlanCodec.Sign(plan, key);
            await _mqtt.PublishReliablyAsync(topics.RoundCurrent, signed, retain: true, cancellationToken: cancellationToken).ConfigureAwait(false);
            status.Sent(signed.Length);
            status.Activity = $"round {round}: plan published to a cohort of {cohort.Length}";
            logger.LogInformation("aggregator: round {Round} open, model {Version}, cohort of {Count}{Secure}.", round, model.Version, cohort.Length,
                server is null ? "" : $", {(protection.Neighbors is { } k ? $"SecAgg+ k={k}" : "SecAgg")} m={pipeline.ModulusBits}");

            // 4. Collect until the round is complete or the deadline passes.
            if (server is null)
            {
                while (state.Contributors.Count < state.Wanted && time.GetUtcNow() < deadline)
                    await ProcessNextAsync(state, deadline, cancellationToken).ConfigureAwait(false);
            }
            else
            {
                while (server.Phase is not (SecAggServerPhase.Completed or SecAggServerPhase.Aborted) && time.GetUtcNow() < deadline)
                {
                    var until = server.PhaseDeadline < deadline ? server.PhaseDeadline : deadline;
                    await ProcessNextAsync(state, until, cancellationToken).ConfigureAwait(false);
                    if (time.GetUtcNow() >= server.PhaseDeadline) await SendAsync(state, server.Tick().Outbox, cancellationToken).ConfigureAwait(false);
                }
            }
            return Close(state, record, model, strategy, privacy, charge, server);
        }
    }

    private SecAggServer CreateServer(RoundState state)
    {
        var parameters = state.Protection.CreateSecAggParameters(state.Pipeline, state.Round, state.Cohort.Length);
        var registry = new DeviceKeyRegistry();
        for (int i = 0; i < state.Cohort.Length; i++) registry.Add(i, _checkedIn[state.Cohort[i]].DeviceKey);
        return new SecAggServer(parameters, registry, time, new SecAggServerOptions { MaxDegreeOfParallelism = Math.Max(1, Environment.ProcessorCount) });
    }

    private Checkpoint Close(RoundState state, RoundRecord record, Checkpoint model, IFederatedStrategy strategy, NoiseMode? privacy, PrivacyCharge charge, SecAggServer? server)
    {
        long round = state.Round;
        _lastClosedRound = round;
        _recentlySeen[round] = state.Seen;
        foreach (var old in _recentlySeen.Keys.Where(r => r < round - 2).ToList()) _recentlySeen.Remove(old);
        // The server completes once t shares of each secret are in: the other survivors' unmask answers are still on their
        // way, and they are honest answers that were not needed, not late input.
        if (server?.Result is { } completed) _completedSurvivors[round] = completed.Survivors.ToDictionary(i => state.Cohort[i], i => i, StringComparer.Ordinal);
        foreach (var old in _completedSurvivors.Keys.Where(r => r < round - 2).ToList()) _completedSurvivors.Remove(old);
        // A selected vehicle that never answered is taken off the available list until it checks in again:
        // a vehicle gone for good must not be selected round after round.
        // (Under secure aggregation only the survivors count: a vehicle that shared keys and then vanished is gone too.)
        var answered = server is null ? state.Contributors.Keys.ToHashSet(StringComparer.Ordinal)
            : server.Result is { } result ? result.Survivors.Select(i => state.Cohort[i]).ToHashSet(StringComparer.Ordinal) : state.Answered;
        foreach (var v in state.Cohort) if (!answered.Contains(v)) _checkedIn.Remove(v);
        status.CheckedIn = _checkedIn.Count;
        var closedAt = time.GetUtcNow();
        float[]? mean = null;
        List<string> contributors;
        string? failure = null;
        if (server is null)
        {
            contributors = [.. state.Contributors.Keys];
            if (state.Aggregator.Count > 0)
            {
                mean = new float[state.Dimension];
                state.Aggregator.Complete(mean);
            }
        }
        else
        {
            contributors = server.Result is { } r ? [.. r.Survivors.Select(i => state.Cohort[i])] : [];
            if (server.Phase != SecAggServerPhase.Completed)
                failure = $"secure aggregation stopped in phase {server.Phase}: {server.AbortReason ?? "deadline passed"}";
            else
            {
                var sum = state.Codec.DecodeSum(server.Result!.Sum.Span, contributors.Count);
                if (sum.WeightSum > 0) mean = sum.Mean;
            }
        }
        int participants = contributors.Count;
        double loss = state.Contributors.Count == 0 ? double.NaN : state.LossSum / state.Contributors.Count;
        // Checked first: MinNoiseShares never exceeds MinParticipants, so behind the minimum check this reason could never be given.
        if (failure is null && privacy == NoiseMode.Distributed && participants < state.Protection.MinNoiseShares)
            failure = $"{participants} noise shares < the {state.Protection.MinNoiseShares} the noise was sized for: the sum is not released";
        if (failure is null && participants < _options.MinParticipants) failure = $"{participants} updates < minimum {_options.MinParticipants}";
        if (failure is null && mean is null) failure = "no update carried any weight";
        if (failure is null)
        {
            if (_ledger is not null)
            {
                // The spend is recorded before the sum is used: a crash can only over-count ε, never under-count it.
                foreach (var v in contributors) _ledger.Record(v, round, charge);
                status.MaxVehicleEpsilon = _ledger.Vehicles().Select(v => v.Epsilon).DefaultIfEmpty(0).Max();
            }
            if (privacy == NoiseMode.Central)
                // N(0, σ²C²) on the sum is N(0, σ²C²/n²) on the mean of n unit-weight updates.
                GaussianNoise.Add(mean!, _options.NoiseMultiplier * state.Protection.ClipNorm!.Value / participants, _random.CentralNoise(round));
            var next = model.Parameters.ToArray();
            strategy.ApplyUpdate(next, mean!);
            if (!VectorMath.AllFinite(next)) throw new InvalidOperationException($"Round {round}: the global model diverged (NaN or ∞). Lower the learning rates.");
            var nextModel = new Checkpoint(model.Spec, model.Version + 1, next);
            record = record with { ModelVersionOut = nextModel.Version, Status = RoundStatus.Applied, Participants = participants, TrainLoss = loss, ClosedAt = closedAt };
            // One transaction: a crash never leaves model N+1 stored under a round recorded as open or aborted.
            _store.SaveModelAndRound(nextModel, record);
            ExportOnnx(nextModel);
            status.ModelVersion = nextModel.Version;
            status.Record(record, next);
            logger.LogInformation("aggregator: round {Round} applied {Participants}/{Cohort} updates; model {Version}.", round, participants, state.Cohort.Length, nextModel.Version);
            return nextModel;
        }
        record = record with { Status = RoundStatus.Aborted, Participants = participants, TrainLoss = loss, ClosedAt = closedAt, Note = failure };
        _store.SaveRound(record);
        status.Record(record, model.Parameters);
        logger.LogWarning("aggregator: round {Round} aborted: {Reason}.", round, failure);
        return model;
    }

    private async Task PublishModelAsync(Checkpoint model, byte[] modelBytes, CancellationToken cancellationToken)
    {
        var topics = _mqtt.Topics;
        if (_publishedModels.ContainsKey(model.Version)) return;
        var chunks = ChunkCodec.Split(modelBytes, _mqtt.Options.MaxPacketSize);
        for (int i = 0; i < chunks.Count; i++)
        {
            await _mqtt.PublishReliablyAsync(topics.ModelChunk(model.Version, i), chunks[i], retain: true, cancellationToken: cancellationToken).ConfigureAwait(false);
            status.Sent(chunks[i].Length);
        }
        _publishedModels[model.Version] = chunks.Count;
        foreach (var (old, count) in _publishedModels.Where(p => p.Key < model.Version - 1).ToList())
        {
            for (int i = 0; i < count; i++)
                await _mqtt.PublishReliablyAsync(topics.ModelChunk(old, i), ReadOnlyMemory<byte>.Empty, retain: true, cancellationToken: cancellationToken).ConfigureAwait(false);
            _publishedModels.Remove(old);
        }
    }

    /// <summary>
    /// Writes the published model as ONNX (head only: Gemm + Relu + Softmax, with version, round and
    /// parameter hash in its metadata) so that vehicles and any other runtime can run it. A failed
    /// export is logged, never fatal: the LiteDB copy is the model of record.
    /// </summary>
    private void ExportOnnx(Checkpoint model)
    {
        if (string.IsNullOrWhiteSpace(_options.OnnxFolder)) return;
        var path = Path.Combine(_options.OnnxFolder, FormattableString.Invariant($"model-v{model.Version}.onnx"));
        try
        {
            Directory.CreateDirectory(_options.OnnxFolder);
            var result = Perception.Onnx.OnnxExporter.ExportToFile(model, path);
            logger.LogInformation("aggregator: exported model {Version} to {Path} ({Hash}).", model.Version, path, result.Metadata[Perception.Onnx.OnnxExporter.Keys.ParametersSha256]);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidOperationException or ArgumentException)
        {
            logger.LogError(e, "aggregator: could not export model {Version} to {Path}.", model.Version, path);
        }
    }

    private async Task ProcessNextAsync(RoundState? state, DateTimeOffset until, CancellationToken cancellationToken)
    {
        var wait = until - time.GetUtcNow();
        if (wait <= TimeSpan.Zero) return;
        using var timeout = new CancellationTokenSource(wait, time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        MqttIncoming message;
        try
        {
            message = await _inbox.Reader.ReadAsync(linked.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return;
        }
        status.Received(message.Payload.Length);
        try
        {
            await HandleAsync(state, message, cancellationToken).ConfigureAwait(false);
        }
        catch (WireFormatException e)
        {
            Reject(message.Topic, e.Reason, e.Message);
        }
    }

    private void Reject(string topic, string reason, string why)
    {
        status.Rejected(reason);
        logger.LogWarning("aggregator: rejected a message on {Topic} ({Reason}): {Why}", topic, reason, why);
    }

    private async Task HandleAsync(RoundState? state, MqttIncoming message, CancellationToken cancellationToken)
    {
        var topics = _mqtt.Topics;
        if (!topics.TryParseVehicleTopic(message.Topic, out var vehicle, out var channel, out var kind)) return;
        if (channel == "checkin")
        {
            var envelope = Envelope.Decode(message.Payload, maxPayload: 6 + Checkin.MaxKeyBytes);
            if (envelope.Vehicle != vehicle || envelope.Kind != EnvelopeKind.Checkin)
                throw new WireFormatException($"Check-in on {vehicle}'s topic names {envelope.Vehicle}.", RejectReasons.NotInCohort);
            var checkin = Checkin.Decode(envelope.Payload.Span);
            if (checkin.Samples == 0)
            {
                _checkedIn.Remove(vehicle);
            }
            else
            {
                try
                {
                    using var parsed = ECDsa.Create();
                    parsed.ImportSubjectPublicKeyInfo(checkin.DeviceKey, out _);
                }
                catch (CryptographicException)
                {
                    throw new WireFormatException($"Check-in of {vehicle} carries no valid P-256 device key.");
                }
                var ofRecord = _store.RegisterDeviceKey(vehicle, checkin.DeviceKey);
                if (!ofRecord.AsSpan().SequenceEqual(checkin.DeviceKey))
                    throw new WireFormatException($"Check-in of {vehicle} carries a device key that differs from the registered one.", RejectReasons.Signature);
                _checkedIn[vehicle] = checkin;
            }
            status.CheckedIn = _checkedIn.Count;
            return;
        }
        if (channel != "up" || kind is not ("update" or "secagg")) return;
        var whole = _uplink.Add(message.Topic, message.Payload);
        if (whole is null) return;
        var update = Envelope.Decode(whole, _options.MaxUpdateBytes);
        var expectedKind = kind == "update" ? EnvelopeKind.Update : EnvelopeKind.SecAgg;
        if (update.Vehicle != vehicle || update.Kind != expectedKind)
            throw new WireFormatException($"A message on {vehicle}'s {kind} topic names {update.Vehicle} / {update.Kind}.", RejectReasons.NotInCohort);
        UpdateAck verdict;
        bool closedRound = update.Round <= _lastClosedRound && (state is null || update.Round != state.Round);
        if (closedRound && _recentlySeen.TryGetValue(update.Round, out var seen) && seen.Contains(update.UpdateId))
        {
            // Counted (or answered) before the round closed; its ack was lost. Not "rejected": the vehicle must not think it was left out.
            verdict = new UpdateAck(AckStatus.Duplicate, $"already received in round {update.Round}");
            status.Duplicate();
        }
        else if (closedRound && IsUnneededUnmaskAnswer(update, vehicle))
            verdict = new UpdateAck(AckStatus.Duplicate, $"not needed: round {update.Round} completed with the shares it needed");
        else if (closedRound)
            verdict = Rejected(RejectReasons.Late, $"round {update.Round} has closed");
        else if (state is null || update.Round != state.Round)
            verdict = Rejected(RejectReasons.WrongRound, $"round {update.Round} is not open (current {state?.Round.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "none"})");
        else if (!state.Index.TryGetValue(vehicle, out int index))
            verdict = Rejected(RejectReasons.NotInCohort, $"not in the cohort of round {state.Round}");
        else if (!state.Seen.Add(update.UpdateId))
        {
            verdict = new UpdateAck(AckStatus.Duplicate);
            status.Duplicate();
        }
        else if (update.Kind == EnvelopeKind.SecAgg)
            verdict = await ReceiveSecAggAsync(state, index, update, cancellationToken).ConfigureAwait(false);
        else
            verdict = ReceivePlain(state, vehicle, index, update);
        if (verdict.Status == AckStatus.Rejected) logger.LogWarning("aggregator: rejected {Kind} from {Vehicle} for round {Round}: {Reason}", kind, vehicle, update.Round, verdict.Reason);
        await AckAsync(update, verdict, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>True when <paramref name="update"/> is the unmask answer of a survivor of a completed secure round.</summary>
    private bool IsUnneededUnmaskAnswer(Envelope update, string vehicle)
    {
        if (update.Kind != EnvelopeKind.SecAgg || !_completedSurvivors.TryGetValue(update.Round, out var survivors) || !survivors.TryGetValue(vehicle, out int index))
            return false;
        try
        {
            return SecAggCodec.Decode(update.Payload.Span, (ulong)update.Round) is UnmaskResponseMessage answer && answer.VehicleId == index;
        }
        catch (SecAggFormatException)
        {
            return false;
        }
    }

    private UpdateAck Rejected(string reason, string why)
    {
        status.Rejected(reason);
        return new UpdateAck(AckStatus.Rejected, why);
    }

    private UpdateAck ReceivePlain(RoundState state, string vehicle, int index, Envelope update)
    {
        if (state.Server is not null) return Rejected(RejectReasons.Protocol, "this round uses secure aggregation: plaintext updates are refused");
        if (state.Contributors.TryGetValue(vehicle, out _))
        {
            status.Duplicate();
            return new UpdateAck(AckStatus.Duplicate, "one update per vehicle per round");
        }
        if (state.Contributors.Count >= state.Wanted) return Rejected(RejectReasons.WrongRound, $"round {state.Round} already has its {state.Wanted} updates");
        DecodedUpdate decoded;
        PlainUpdate header;
        try
        {
            header = PlainUpdate.Decode(update.Payload);
            decoded = state.Codec.Decode(header.Body.Span, (ulong)index);
        }
        catch (WireFormatException e)
        {
            return Rejected(e.Reason, e.Message);
        }
        catch (UpdateFormatException e)
        {
            return Rejected(e.Message.Contains("NaN", StringComparison.Ordinal) ? RejectReasons.NonFinite : RejectReasons.Malformed, e.Message);
        }
        if (!(decoded.Header.Weight > 0) || !double.IsFinite(decoded.Header.Weight) || decoded.Header.Weight > state.Protection.MaxWeight * (1 + 1e-9) && !state.Protection.UniformWeights)
            return Rejected(RejectReasons.Malformed, $"weight {decoded.Header.Weight} is outside (0, {state.Protection.MaxWeight}]");
        if (state.Protection.UniformWeights && decoded.Header.Weight != 1)
            return Rejected(RejectReasons.Malformed, $"weight {decoded.Header.Weight}: every update weighs 1 under DP");
        state.Aggregator.Add(decoded.Delta, decoded.Header.Weight);
        state.LossSum += double.IsFinite(header.TrainLoss) ? header.TrainLoss : 0;
        state.Contributors[vehicle] = update.UpdateId;
        status.Activity = $"round {state.Round}: {state.Contributors.Count}/{state.Wanted} updates folded";
        status.Accepted();
        return new UpdateAck(AckStatus.Accepted);
    }

    private async Task<UpdateAck> ReceiveSecAggAsync(RoundState state, int index, Envelope update, CancellationToken cancellationToken)
    {
        if (state.Server is not { } server) return Rejected(RejectReasons.Protocol, "this round does not use secure aggregation");
        SecAggMessage message;
        try
        {
            message = SecAggCodec.Decode(update.Payload.Span, (ulong)state.Round);
        }
        catch (SecAggFormatException e)
        {
            return Rejected(RejectReasons.Malformed, e.Message);
        }
        if (message.VehicleId != index)
            return Rejected(RejectReasons.NotInCohort, $"the message names cohort index {message.VehicleId}; this vehicle is {index}");
        var step = server.Receive(message);
        if (step.Rejection is { } why) return Rejected(RejectReasons.Protocol, why);
        state.Answered.Add(state.Cohort[index]);
        if (message is MaskedInputMessage) status.Accepted();
        state.Received[message.Type.ToString()] = state.Received.GetValueOrDefault(message.Type.ToString()) + 1;
        status.Activity = $"round {state.Round}: secure aggregation phase {server.Phase}; received {string.Join(", ", state.Received.Select(p => $"{p.Key} {p.Value}"))} of {state.Cohort.Length} vehicles";
        await SendAsync(state, step.Outbox, cancellationToken).ConfigureAwait(false);
        return new UpdateAck(AckStatus.Accepted);
    }

    /// <summary>Routes server-to-vehicle messages to each addressee's inbox (chunked under the broker's packet limit).</summary>
    private async Task SendAsync(RoundState state, IReadOnlyList<SecAggMessage> messages, CancellationToken cancellationToken)
    {
        if (messages.Count == 0) return;
        var expiry = TimeSpan.FromMilliseconds(2 * state.Protection.PhaseTimeoutMs);
        await Task.WhenAll(messages.Select(async m =>
        {
            string vehicle = state.Cohort[m.VehicleId];
            var envelope = new Envelope(EnvelopeKind.SecAgg, vehicle, state.Round, Guid.NewGuid(), SecAggCodec.Encode(m)).Encode(_options.MaxUpdateBytes);
            foreach (var chunk in ChunkCodec.Split(envelope, _mqtt.Options.MaxPacketSize))
            {
                await _mqtt.PublishReliablyAsync(_mqtt.Topics.Inbox(vehicle, "secagg"), chunk, expiry: expiry, cancellationToken: cancellationToken).ConfigureAwait(false);
                status.Sent(chunk.Length);
            }
        })).ConfigureAwait(false);
    }

    private async Task AckAsync(Envelope update, UpdateAck verdict, CancellationToken cancellationToken)
    {
        var ack = new Envelope(EnvelopeKind.Ack, update.Vehicle, update.Round, update.UpdateId, verdict.Encode()).Encode();
        await _mqtt.PublishReliablyAsync(_mqtt.Topics.Inbox(update.Vehicle, "ack"), ack, expiry: TimeSpan.FromDays(1), cancellationToken: cancellationToken).ConfigureAwait(false);
        status.Sent(ack.Length);
    }
}
