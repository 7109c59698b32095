using System.Security.Cryptography;
using System.Threading.Channels;
using FleetLearn.Core.Model;
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
/// The vehicle worker: a message pump around <see cref="VehicleRound"/>, the vehicle's part of a round. It verifies the
/// retained round plan (ECDSA signature, fleet, pinned architecture) and the model (SHA-256 from the plan), hands them to the
/// round, and executes what the round asks for: training beside the loop (<see cref="AgentTraining"/>), sends through the
/// durable outbox (<see cref="AgentUplink"/>), the vehicle's own ledger charged before anything data-dependent leaves. It checks
/// in while the vehicle is eligible. A restart mid-round is a dropout: round keys live in memory only and a round once
/// decided is never joined again.
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
    VehicleStateMonitor? monitor = null,
    IAgentLink? link = null) : BackgroundService
{
    private readonly EdgeAgentOptions _options = agentOptions.Value;
    private readonly AgentRandomness _random = randomness ?? AgentRandomness.ForVehicle(agentOptions.Value.VehicleId, agentOptions.Value.Seed);
    private readonly IVehicleStateProvider _state = vehicleState ?? new FileVehicleStateProvider(agentOptions.Value);
    private VehicleDataset _data = dataset; // as of the last check-in (the data source, which ingest keeps filling)
    private MqttConnection? _mqtt; private AgentModelFeed? _feed; // the connection; which models it receives
    private AgentUplink? _uplink; private AgentCheckIn? _checkIn;
    private LiteDbOutbox? _outbox; private LiteDbPrivacyLedgerStore? _ledger; // the durable stores
    private AgentModels? _models; private ChunkAssembler? _inboxChunks; // models as they arrive; the inbox's chunked messages
    private AgentTraining? _training;
    private Channel<object>? _loop; // MqttIncoming or TrainingResult, handled one at a time
    private ECDsa? _aggregatorKey, _deviceKey;
    private VehicleProfile? _profile;
    private RoundPlan? _plan; // the plan of _round
    private ulong _planTag; // its signed bytes' tag: every message of the round names the plan it answers
    private VehicleRound? _round;

    /// <summary>This vehicle's id.</summary>
    public string VehicleId => _options.VehicleId;

    /// <summary>Rounds this vehicle trained (for tests and status).</summary>
    public int RoundsTrained { get; private set; }

    /// <summary>Rounds whose protected update (plaintext or masked input) left the vehicle.</summary>
    public int RoundsSent { get; private set; }

    /// <summary>Messages rejected (bad signature, wrong fleet, wrong architecture, malformed).</summary>
    public int Rejected { get; private set; }

    /// <summary>Messages the aggregator acknowledged (updates and secure-aggregation messages).</summary>
    public int Acknowledged => _uplink?.Acknowledged ?? 0;

    /// <summary>Rounds the vehicle declined (policy, privacy budget) or dropped out of (training stopped, SecAgg failure).</summary>
    public int Declined { get; private set; }

    /// <summary>Messages still waiting in the outbox for an acknowledgement.</summary>
    public int PendingInOutbox => _outbox?.Count ?? 0;

    /// <summary>ε this vehicle has spent, by its own ledger (0 before any DP round).</summary>
    public double EpsilonSpent => _ledger?.EpsilonOf(_options.VehicleId) ?? 0;

    /// <summary>Accuracy of the last global model on the vehicle's own hold-out frames, through ONNX Runtime.</summary>
    public OnnxEvaluation? LastEvaluation { get; private set; }

    /// <summary>The check-in window the aggregator suggested and the check-ins held back for it (pace steering; null before start).</summary>
    public AgentPace? Pace { get; private set; }

    /// <summary>Raised on the agent's loop after each message or training result it handled (its counters may have changed).</summary>
    public event Action? Progressed;

    /// <summary>True while its broker connection is up (false before the first connect).</summary>
    public bool IsConnected => _mqtt?.IsConnected == true;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var mqtt = mqttOptions.Value;
        if (mqtt.ClientId != _options.VehicleId)
            throw new InvalidOperationException($"Mqtt:ClientId '{mqtt.ClientId}' must equal Agent:VehicleId '{_options.VehicleId}' (the broker enforces it).");
        using var aggregatorKey = _aggregatorKey = SigningKeys.LoadPublic(_options.AggregatorPublicKey);
        var identity = DeviceIdentity.Load(mqtt, _options);
        _deviceKey = identity.Key;
        _profile = identity.Profile(_options, _aggregatorKey);
        (_outbox, _ledger) = AgentUplink.OpenStores(_options, logger); // an unreadable file is quarantined, never a vehicle down for good
        using var ownTrainers = trainers is null ? TrainerPool.Single() : null;
        var training = _training = new AgentTraining(trainers ?? ownTrainers!, _profile.Pinned, monitor, _options.VehicleId, logger);
        (_models, _inboxChunks) = (new AgentModels(_options.MaxModelBytes, time), new ChunkAssembler(_options.MaxModelBytes, maxPendingTransfers: 16));
        _loop = Channel.CreateBounded<object>(new BoundedChannelOptions(1024) { FullMode = BoundedChannelFullMode.Wait, SingleReader = true });
        await using var connection = _mqtt = new MqttConnection(mqtt, time, logger, new FleetTopics(mqtt.Fleet).Status(_options.VehicleId));
        _uplink = new AgentUplink(_options.VehicleId, connection, _outbox, _options.ResendInterval, time, logger) { UpdateAcknowledged = r => link?.UpdateAcknowledged(_options.VehicleId, r), AwaitsServer = () => _round?.AwaitsServer == true, MissingModel = () => _round is { State: AwaitingModel } r && r.Elapsed >= _options.ResendInterval && _models!.QuietFor(2 * _options.ResendInterval) ? r.ModelVersion : null };
        connection.MessageReceived += m => _loop.Writer.WriteAsync(m, stoppingToken).AsTask();
        _feed = new AgentModelFeed(connection, _options.ModelsWhenSelected); foreach (var topic in new[] { connection.Topics.RoundCurrent, connection.Topics.RoundSlowDown, connection.Topics.InboxAll(_options.VehicleId) }.Concat(_feed.AtStart())) await connection.SubscribeAsync(topic, stoppingToken).ConfigureAwait(false); // every model, or those of rounds that select it
        connection.Start(stoppingToken);
        _checkIn = new AgentCheckIn(_options, _state, monitor, _outbox, _ledger, connection, _deviceKey.ExportSubjectPublicKeyInfo(), identity.Certificate, logger, time, Pace = new AgentPace(_outbox, _aggregatorKey, mqtt.Fleet, _options.VehicleId, time, logger));
        var idle = new AgentIdle(_outbox, _ledger, () => _round is { IsFinished: false }, _options.VehicleId, logger); idle.ReleaseIfIdle(); // closed until used: thousands start at once
        var resender = Task.Run(() => _uplink.RunAsync(ct => idle.AfterAsync(_checkIn.PublishAsync(_data = dataSource?.Current() ?? _data, ct)), stoppingToken), stoppingToken);
        using var onStateChange = _checkIn.CheckInOnChange(() => _data = dataSource?.Current() ?? _data, stoppingToken);
        try
        {
            await foreach (var item in _loop.Reader.ReadAllAsync(stoppingToken).ConfigureAwait(false))
            {
                try
                {
                    if (item is TrainingResult result) await TrainedAsync(result, stoppingToken).ConfigureAwait(false);
                    else await HandleAsync((MqttIncoming)item, stoppingToken).ConfigureAwait(false);
                }
                catch (Exception e) when (e is WireFormatException || StorageErrors.IsDiskFull(e)) // a full disk: this step is skipped, the vehicle stays up
                {
                    Rejected += e is WireFormatException ? 1 : 0;
                    logger.Log(e is WireFormatException ? LogLevel.Warning : LogLevel.Error, "agent {Vehicle}: {What} a message{On}: {Reason}", _options.VehicleId, e is WireFormatException ? "rejected" : "disk full; could not handle", item is MqttIncoming m ? $" on {m.Topic}" : "", e.Message);
                }
                idle.ReleaseIfIdle(); Progressed?.Invoke(); // after a plan that does not select it, or its round's last acknowledgement
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        finally
        {
            await Task.WhenAll(resender.ContinueWith(_ => { }, TaskScheduler.Default), training.DrainAsync()).ConfigureAwait(false); // never dispose the trainer under a running epoch
            _round?.Dispose(); identity.Ca?.Dispose(); // the round's keys and the CA first, then the stores and the device key
            _outbox.Dispose(); _ledger.Dispose(); _deviceKey.Dispose();
        }
    }

    private async Task HandleAsync(MqttIncoming message, CancellationToken cancellationToken)
    {
        var topics = _mqtt!.Topics;
        if (message.Topic == topics.RoundSlowDown) _uplink!.Pace(message.Payload); // the aggregator asks vehicles to slow down (empty: released)
        else if (message.Payload.Length == 0) return; // a cleared retained message
        else if (message.Topic == topics.RoundCurrent) await PlanAsync(RoundPlanCodec.Verify(message.Payload, _aggregatorKey!, topics.Fleet), message, cancellationToken).ConfigureAwait(false);
        else if (topics.TryParseModelTopic(message.Topic, _options.VehicleId, out long version)) _models!.Add(version, message.Payload); // retained, or sent on request
        else if (message.Topic == topics.Inbox(_options.VehicleId, "ack")) _uplink!.Acknowledge(message.Payload);
        else if (message.Topic == topics.Inbox(_options.VehicleId, PaceAdvice.InboxKind)) Pace!.Accept(message.Payload); // pace steering: when to check in next
        else if (message.Topic == topics.Inbox(_options.VehicleId, "assignment") // FedBuff: a version and slot to train on (its plaintext round starts with no effects), or a secure group's plan
            && await AgentAssignments.JoinAsync(message, _round is { IsFinished: false }, _aggregatorKey!, topics.Fleet, _profile!, _checkIn!, _random, time, logger, cancellationToken).ConfigureAwait(false) is { } task)
        {
            if (task.GroupPlan is { } group) await PlanAsync(task.Plan, group, cancellationToken).ConfigureAwait(false); // secure FedBuff: its group's plan, joined as any secure round
            else (_round, _plan, _planTag) = (task.Round!, task.Plan, task.PlanTag);
        }
        else if (message.Topic == topics.Inbox(_options.VehicleId, "secagg"))
        {
            if (!_inboxChunks!.TryAdd("secagg", "secagg", message.Payload, out var whole)) return;
            if (AgentUplink.ReadSecAgg(whole, _options.VehicleId, _options.MaxModelBytes, _round?.Round) is not { } secAgg) return; // a stale round
            await ApplyAsync(_round!.OnSecAgg(_uplink!.Heard(secAgg)), cancellationToken).ConfigureAwait(false);
            return;
        }
        // The model of the joined round, once both the plan and the model are here.
        if (_round is { State: AwaitingModel } waiting && _models!.TryTake(_plan!) is { } model) await ApplyAsync(waiting.OnModel(model), cancellationToken).ConfigureAwait(false);
    }

    private async Task PlanAsync(RoundPlan plan, MqttIncoming signed, CancellationToken cancellationToken)
    {
        if (plan.ModelSpec != _profile!.Pinned.ToString())
            throw new WireFormatException($"Round {plan.Round} asks for model {plan.ModelSpec}; this vehicle runs only {_profile.Pinned}.");
        var randomness = (long r) => new VehicleRoundRandomness(_random.Noise(r), _random.Rounding(r), Guid.NewGuid(), _random.SecAggHolders?.Invoke(r));
        switch (VehicleRound.Join(plan, signed.Payload, _profile, _outbox!.GetState(AgentCheckIn.LastRoundKey) ?? 0, _checkIn!.Ledger, randomness, time, PlanTiming.Remaining(plan, signed.ExpiresIn))) // skew-free: a duration from now
        {
            case NotSelected: _models!.NotSelected(plan); await _feed!.PlanAsync(plan.ModelVersion, false, cancellationToken).ConfigureAwait(false); break; // an idle vehicle keeps no model it will not train on (docs/scale.md)
            case AlreadyDecided:
                logger.LogDebug("agent {Vehicle}: round {Round} was joined or declined before; not joined again (round keys are never reused).", _options.VehicleId, plan.Round);
                break;
            case Declined declined:
                _outbox.SetState(AgentCheckIn.LastRoundKey, plan.Round);
                logger.LogWarning("agent {Vehicle}: declines round {Round}: {Reason}", _options.VehicleId, plan.Round, declined.Reason);
                Declined++; // after the log line: whoever watches the count finds the reason already written
                break;
            case Joined joined:
                // Recorded durably first: a restart from here on is a dropout, never a second attempt with new keys.
                _outbox.SetState(AgentCheckIn.LastRoundKey, plan.Round);
                _outbox.SetState(AgentCheckIn.SamplesAtLastRoundKey, _data.Rows.Length);
                _round?.Dispose();
                (_round, _plan, _planTag) = (joined.Round, plan, Envelope.TagOf(signed.Payload));
                await _feed!.PlanAsync(plan.ModelVersion, true, cancellationToken).ConfigureAwait(false);
                await ApplyAsync(joined.Effects, cancellationToken).ConfigureAwait(false);
                break;
        }
    }

    private async Task TrainedAsync(TrainingResult result, CancellationToken cancellationToken)
    {
        if (result.Delta is not null) RoundsTrained++;
        if (result.Round != _round) return; // the round was abandoned meanwhile
        if (result.Delta is null)
        {
            await ApplyAsync(_round.OnTrainingStopped(result.StopReason!), cancellationToken).ConfigureAwait(false);
            return;
        }
        logger.LogInformation("agent {Vehicle}: trained round {Round} on {Rows} samples (loss {Loss:F4}){Next}.", _options.VehicleId, _round.Round, result.Samples, result.Loss,
            _round.IsSecure ? "; secure aggregation in progress" : "; sending the update");
        double weight = (_plan!.Protection ?? new RoundProtection()).WeightFor(result.Samples);
        await ApplyAsync(_round.OnTrained(result.Delta, result.Loss, result.Samples, weight), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Executes what the round asked for, in order.</summary>
    private async Task ApplyAsync(IReadOnlyList<VehicleEffect> effects, CancellationToken cancellationToken)
    {
        var round = _round!;
        var plan = _plan!;
        if (link is not null) effects = await link.ShapeAsync(_options.VehicleId, plan, effects, cancellationToken).ConfigureAwait(false); // a simulated vehicle's behaviour
        foreach (var effect in effects)
        {
            switch (effect)
            {
                case TrainEffect train:
                    if (_data.HoldoutRows is { Length: > 0 })
                        LastEvaluation = await AgentTraining.EvaluateAsync(train.Model, round.Round, plan.Protection?.NoiseMode is not null || _options.EpsilonBudget is not null, _data, _options.EvaluationEpsilon, _checkIn!.Ledger, _mqtt!, _options.VehicleId, logger, cancellationToken).ConfigureAwait(false) ?? LastEvaluation;
                    var settings = new LocalTrainingSettings(plan.LocalEpochs, plan.Batch, plan.LearningRate, plan.Momentum, plan.ProximalMu);
                    _training!.Start(round, train.Model, settings, _data, () => _random.DataOrder(plan.Round), r => _loop!.Writer.WriteAsync(r, cancellationToken).AsTask(), cancellationToken);
                    break;
                case SendUpdateEffect update:
                    await _uplink!.EnqueueAsync(EnvelopeKind.Update, "update", update.Round, (ushort)plan.Epoch, _planTag, update.UpdateId, new PlainUpdate(update.TrainLoss, update.Samples, update.Body).Encode(), update.Expires, cancellationToken).ConfigureAwait(false);
                    RoundsSent++;
                    break;
                case SendSecAggEffect send:
                    await _uplink!.EnqueueAsync(EnvelopeKind.SecAgg, "secagg", send.Round, (ushort)plan.Epoch, _planTag, Guid.NewGuid(), SecAggCodec.Encode(send.Message), send.Expires, cancellationToken).ConfigureAwait(false);
                    if (send.Message is MaskedInputMessage) RoundsSent++;
                    break;
                case FinishedEffect { Final: Abandoned abandoned }:
                    logger.LogWarning("agent {Vehicle}: drops out of round {Round}: {Reason}", _options.VehicleId, round.Round, abandoned.Reason);
                    Declined++;
                    Finish(round);
                    break;
                case FinishedEffect:
                    if (round.IsSecure) logger.LogInformation("agent {Vehicle}: round {Round}: unmasking answered; secure aggregation done on this side.", _options.VehicleId, round.Round);
                    Finish(round);
                    break;
            }
        }
    }

    private void Finish(VehicleRound round)
    {
        if (_round != round) return;
        round.Dispose();
        (_round, _plan) = (null, null);
    }
}
