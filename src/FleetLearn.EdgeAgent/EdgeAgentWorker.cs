using FleetLearn.Perception.Onnx;
using System.Diagnostics.CodeAnalysis;
using System.Security.Cryptography;
using System.Threading.Channels;
using FleetLearn.Compute;
using FleetLearn.Core.Model;
using FleetLearn.Core.Numerics;
using FleetLearn.Core.Random;
using FleetLearn.Core.Training;
using FleetLearn.Storage;
using FleetLearn.Transport.Mqtt;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace FleetLearn.EdgeAgent;

/// <summary>
/// The vehicle worker. Listens to the retained round plan and model, verifies the plan's ECDSA signature, the model's
/// SHA-256 (from the plan) and the pinned architecture, trains on the local partition, writes the update to the durable
/// outbox and publishes it (chunked) until the aggregator acknowledges it. Checks in on start and periodically while idle.
/// </summary>
public sealed class EdgeAgentWorker(
    IOptions<EdgeAgentOptions> agentOptions,
    IOptions<MqttTransportOptions> mqttOptions,
    VehicleDataset dataset,
    TimeProvider time,
    ILogger<EdgeAgentWorker> logger) : BackgroundService
{
    private const string LastRoundKey = "last-round";
    private readonly EdgeAgentOptions _options = agentOptions.Value;
    private readonly Dictionary<long, byte[]> _models = [];
    private MqttConnection? _mqtt;
    private LiteDbOutbox? _outbox;
    private ChunkAssembler? _modelChunks;
    private RoundPlan? _plan;
    private ECDsa? _aggregatorKey;
    private ModelSpec? _pinned;
    private ITrainer? _trainer;

    /// <summary>Rounds this vehicle trained (for tests and status).</summary>
    public int RoundsTrained { get; private set; }

    /// <summary>Messages rejected (bad signature, wrong fleet, wrong architecture, malformed).</summary>
    public int Rejected { get; private set; }

    /// <summary>Updates acknowledged by the aggregator.</summary>
    public int Acknowledged { get; private set; }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var mqtt = mqttOptions.Value;
        if (mqtt.ClientId != _options.VehicleId)
            throw new InvalidOperationException($"Mqtt:ClientId '{mqtt.ClientId}' must equal Agent:VehicleId '{_options.VehicleId}' (the broker enforces it).");
        _pinned = ModelSpec.Parse(_options.PinnedModelSpec);
        _aggregatorKey = SigningKeys.LoadPublic(_options.AggregatorPublicKey);
        _outbox = LiteDbOutbox.Open(_options.DatabasePath);
        _modelChunks = new ChunkAssembler(_options.MaxModelBytes, maxPendingTransfers: 4);
        var inbox = Channel.CreateBounded<MqttIncoming>(new BoundedChannelOptions(1024) { FullMode = BoundedChannelFullMode.Wait, SingleReader = true });
        await using var connection = new MqttConnection(mqtt, time, logger, new FleetTopics(mqtt.Fleet).Status(_options.VehicleId));
        _mqtt = connection;
        connection.MessageReceived += m => inbox.Writer.WriteAsync(m, stoppingToken).AsTask();
        var topics = connection.Topics;
        await connection.SubscribeAsync(topics.RoundCurrent, stoppingToken).ConfigureAwait(false);
        await connection.SubscribeAsync(topics.ModelAll, stoppingToken).ConfigureAwait(false);
        await connection.SubscribeAsync(topics.InboxAll(_options.VehicleId), stoppingToken).ConfigureAwait(false);
        connection.Start(stoppingToken);
        var resender = Task.Run(() => ResendLoopAsync(stoppingToken), stoppingToken);
        try
        {
            await foreach (var message in inbox.Reader.ReadAllAsync(stoppingToken).ConfigureAwait(false))
            {
                try
                {
                    await HandleAsync(message, stoppingToken).ConfigureAwait(false);
                }
                catch (WireFormatException e)
                {
                    Rejected++;
                    logger.LogWarning("agent {Vehicle}: rejected a message on {Topic}: {Reason}", _options.VehicleId, message.Topic, e.Message);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        finally
        {
            try
            {
                await resender.ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
            _trainer?.Dispose();
            _outbox.Dispose();
            _aggregatorKey.Dispose();
        }
    }

    private async Task HandleAsync(MqttIncoming message, CancellationToken cancellationToken)
    {
        var topics = _mqtt!.Topics;
        if (message.Payload.Length == 0) return; // a cleared retained message
        if (message.Topic == topics.RoundCurrent)
        {
            var plan = RoundPlanCodec.Verify(message.Payload, _aggregatorKey!, topics.Fleet);
            if (plan.ModelSpec != _pinned!.ToString())
                throw new WireFormatException($"Round {plan.Round} asks for model {plan.ModelSpec}; this vehicle runs only {_pinned}.");
            if (plan.Round <= (_outbox!.GetState(LastRoundKey) ?? 0)) return;
            if (!plan.Cohort.Contains(_options.VehicleId)) return;
            _plan = plan;
        }
        else if (topics.TryParseModelTopic(message.Topic, out long version))
        {
            var whole = _modelChunks!.Add(version.ToString(System.Globalization.CultureInfo.InvariantCulture), message.Payload);
            if (whole is null) return;
            _models[version] = whole;
            foreach (var old in _models.Keys.Where(v => v < version - 1).ToList()) _models.Remove(old);
        }
        else if (message.Topic.StartsWith(topics.InboxAll(_options.VehicleId)[..^1], StringComparison.Ordinal))
        {
            var envelope = Envelope.Decode(message.Payload, maxPayload: 4096);
            if (envelope.Kind != EnvelopeKind.Ack || envelope.Vehicle != _options.VehicleId) return;
            var ack = UpdateAck.Decode(envelope.Payload.Span);
            if (_outbox!.Acknowledge(envelope.UpdateId))
            {
                Acknowledged++;
                logger.LogInformation("agent {Vehicle}: round {Round} update {Status}{Reason}", _options.VehicleId, envelope.Round, ack.Status, ack.Reason.Length > 0 ? $" ({ack.Reason})" : "");
            }
            return;
        }
        if (TryTakeReadyRound(out var ready, out var modelBytes)) await TrainAndSendAsync(ready, modelBytes, cancellationToken).ConfigureAwait(false);
    }

    private bool TryTakeReadyRound([NotNullWhen(true)] out RoundPlan? plan, [NotNullWhen(true)] out byte[]? model)
    {
        plan = _plan;
        model = null;
        if (plan is null || !_models.TryGetValue(plan.ModelVersion, out model)) return false;
        if (model.Length != plan.ModelBytes || RoundPlanCodec.HashModel(model) != plan.ModelSha256)
        {
            _models.Remove(plan.ModelVersion);
            throw new WireFormatException($"Model {plan.ModelVersion} does not match the SHA-256 in the signed plan of round {plan.Round}.");
        }
        _plan = null;
        return true;
    }

    private async Task TrainAndSendAsync(RoundPlan plan, byte[] modelBytes, CancellationToken cancellationToken)
    {
        Checkpoint checkpoint;
        try
        {
            checkpoint = Checkpoint.FromBytes(modelBytes);
        }
        catch (CheckpointFormatException e)
        {
            throw new WireFormatException($"Model {plan.ModelVersion}: {e.Message}", e);
        }
        if (checkpoint.Spec.ToString() != _pinned!.ToString() || checkpoint.Version != plan.ModelVersion)
            throw new WireFormatException($"Model {checkpoint.Version} ({checkpoint.Spec}) is not the pinned {_pinned} at version {plan.ModelVersion}.");
        var now = time.GetUtcNow();
        var deadline = DateTimeOffset.FromUnixTimeMilliseconds(plan.DeadlineUnixMs);
        if (now >= deadline) return;

        var global = checkpoint.Parameters;
        if (dataset.HoldoutRows is { Length: > 0 }) await EvaluateAsync(checkpoint, cancellationToken).ConfigureAwait(false);
        var update = await Task.Run(() => Train(plan, global), cancellationToken).ConfigureAwait(false);
        var envelope = new Envelope(EnvelopeKind.Update, _options.VehicleId, plan.Round, Guid.NewGuid(), update.Encode());
        var item = new OutboxItem(envelope.UpdateId, _options.VehicleId, plan.Round, _mqtt!.Topics.Up(_options.VehicleId, "update"), envelope.Encode(), deadline);
        // Durable before the first send: a crash after this line resends, a crash before it is a dropout.
        _outbox!.Enqueue(item);
        _outbox.SetState(LastRoundKey, plan.Round);
        RoundsTrained++;
        logger.LogInformation("agent {Vehicle}: trained round {Round} on {Rows} samples (loss {Loss:F4}); sending.", _options.VehicleId, plan.Round, dataset.Rows.Length, update.TrainLoss);
        await SendAsync(item, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Accuracy of the last global model on the vehicle's own hold-out frames, through ONNX Runtime.</summary>
    public OnnxEvaluation? LastEvaluation { get; private set; }

    /// <summary>
    /// Runs the global model it just received through ONNX Runtime (exported by FleetLearn's own exporter,
    /// CUDA when it loads, else CPU) on its hold-out rows, and reports the accuracy — Laplace-noised when
    /// <see cref="EdgeAgentOptions.EvaluationEpsilon"/> is set — on <c>vehicles/{id}/up/eval</c>.
    /// A failed evaluation is logged; it never stops training.
    /// </summary>
    private async Task EvaluateAsync(Checkpoint checkpoint, CancellationToken cancellationToken)
    {
        try
        {
            var evaluation = await Task.Run(() =>
            {
                using var onnx = new MemoryStream();
                OnnxExporter.ExportHead(checkpoint, onnx);
                using var model = OnnxModel.Load(onnx.ToArray(), new OnnxModelOptions { OutputName = "logits" }, $"global-v{checkpoint.Version}");
                var rows = dataset.HoldoutRows!;
                int width = dataset.Data.FeatureSize;
                var features = new float[rows.Length * width];
                var labels = new byte[rows.Length];
                for (int i = 0; i < rows.Length; i++)
                {
                    dataset.Data.Row(rows[i]).CopyTo(features.AsSpan(i * width, width));
                    labels[i] = dataset.Data.Labels[rows[i]];
                }
                var privacy = _options.EvaluationEpsilon is { } eps ? new AccuracyPrivacy(AccuracyNoise.Laplace, eps) : null;
                return OnnxEvaluator.Evaluate(model, features, labels, privacy);
            }, cancellationToken).ConfigureAwait(false);
            LastEvaluation = evaluation;
            var report = System.Text.Encoding.UTF8.GetBytes(FormattableString.Invariant(
                $"{{\"vehicle\":\"{_options.VehicleId}\",\"model_version\":{checkpoint.Version},\"count\":{evaluation.Count},\"accuracy\":{evaluation.ReportedAccuracy:R},\"noised\":{(evaluation.Privacy is null ? "false" : "true")}}}"));
            await _mqtt!.PublishReliablyAsync(_mqtt.Topics.Up(_options.VehicleId, "eval"), report, cancellationToken: cancellationToken).ConfigureAwait(false);
            logger.LogInformation("agent {Vehicle}: model {Version} scores {Accuracy:F4} on {Count} hold-out frames{Noise}.", _options.VehicleId, checkpoint.Version, evaluation.ReportedAccuracy, evaluation.Count, evaluation.Privacy is null ? "" : " (noised)");
        }
        catch (Exception e) when (e is OnnxModelException or InvalidOperationException or ArgumentException or IOException)
        {
            logger.LogWarning(e, "agent {Vehicle}: could not evaluate model {Version} on the hold-out frames.", _options.VehicleId, checkpoint.Version);
        }
    }

    private ModelUpdate Train(RoundPlan plan, float[] global)
    {
        _trainer ??= TrainerFactory.Create(BackendChoice.Cpu, _pinned!, Math.Max(plan.Batch, 256));
        var trainer = _trainer;
        trainer.LoadParameters(global);
        trainer.SetProximalTerm(plan.ProximalMu > 0 ? global : [], plan.ProximalMu);
        var rows = dataset.Rows.ToArray();
        ulong vehicleHash = BitConverter.ToUInt64(SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(_options.VehicleId)));
        var rng = DeterministicRandom.Derive(_options.Seed ^ vehicleHash, 0xC11E, (ulong)plan.Round);
        var sgd = new SgdOptions(plan.LearningRate, plan.Momentum);
        var schedule = new LearningRateSchedule.Constant(plan.LearningRate);
        long step = 0;
        TrainingLoop.EpochResult last = default;
        for (int e = 0; e < plan.LocalEpochs; e++)
            last = TrainingLoop.RunEpoch(trainer, dataset.Data, rows, plan.Batch, sgd, schedule, ref step, 0, rng);
        var delta = new float[global.Length];
        trainer.ReadParameters(delta);
        VectorMath.Subtract(delta, global, delta);
        return new ModelUpdate(Math.Max(1, rows.Length), rows.Length, last.MeanLoss, delta);
    }

    private async Task SendAsync(OutboxItem item, CancellationToken cancellationToken)
    {
        var remaining = item.ExpiresAt - time.GetUtcNow();
        if (remaining <= TimeSpan.Zero) return;
        // The transfer id is the update id: a resend's chunks complete the same transfer at the aggregator.
        var chunks = ChunkCodec.Split(item.Payload, _mqtt!.Options.MaxPacketSize, item.UpdateId);
        _outbox!.RecordAttempt(item.UpdateId);
        try
        {
            await Task.WhenAll(chunks.Select(c => _mqtt.PublishAsync(item.Topic, c, expiry: remaining, cancellationToken: cancellationToken))).ConfigureAwait(false);
        }
        catch (Exception e) when (MqttConnection.IsTransient(e))
        {
            logger.LogInformation("agent {Vehicle}: send of round {Round} interrupted ({Error}); the outbox resends it.", _options.VehicleId, item.Round, e.Message);
        }
    }

    private async Task ResendLoopAsync(CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(_options.ResendInterval, time);
        bool first = true;
        do
        {
            try
            {
                await _mqtt!.WaitUntilConnectedAsync(cancellationToken).ConfigureAwait(false);
                _outbox!.DropExpired(time.GetUtcNow());
                var pending = _outbox.Pending();
                if (first || pending.Count == 0) await CheckInAsync(cancellationToken).ConfigureAwait(false);
                if (!first)
                {
                    foreach (var item in pending) await SendAsync(item, cancellationToken).ConfigureAwait(false);
                }
                first = false;
            }
            catch (Exception e) when (MqttConnection.IsTransient(e))
            {
                logger.LogDebug("agent {Vehicle}: resend pass failed ({Error}).", _options.VehicleId, e.Message);
            }
        }
        while (await timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false));
    }

    private Task CheckInAsync(CancellationToken cancellationToken)
    {
        long round = _outbox!.GetState(LastRoundKey) ?? 0;
        var envelope = new Envelope(EnvelopeKind.Checkin, _options.VehicleId, round, Guid.NewGuid(), CheckinPayload.Encode(dataset.Rows.Length));
        return _mqtt!.PublishAsync(_mqtt.Topics.Checkin(_options.VehicleId), envelope.Encode(), expiry: _options.ResendInterval * 2, cancellationToken: cancellationToken);
    }
}
