using System.Diagnostics.CodeAnalysis;
using System.Security.Cryptography;
using System.Threading.Channels;
using FleetLearn.Core.Compression;
using FleetLearn.Core.Model;
using FleetLearn.Core.Numerics;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Rounds;
using FleetLearn.Core.SecureAggregation;
using FleetLearn.Core.Training;
using FleetLearn.Perception.Onnx;
using FleetLearn.Storage;
using FleetLearn.Transport.Mqtt;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace FleetLearn.EdgeAgent;

/// <summary>
/// The vehicle worker. Checks in (with its device public key) while the vehicle is eligible — parked, charging,
/// unmetered, enough new samples, privacy budget left; listens to the retained round plan and model; verifies the
/// plan's ECDSA signature, the model's SHA-256 (from the plan), the pinned architecture and that the plan's protection
/// meets the vehicle's own policy; trains on its local data; and protects the update with the plan's pipeline (clip,
/// DP noise share, rotation, subsample, quantization). Plaintext rounds send the encoded update; secure rounds run the
/// <see cref="SecAggVehicle"/> state machine (advertise keys, share keys, masked input, unmask). Everything it sends goes
/// through the durable LiteDB outbox and is resent until the aggregator acknowledges it. The vehicle's own privacy
/// ledger records a round's charge before any data-dependent message leaves. A restart mid-round is a dropout: round
/// keys live in memory only and a round once started is never joined again.
/// </summary>
public sealed class EdgeAgentWorker(
    IOptions<EdgeAgentOptions> agentOptions,
    IOptions<MqttTransportOptions> mqttOptions,
    VehicleDataset dataset,
    TimeProvider time,
    ILogger<EdgeAgentWorker> logger,
    IVehicleStateProvider? vehicleState = null,
    AgentRandomness? randomness = null,
    TrainerPool? trainers = null,
    Ingest.IVehicleDataSource? dataSource = null,
    VehicleStateMonitor? monitor = null) : BackgroundService
{
    /// <summary>The vehicle's data as of its last check-in (refreshed from the data source, which ingest keeps filling).</summary>
    private VehicleDataset _data = dataset;

    private const string LastRoundKey = "last-round";
    private const string SamplesAtLastRoundKey = "samples-at-last-round";
    private readonly EdgeAgentOptions _options = agentOptions.Value;
    private readonly Dictionary<long, byte[]> _models = [];
    private readonly AgentRandomness _random = randomness ?? AgentRandomness.ForVehicle(agentOptions.Value.VehicleId, agentOptions.Value.Seed);
    private readonly IVehicleStateProvider _state = vehicleState ?? new FileVehicleStateProvider(agentOptions.Value);
    private TrainerPool? _ownTrainers;
    private MqttConnection? _mqtt;
    private LiteDbOutbox? _outbox;
    private LiteDbPrivacyLedgerStore? _ledger;
    private ChunkAssembler? _modelChunks;
    private ChunkAssembler? _inboxChunks;
    private ChannelWriter<LoopItem>? _loop;
    private Task _training = Task.CompletedTask;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<Guid, DateTimeOffset> _nextResend = new();

    /// <summary>What the message loop handles: a message from the broker, or a secure input that finished training.</summary>
    private sealed record LoopItem(MqttIncoming? Message, SecureRound? Round = null, uint[]? Input = null);
    private RoundPlan? _plan;
    private ECDsa? _aggregatorKey;
    private ECDsa? _deviceKey;
    private byte[] _devicePublicKey = [];
    private ModelSpec? _pinned;
    private SecureRound? _secure;

    /// <summary>This vehicle's id.</summary>
    public string VehicleId => _options.VehicleId;

    /// <summary>Rounds this vehicle trained (for tests and status).</summary>
    public int RoundsTrained { get; private set; }

    /// <summary>Rounds whose protected update (plaintext or masked input) left the vehicle.</summary>
    public int RoundsSent { get; private set; }

    /// <summary>Messages rejected (bad signature, wrong fleet, wrong architecture, malformed, policy).</summary>
    public int Rejected { get; private set; }

    /// <summary>Messages the aggregator acknowledged (updates and secure-aggregation messages).</summary>
    public int Acknowledged { get; private set; }

    /// <summary>Rounds the vehicle declined (privacy budget, policy) or dropped (secure-aggregation failure).</summary>
    public int Declined { get; private set; }

    /// <summary>Messages still waiting in the outbox for an acknowledgement.</summary>
    public int PendingInOutbox => _outbox?.Count ?? 0;

    /// <summary>ε this vehicle has spent, by its own ledger (0 before any DP round).</summary>
    public double EpsilonSpent => _ledger?.EpsilonOf(_options.VehicleId) ?? 0;

    /// <summary>Accuracy of the last global model on the vehicle's own hold-out frames, through ONNX Runtime.</summary>
    public OnnxEvaluation? LastEvaluation { get; private set; }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var mqtt = mqttOptions.Value;
        if (mqtt.ClientId != _options.VehicleId)
            throw new InvalidOperationException($"Mqtt:ClientId '{mqtt.ClientId}' must equal Agent:VehicleId '{_options.VehicleId}' (the broker enforces it).");
        _pinned = ModelSpec.Parse(_options.PinnedModelSpec);
        _aggregatorKey = SigningKeys.LoadPublic(_options.AggregatorPublicKey);
        _deviceKey = SigningKeys.LoadOrCreate(_options.EffectiveDeviceKeyPath);
        _devicePublicKey = _deviceKey.ExportSubjectPublicKeyInfo();
        _outbox = LiteDbOutbox.Open(_options.DatabasePath);
        _ledger = LiteDbPrivacyLedgerStore.Open(_options.EffectivePrivacyLedgerPath, new PrivacyLedgerOptions(_options.EpsilonBudget ?? double.MaxValue, _options.PrivacyDelta));
        if (trainers is null) _ownTrainers = TrainerPool.Single();
        _modelChunks = new ChunkAssembler(_options.MaxModelBytes, maxPendingTransfers: 4);
        _inboxChunks = new ChunkAssembler(_options.MaxModelBytes, maxPendingTransfers: 16);
        var inbox = Channel.CreateBounded<LoopItem>(new BoundedChannelOptions(1024) { FullMode = BoundedChannelFullMode.Wait, SingleReader = true });
        await using var connection = new MqttConnection(mqtt, time, logger, new FleetTopics(mqtt.Fleet).Status(_options.VehicleId));
        _mqtt = connection;
        connection.MessageReceived += m => inbox.Writer.WriteAsync(new LoopItem(m), stoppingToken).AsTask();
        _loop = inbox.Writer;
        var topics = connection.Topics;
        await connection.SubscribeAsync(topics.RoundCurrent, stoppingToken).ConfigureAwait(false);
        await connection.SubscribeAsync(topics.ModelAll, stoppingToken).ConfigureAwait(false);
        await connection.SubscribeAsync(topics.InboxAll(_options.VehicleId), stoppingToken).ConfigureAwait(false);
        connection.Start(stoppingToken);
        var resender = Task.Run(() => ResendLoopAsync(stoppingToken), stoppingToken);
        try
        {
            await foreach (var item in inbox.Reader.ReadAllAsync(stoppingToken).ConfigureAwait(false))
            {
                if (item.Message is not { } message)
                {
                    await InputReadyAsync(item.Round!, item.Input!, stoppingToken).ConfigureAwait(false);
                    continue;
                }
                try
                {
                    await HandleAsync(message, stoppingToken).ConfigureAwait(false);
                }
                catch (WireFormatException e)
                {
                    Rejected++;
                    logger.LogWarning("agent {Vehicle}: rejected a message on {Topic}: {Reason}", _options.VehicleId, message.Topic, e.Message);
                }
                catch (SecAggProtocolException e)
                {
                    AbandonSecureRound($"secure aggregation failed: {e.Message}");
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
                await _training.ConfigureAwait(false); // never dispose the trainer under a running epoch
            }
            catch (OperationCanceledException)
            {
            }
            _secure?.Dispose();
            _ownTrainers?.Dispose();
            _outbox.Dispose();
            _ledger.Dispose();
            _aggregatorKey.Dispose();
            _deviceKey.Dispose();
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
            if (plan.Round <= (_outbox!.GetState(LastRoundKey) ?? 0))
            {
                logger.LogDebug("agent {Vehicle}: round {Round} was joined or declined before; not joined again (round keys are never reused).", _options.VehicleId, plan.Round);
                return;
            }
            if (!plan.Cohort.Contains(_options.VehicleId)) return;
            if (PolicyRefusal(plan) is { } refusal)
            {
                Declined++;
                _outbox.SetState(LastRoundKey, plan.Round);
                logger.LogWarning("agent {Vehicle}: declines round {Round}: {Reason}", _options.VehicleId, plan.Round, refusal);
                return;
            }
            await JoinRoundAsync(plan, cancellationToken).ConfigureAwait(false);
        }
        else if (topics.TryParseModelTopic(message.Topic, out long version))
        {
            var whole = _modelChunks!.Add(version.ToString(System.Globalization.CultureInfo.InvariantCulture), message.Payload);
            if (whole is null) return;
            _models[version] = whole;
            foreach (var old in _models.Keys.Where(v => v < version - 1).ToList()) _models.Remove(old);
        }
        else if (message.Topic == topics.Inbox(_options.VehicleId, "ack"))
        {
            var envelope = Envelope.Decode(message.Payload, maxPayload: 4096);
            if (envelope.Kind != EnvelopeKind.Ack || envelope.Vehicle != _options.VehicleId) return;
            var ack = UpdateAck.Decode(envelope.Payload.Span);
            string what = _outbox!.Pending().FirstOrDefault(i => i.UpdateId == envelope.UpdateId)?.Topic.EndsWith("/update", StringComparison.Ordinal) == true ? "update" : "secure-aggregation message";
            _nextResend.TryRemove(envelope.UpdateId, out _);
            if (_outbox.Acknowledge(envelope.UpdateId))
            {
                Acknowledged++;
                var level = ack.Status == AckStatus.Rejected ? LogLevel.Warning : what == "update" ? LogLevel.Information : LogLevel.Debug;
                logger.Log(level, "agent {Vehicle}: round {Round} {What} {Status}{Reason}", _options.VehicleId, envelope.Round, what, ack.Status, ack.Reason.Length > 0 ? $" ({ack.Reason})" : "");
            }
            return;
        }
        else if (message.Topic == topics.Inbox(_options.VehicleId, "secagg"))
        {
            var whole = _inboxChunks!.Add("secagg", message.Payload);
            if (whole is not null) await HandleSecAggAsync(whole, cancellationToken).ConfigureAwait(false);
            return;
        }
        if (TryTakeReadyRound(out var ready, out var modelBytes)) await StartRoundAsync(ready, modelBytes, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Why this vehicle will not run <paramref name="plan"/> under its own policy, or null.</summary>
    private string? PolicyRefusal(RoundPlan plan)
    {
        var p = plan.Protection;
        bool secure = p is not null && p.SecureMode != SecureAggregationMode.Off;
        if (_options.RequireSecureAggregation && !secure) return "the plan has no secure aggregation and this vehicle requires it";
        if (_options.MinNoiseMultiplier > 0 && (p?.NoiseMode is null || p.NoiseMultiplier < _options.MinNoiseMultiplier))
            return $"the plan's DP noise multiplier {p?.NoiseMultiplier ?? 0} is below this vehicle's minimum {_options.MinNoiseMultiplier}";
        if (plan.Batch > TrainerPool.MaxBatch) return $"batch {plan.Batch} exceeds {TrainerPool.MaxBatch}";
        if (p?.NoiseMode is not null && !_ledger!.CanParticipate(_options.VehicleId, PrivacyCharge.Participation(p.NoiseMultiplier)))
            return $"the round would exceed this vehicle's ε budget {_options.EpsilonBudget} (spent {_ledger.EpsilonOf(_options.VehicleId):F3})";
        if (secure)
        {
            int index = plan.Cohort.ToList().IndexOf(_options.VehicleId);
            if (!Convert.FromBase64String(p!.DeviceKeys![index]).AsSpan().SequenceEqual(_devicePublicKey))
                return "the plan lists another device key for this vehicle";
        }
        return null;
    }

    private bool TryTakeReadyRound([NotNullWhen(true)] out RoundPlan? plan, [NotNullWhen(true)] out byte[]? model)
    {
        plan = _plan;
        model = null;
        if (plan is null || !_models.TryGetValue(plan.ModelVersion, out model)) return false;
        if (model.Length != plan.ModelBytes || RoundPlanCodec.HashModel(model) != plan.ModelSha256)
        {
            _models.Remove(plan.ModelVersion);
            throw new WireFormatException($"Model {plan.ModelVersion} does not match the SHA-256 in the signed plan of round {plan.Round}.", RejectReasons.Signature);
        }
        _plan = null;
        return true;
    }

    /// <summary>
    /// Joins <paramref name="plan"/>'s round: recorded durably first (a restart from here on is a dropout, never a second
    /// attempt with new keys); under secure aggregation the round keys are advertised at once — they do not depend on the
    /// model, so the key phases run while the model downloads and the vehicle trains.
    /// </summary>
    private async Task JoinRoundAsync(RoundPlan plan, CancellationToken cancellationToken)
    {
        _outbox!.SetState(LastRoundKey, plan.Round);
        _outbox.SetState(SamplesAtLastRoundKey, _data.Rows.Length);
        _secure?.Dispose();
        _secure = null;
        _plan = plan;
        var protection = plan.Protection ?? new RoundProtection();
        if (protection.SecureMode == SecureAggregationMode.Off) return;
        var pipeline = protection.CreatePipeline(ModelSpec.Parse(plan.ModelSpec).ParameterCount, plan.Cohort.Count);
        var parameters = protection.CreateSecAggParameters(pipeline, plan.Round, plan.Cohort.Count);
        var registry = new DeviceKeyRegistry();
        for (int i = 0; i < plan.Cohort.Count; i++) registry.Add(i, Convert.FromBase64String(protection.DeviceKeys![i]));
        _secure = new SecureRound(plan, new SecAggVehicle(parameters, plan.Cohort.ToList().IndexOf(_options.VehicleId), _deviceKey!, registry, time), registry);
        await SendSecAggAsync(_secure.Vehicle.Start(), cancellationToken).ConfigureAwait(false);
    }

    private async Task StartRoundAsync(RoundPlan plan, byte[] modelBytes, CancellationToken cancellationToken)
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
        foreach (var old in _models.Keys.Where(v => v < plan.ModelVersion).ToList()) _models.Remove(old);
        var deadline = DateTimeOffset.FromUnixTimeMilliseconds(plan.DeadlineUnixMs);
        if (time.GetUtcNow() >= deadline) return;
        var protection = plan.Protection ?? new RoundProtection();
        var pipeline = protection.CreatePipeline(checkpoint.Parameters.Length, plan.Cohort.Count);
        var codec = protection.ForRound(pipeline, plan.Round);
        int index = plan.Cohort.ToList().IndexOf(_options.VehicleId);
        if (pipeline.IsSecure && _secure?.Plan.Round != plan.Round) return; // the secure round was abandoned
        if (_data.HoldoutRows is { Length: > 0 }) await EvaluateAsync(checkpoint, cancellationToken).ConfigureAwait(false);
        double weight = protection.WeightFor(_data.Rows.Length);
        if (_secure is { } round)
        {
            // Training runs beside the message loop: the key phases (key directory, share routing) must be answered
            // within their deadlines while the vehicle trains. The loop hears about the finished input through its inbox.
            var global = checkpoint.Parameters;
            _training = Task.Run(async () =>
            {
                try
                {
                    if (await TrainAsync(plan, global, cancellationToken).ConfigureAwait(false) is not { } trained) return; // a dropout for SecAgg
                    var (d, l) = trained;
                    var input = codec.EncodeSecure(d, weight, _random.Noise(plan.Round), _random.Rounding(plan.Round), out _);
                    logger.LogInformation("agent {Vehicle}: trained round {Round} on {Rows} samples (loss {Loss:F4}); secure aggregation in progress.", _options.VehicleId, plan.Round, _data.Rows.Length, l);
                    await _loop!.WriteAsync(new LoopItem(null, round, input), cancellationToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
                {
                }
            }, cancellationToken);
            return;
        }
        if (await TrainAsync(plan, checkpoint.Parameters, cancellationToken).ConfigureAwait(false) is not { } trained) return;
        var (delta, loss) = trained;
        RoundsTrained++;
        if (!RecordPrivacySpend(plan)) return;
        var body = codec.EncodePlain(delta, weight, (ulong)index, Guid.NewGuid(), _random.Noise(plan.Round), _random.Rounding(plan.Round), null, out _);
        var payload = new PlainUpdate(loss, _data.Rows.Length, body).Encode();
        await EnqueueAndSendAsync(EnvelopeKind.Update, "update", plan.Round, payload, deadline, cancellationToken).ConfigureAwait(false);
        RoundsSent++;
        logger.LogInformation("agent {Vehicle}: trained round {Round} on {Rows} samples (loss {Loss:F4}); sending {Bytes} bytes.", _options.VehicleId, plan.Round, _data.Rows.Length, loss, payload.Length);
    }

    /// <summary>A secure input finished training (on the loop's thread): answer the forwarded shares if they came first.</summary>
    private async Task InputReadyAsync(SecureRound round, uint[] input, CancellationToken cancellationToken)
    {
        RoundsTrained++;
        if (_secure != round) return; // the round was abandoned meanwhile
        round.Input = input;
        try
        {
            if (round.PendingShares is { } shares) await SendMaskedInputAsync(round, shares, cancellationToken).ConfigureAwait(false);
        }
        catch (SecAggProtocolException e)
        {
            AbandonSecureRound($"secure aggregation failed: {e.Message}");
        }
    }

    /// <summary>Records this round's DP charge in the vehicle's own ledger before the update leaves; false (declined) when over budget.</summary>
    private bool RecordPrivacySpend(RoundPlan plan)
    {
        if (plan.Protection is not { NoiseMode: not null } p) return true;
        if (_ledger!.TryRecord(_options.VehicleId, plan.Round, PrivacyCharge.Participation(p.NoiseMultiplier), out var state)) return true;
        Declined++;
        logger.LogWarning("agent {Vehicle}: round {Round} would exceed the ε budget (spent {Epsilon:F3}); the update stays on the vehicle.", _options.VehicleId, plan.Round, state.Epsilon);
        return false;
    }

    private async Task HandleSecAggAsync(byte[] bytes, CancellationToken cancellationToken)
    {
        var envelope = Envelope.Decode(bytes, _options.MaxModelBytes);
        if (envelope.Kind != EnvelopeKind.SecAgg || envelope.Vehicle != _options.VehicleId) throw new WireFormatException("A secure-aggregation message in this inbox names another vehicle or kind.");
        if (_secure is not { } round || envelope.Round != round.Plan.Round) return; // a stale round: nothing to answer
        SecAggMessage message;
        try
        {
            message = SecAggCodec.Decode(envelope.Payload.Span, (ulong)round.Plan.Round);
        }
        catch (SecAggFormatException e)
        {
            throw new WireFormatException($"Secure-aggregation message: {e.Message}", e);
        }
        switch (message)
        {
            case KeyDirectoryMessage directory:
                await SendSecAggAsync(round.Vehicle.HandleKeyDirectory(directory), cancellationToken).ConfigureAwait(false);
                break;
            case ForwardedSharesMessage when round.Input is { Length: 0 }:
                break; // already answered (a redelivered copy)
            case ForwardedSharesMessage shares when round.Input is null:
                round.PendingShares = shares; // still training: answered when the input is ready
                break;
            case ForwardedSharesMessage shares:
                await SendMaskedInputAsync(round, shares, cancellationToken).ConfigureAwait(false);
                break;
            case UnmaskRequestMessage request:
                await SendSecAggAsync(round.Vehicle.HandleUnmaskRequest(request), cancellationToken).ConfigureAwait(false);
                logger.LogInformation("agent {Vehicle}: round {Round}: unmasking answered; secure aggregation done on this side.", _options.VehicleId, round.Plan.Round);
                round.Dispose();
                _secure = null;
                break;
            default:
                throw new WireFormatException($"{message.Type} is not a message the aggregator sends.");
        }
    }

    private async Task SendMaskedInputAsync(SecureRound round, ForwardedSharesMessage shares, CancellationToken cancellationToken)
    {
        round.PendingShares = null;
        if (!RecordPrivacySpend(round.Plan))
        {
            AbandonSecureRound("over the ε budget");
            return;
        }
        await SendSecAggAsync(round.Vehicle.HandleForwardedShares(shares, round.Input), cancellationToken).ConfigureAwait(false);
        round.Input = []; // sent (and durable in the outbox): do not hold P values per vehicle until unmasking
        RoundsSent++;
    }

    private void AbandonSecureRound(string why)
    {
        if (_secure is null) return;
        Declined++;
        logger.LogWarning("agent {Vehicle}: drops out of round {Round}: {Reason}", _options.VehicleId, _secure.Plan.Round, why);
        _secure.Dispose();
        _secure = null;
    }

    private Task SendSecAggAsync(SecAggMessage message, CancellationToken cancellationToken)
    {
        var deadline = DateTimeOffset.FromUnixTimeMilliseconds(_secure!.Plan.DeadlineUnixMs);
        return EnqueueAndSendAsync(EnvelopeKind.SecAgg, "secagg", _secure.Plan.Round, SecAggCodec.Encode(message), deadline, cancellationToken);
    }

    private async Task EnqueueAndSendAsync(EnvelopeKind kind, string channel, long round, byte[] payload, DateTimeOffset expires, CancellationToken cancellationToken)
    {
        var envelope = new Envelope(kind, _options.VehicleId, round, Guid.NewGuid(), payload);
        var item = new OutboxItem(envelope.UpdateId, _options.VehicleId, round, _mqtt!.Topics.Up(_options.VehicleId, channel), envelope.Encode(), expires);
        // Durable before the first send: a crash after this line resends it, a crash before it is a dropout.
        _outbox!.Enqueue(item);
        await SendAsync(item, cancellationToken).ConfigureAwait(false);
    }

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
                var rows = _data.HoldoutRows!;
                int width = _data.Data.FeatureSize;
                var features = new float[rows.Length * width];
                var labels = new byte[rows.Length];
                for (int i = 0; i < rows.Length; i++)
                {
                    _data.Data.Row(rows[i]).CopyTo(features.AsSpan(i * width, width));
                    labels[i] = _data.Data.Labels[rows[i]];
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

    /// <summary>
    /// Local training: Δ = w_local − w_N and the last epoch's mean loss; null when the vehicle stopped being eligible mid-training
    /// (ignition on, …: the monitor's token stops it between batches, within 1 s) — the round is then abandoned.
    /// </summary>
    private async Task<(float[] Delta, double Loss)?> TrainAsync(RoundPlan plan, float[] global, CancellationToken cancellationToken)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, monitor?.TrainingToken ?? CancellationToken.None);
        try
        {
            return await (trainers ?? _ownTrainers!).RunAsync(_pinned!, trainer =>
            {
                var delta = new float[global.Length];
                double loss = LocalTraining.Run(trainer, global, _data.Data, _data.Rows.ToArray(),
                    new LocalTrainingSettings(plan.LocalEpochs, plan.Batch, plan.LearningRate, plan.Momentum, plan.ProximalMu), _random.DataOrder(plan.Round), delta, stop.Token);
                return (delta, loss);
            }, stop.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            logger.LogInformation("agent {Vehicle}: training of round {Round} stopped: {Reason}; the round is abandoned.", _options.VehicleId, plan.Round, monitor?.Ineligibility() ?? "no longer eligible");
            return null;
        }
    }

    private async Task SendAsync(OutboxItem item, CancellationToken cancellationToken)
    {
        var remaining = item.ExpiresAt - time.GetUtcNow();
        if (remaining <= TimeSpan.Zero) return;
        // The transfer id is the update id: a resend's chunks complete the same transfer at the aggregator.
        var chunks = ChunkCodec.Split(item.Payload, _mqtt!.Options.MaxPacketSize, item.UpdateId);
        _outbox!.RecordAttempt(item.UpdateId);
        // Exponential backoff between resends (1, 2, 4, 8, 16 × ResendInterval): an aggregator that is slow to answer
        // under load is not flooded with copies. After a restart the first pass resends everything at once.
        _nextResend[item.UpdateId] = time.GetUtcNow() + _options.ResendInterval * Math.Pow(2, Math.Min(item.Attempts, 4));
        try
        {
            // The envelope's (vehicle, round, update id) also travel as MQTT 5 user properties, so that brokers, bridges and
            // monitoring can route and trace updates without decoding them. Message expiry = the round's deadline.
            IReadOnlyList<(string, string)> properties =
                [("fl-vehicle", item.Vehicle), ("fl-round", item.Round.ToString(System.Globalization.CultureInfo.InvariantCulture)), ("fl-update-id", item.UpdateId.ToString())];
            await Task.WhenAll(chunks.Select(c => _mqtt.PublishAsync(item.Topic, c, expiry: remaining, properties: properties, cancellationToken: cancellationToken))).ConfigureAwait(false);
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
                    var now = time.GetUtcNow();
                    foreach (var item in pending.Where(i => !_nextResend.TryGetValue(i.UpdateId, out var due) || now >= due))
                        await SendAsync(item, cancellationToken).ConfigureAwait(false);
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

    /// <summary>Why the vehicle may not train now (eligibility policy), or null.</summary>
    internal string? Ineligibility()
    {
        if (monitor?.Ineligibility() is { } why) return why; // temperature, state unknown, … (the gateway's policy)
        var state = _state.Current();
        if (_options.RequireParked && !state.Parked) return "not parked";
        if (_options.RequireCharging && !state.Charging) return "not charging";
        if (_options.RequireUnmetered && !state.Unmetered) return "on a metered link";
        long newSamples = _data.Rows.Length - (_outbox!.GetState(SamplesAtLastRoundKey) ?? 0);
        if (_options.MinNewSamples > 0 && newSamples < _options.MinNewSamples) return $"{newSamples} new samples < {_options.MinNewSamples}";
        if (_data.Rows.Length == 0) return "no local samples";
        if (_options.EpsilonBudget is { } budget && _ledger!.EpsilonOf(_options.VehicleId) >= budget) return "privacy budget spent";
        return null;
    }

    private Task CheckInAsync(CancellationToken cancellationToken)
    {
        long round = _outbox!.GetState(LastRoundKey) ?? 0;
        if (dataSource is not null) _data = dataSource.Current();
        var why = Ineligibility();
        if (why is not null) logger.LogDebug("agent {Vehicle}: not eligible ({Reason}); withdraws its check-in.", _options.VehicleId, why);
        var checkin = new Checkin(why is null ? _data.Rows.Length : 0, _devicePublicKey);
        var envelope = new Envelope(EnvelopeKind.Checkin, _options.VehicleId, round, Guid.NewGuid(), checkin.Encode());
        return _mqtt!.PublishAsync(_mqtt.Topics.Checkin(_options.VehicleId), envelope.Encode(), expiry: _options.ResendInterval * 2, cancellationToken: cancellationToken);
    }

    /// <summary>This vehicle's part of one secure round: the state machine, its input once trained, shares that came early.</summary>
    private sealed class SecureRound(RoundPlan plan, SecAggVehicle vehicle, DeviceKeyRegistry registry) : IDisposable
    {
        public RoundPlan Plan { get; } = plan;
        public SecAggVehicle Vehicle { get; } = vehicle;
        public uint[]? Input { get; set; }
        public ForwardedSharesMessage? PendingShares { get; set; }

        public void Dispose()
        {
            Vehicle.Dispose();
            registry.Dispose();
        }
    }
}
