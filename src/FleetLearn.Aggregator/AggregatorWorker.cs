using System.Security.Cryptography;
using System.Threading.Channels;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Model;
using FleetLearn.Core.Numerics;
using FleetLearn.Core.Random;
using FleetLearn.Storage;
using FleetLearn.Transport.Mqtt;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using RoundPlan = FleetLearn.Transport.Mqtt.RoundPlan;

namespace FleetLearn.Aggregator;

/// <summary>
/// The cloud worker: waits for check-ins, selects a cohort, publishes the model (retained, chunked) and a signed plan,
/// folds updates as they arrive (streaming; dedupe by vehicle and update id), acknowledges each at the application
/// level, closes the round at the deadline or when the cohort is complete, applies the strategy, checkpoints the
/// round record and model N+1 in LiteDB, and starts the next round. On start it resumes from the newest stored model;
/// a round left open by a crash is recorded as aborted (its in-memory partial sum is lost: its participants count as
/// dropouts, which the protocol tolerates).
/// </summary>
public sealed class AggregatorWorker(
    IOptions<AggregatorOptions> aggregatorOptions,
    IOptions<MqttTransportOptions> mqttOptions,
    AggregatorStatus status,
    TimeProvider time,
    ILogger<AggregatorWorker> logger,
    IHostApplicationLifetime? lifetime = null) : BackgroundService
{
    private readonly AggregatorOptions _options = aggregatorOptions.Value;
    private readonly Dictionary<string, int> _checkedIn = new(StringComparer.Ordinal);
    private readonly Dictionary<long, int> _publishedModels = [];
    private ChunkAssembler _updates = null!;
    private MqttConnection _mqtt = null!;
    private Channel<MqttIncoming> _inbox = null!;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var spec = ModelSpec.Parse(_options.Model);
        var strategy = StrategyCatalog.Parse(_options.Strategy, _options.ServerLearningRate);
        using var signingKey = SigningKeys.LoadOrCreate(_options.SigningKeyPath);
        using var store = LiteDbRoundStore.Open(_options.DatabasePath);
        var model = store.LatestModel() ?? new Checkpoint(spec, 0, ModelInitializer.Initialize(spec, _options.Seed));
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

        _updates = new ChunkAssembler(_options.MaxUpdateBytes, maxPendingTransfers: Math.Max(64, 2 * _options.CohortSize));
        _inbox = Channel.CreateBounded<MqttIncoming>(new BoundedChannelOptions(4096) { FullMode = BoundedChannelFullMode.Wait, SingleReader = true });
        await using var mqtt = new MqttConnection(mqttOptions.Value, time, logger);
        _mqtt = mqtt;
        mqtt.MessageReceived += m => _inbox.Writer.WriteAsync(m, stoppingToken).AsTask();
        await mqtt.SubscribeAsync(mqtt.Topics.AllUp, stoppingToken).ConfigureAwait(false);
        await mqtt.SubscribeAsync(mqtt.Topics.AllCheckins, stoppingToken).ConfigureAwait(false);
        mqtt.Start(stoppingToken);
        logger.LogInformation("aggregator: model {Spec} version {Version}, strategy {Strategy}, starting at round {Round}.", spec, model.Version, strategy.Name, round);

        status.ModelVersion = model.Version;
        status.Running = true;
        try
        {
            int done = 0;
            while (!stoppingToken.IsCancellationRequested && (_options.Rounds == 0 || done < _options.Rounds))
            {
                model = await RunRoundAsync(round, model, strategy, signingKey, store, stoppingToken).ConfigureAwait(false);
                round++;
                done++;
            }
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

    private async Task<Checkpoint> RunRoundAsync(long round, Checkpoint model, IFederatedStrategy strategy, ECDsa key, LiteDbRoundStore store, CancellationToken cancellationToken)
    {
        var topics = _mqtt.Topics;
        // 1. Cohort: wait for enough check-ins (or for CohortWait with at least MinParticipants).
        var waitUntil = time.GetUtcNow() + _options.CohortWait;
        while (_checkedIn.Count < _options.CohortSize && !(_checkedIn.Count >= _options.MinParticipants && time.GetUtcNow() >= waitUntil))
        {
            await ProcessNextAsync(round, null, waitUntil > time.GetUtcNow() ? waitUntil : time.GetUtcNow() + TimeSpan.FromSeconds(1), cancellationToken).ConfigureAwait(false);
        }
        var rng = DeterministicRandom.Derive(_options.Seed, 0xC0407, (ulong)round);
        var candidates = _checkedIn.Keys.Order(StringComparer.Ordinal).ToArray();
        rng.Shuffle(candidates.AsSpan());
        var cohort = candidates.Take(_options.CohortSize).Order(StringComparer.Ordinal).ToArray();

        // 2. Model (retained, chunked, only once per version) and the signed plan.
        var modelBytes = model.ToBytes();
        if (!_publishedModels.ContainsKey(model.Version))
        {
            var chunks = ChunkCodec.Split(modelBytes, _mqtt.Options.MaxPacketSize);
            for (int i = 0; i < chunks.Count; i++)
                await _mqtt.PublishReliablyAsync(topics.ModelChunk(model.Version, i), chunks[i], retain: true, cancellationToken: cancellationToken).ConfigureAwait(false);
            _publishedModels[model.Version] = chunks.Count;
            foreach (var (old, count) in _publishedModels.Where(p => p.Key < model.Version - 1).ToList())
            {
                for (int i = 0; i < count; i++)
                    await _mqtt.PublishReliablyAsync(topics.ModelChunk(old, i), ReadOnlyMemory<byte>.Empty, retain: true, cancellationToken: cancellationToken).ConfigureAwait(false);
                _publishedModels.Remove(old);
            }
        }
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
            DeadlineUnixMs = deadline.ToUnixTimeMilliseconds(),
            IssuedUnixMs = started.ToUnixTimeMilliseconds(),
        };
        var record = new RoundRecord(round, model.Version, null, RoundStatus.Open, cohort.Length, 0, double.NaN, started, null);
        store.SaveRound(record);
        status.Record(record, null);
        status.CurrentRound = round;
        await _mqtt.PublishReliablyAsync(topics.RoundCurrent, RoundPlanCodec.Sign(plan, key), retain: true, cancellationToken: cancellationToken).ConfigureAwait(false);
        logger.LogInformation("aggregator: round {Round} open, model {Version}, cohort {Cohort}.", round, model.Version, string.Join(",", cohort));

        // 3. Collect until the cohort is complete or the deadline passes.
        var fold = new RoundFold(strategy.CreateAggregator(model.Parameters.Length), new HashSet<string>(cohort, StringComparer.Ordinal), model.Parameters.Length);
        while (fold.Contributors.Count < cohort.Length && time.GetUtcNow() < deadline)
            await ProcessNextAsync(round, fold, deadline, cancellationToken).ConfigureAwait(false);

        // 4. Close: apply or abort, checkpoint, report.
        var closedAt = time.GetUtcNow();
        int participants = fold.Aggregator.Count;
        double loss = participants == 0 ? double.NaN : fold.LossSum / participants;
        if (participants >= _options.MinParticipants && participants > 0)
        {
            var combined = new float[model.Parameters.Length];
            fold.Aggregator.Complete(combined);
            var next = model.Parameters.ToArray();
            strategy.ApplyUpdate(next, combined);
            if (!VectorMath.AllFinite(next)) throw new InvalidOperationException($"Round {round}: the global model diverged (NaN or ∞). Lower the learning rates.");
            var nextModel = new Checkpoint(model.Spec, model.Version + 1, next);
            store.SaveModel(nextModel);
            ExportOnnx(nextModel);
            record = record with { ModelVersionOut = nextModel.Version, Status = RoundStatus.Applied, Participants = participants, TrainLoss = loss, ClosedAt = closedAt };
            store.SaveRound(record);
            status.ModelVersion = nextModel.Version;
            status.Record(record, next);
            logger.LogInformation("aggregator: round {Round} applied {Participants}/{Cohort} updates; model {Version}.", round, participants, cohort.Length, nextModel.Version);
            return nextModel;
        }
        record = record with { Status = RoundStatus.Aborted, Participants = participants, TrainLoss = loss, ClosedAt = closedAt, Note = $"{participants} updates < minimum {_options.MinParticipants}" };
        store.SaveRound(record);
        status.Record(record, model.Parameters);
        logger.LogWarning("aggregator: round {Round} aborted: {Participants} updates, {Min} needed.", round, participants, _options.MinParticipants);
        return model;
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

    private async Task ProcessNextAsync(long round, RoundFold? fold, DateTimeOffset until, CancellationToken cancellationToken)
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
        try
        {
            await HandleAsync(round, fold, message, cancellationToken).ConfigureAwait(false);
        }
        catch (WireFormatException e)
        {
            status.Rejected();
            logger.LogWarning("aggregator: rejected message on {Topic}: {Reason}", message.Topic, e.Message);
        }
    }

    private async Task HandleAsync(long round, RoundFold? fold, MqttIncoming message, CancellationToken cancellationToken)
    {
        var topics = _mqtt.Topics;
        if (!topics.TryParseVehicleTopic(message.Topic, out var vehicle, out var channel, out var kind)) return;
        if (channel == "checkin")
        {
            var envelope = Envelope.Decode(message.Payload, maxPayload: 64);
            if (envelope.Vehicle != vehicle || envelope.Kind != EnvelopeKind.Checkin) throw new WireFormatException($"Check-in on {vehicle}'s topic names {envelope.Vehicle}.");
            int samples = CheckinPayload.Decode(envelope.Payload.Span);
            if (samples > 0) _checkedIn[vehicle] = samples;
            else _checkedIn.Remove(vehicle);
            status.CheckedIn = _checkedIn.Count;
            return;
        }
        if (channel != "up" || kind != "update") return;
        var whole = _updates.Add(message.Topic, message.Payload);
        if (whole is null) return;
        var update = Envelope.Decode(whole, _options.MaxUpdateBytes);
        if (update.Vehicle != vehicle || update.Kind != EnvelopeKind.Update)
            throw new WireFormatException($"Update on {vehicle}'s topic names {update.Vehicle} / {update.Kind}.");
        UpdateAck verdict;
        if (fold is null || update.Round != round) verdict = new UpdateAck(AckStatus.Rejected, $"round {update.Round} is not open (current {round})");
        else if (!fold.Cohort.Contains(vehicle)) verdict = new UpdateAck(AckStatus.Rejected, $"not in the cohort of round {round}");
        else if (fold.Contributors.TryGetValue(vehicle, out var earlier))
        {
            // A resend (same update id) or a second update for the round: either way it is not folded twice.
            verdict = new UpdateAck(AckStatus.Duplicate, earlier == update.UpdateId ? "" : "one update per vehicle per round");
            status.Duplicate();
        }
        else
        {
            ModelUpdate decoded;
            try
            {
                decoded = ModelUpdate.Decode(update.Payload.Span, fold.Dimension);
            }
            catch (WireFormatException e)
            {
                status.Rejected();
                verdict = new UpdateAck(AckStatus.Rejected, e.Message);
                await AckAsync(update, verdict, cancellationToken).ConfigureAwait(false);
                return;
            }
            fold.Aggregator.Add(decoded.Delta, decoded.Weight);
            fold.LossSum += double.IsFinite(decoded.TrainLoss) ? decoded.TrainLoss : 0;
            fold.Contributors[vehicle] = update.UpdateId;
            status.Accepted();
            verdict = new UpdateAck(AckStatus.Accepted);
        }
        if (verdict.Status == AckStatus.Rejected) status.Rejected();
        await AckAsync(update, verdict, cancellationToken).ConfigureAwait(false);
    }

    private Task AckAsync(Envelope update, UpdateAck verdict, CancellationToken cancellationToken)
    {
        var ack = new Envelope(EnvelopeKind.Ack, update.Vehicle, update.Round, update.UpdateId, verdict.Encode());
        return _mqtt.PublishReliablyAsync(_mqtt.Topics.Inbox(update.Vehicle, "ack"), ack.Encode(), expiry: TimeSpan.FromDays(1), cancellationToken: cancellationToken);
    }

    private sealed class RoundFold(IUpdateAggregator aggregator, HashSet<string> cohort, int dimension)
    {
        public IUpdateAggregator Aggregator { get; } = aggregator;
        public HashSet<string> Cohort { get; } = cohort;
        public int Dimension { get; } = dimension;
        public Dictionary<string, Guid> Contributors { get; } = new(StringComparer.Ordinal);
        public double LossSum { get; set; }
    }
}
