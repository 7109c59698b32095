using System.Security.Cryptography;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Rounds;
using FleetLearn.Core.SecureAggregation;
using FleetLearn.Storage;
using FleetLearn.Transport.Mqtt;
using Microsoft.Extensions.Logging;

namespace FleetLearn.Aggregator;

/// <summary>
/// Aggregator shard i (Aggregator:ShardIndex): for each signed plan of the coordinator that gives it a part, a
/// <see cref="RoundCoordinator"/> with a <see cref="ShardRole"/> over that part; it admits and acks its vehicles' uplinks,
/// routes their SecAgg messages, and publishes its partial sum to the coordinator on <c>shards/{i}/partial</c>.
/// </summary>
/// <remarks>
/// It subscribes to every vehicle's <c>up/update</c> and <c>up/secagg</c> before any plan, and leaves alone (no ack) what
/// comes from vehicles outside its part: a per-round filter would be subscribed only after the plan reached the vehicles
/// too, and the first keys would race it. It keeps no round state on disk: a shard that dies loses its part of the round,
/// and the coordinator's next round reassigns its vehicles (docs/scale.md).
/// </remarks>
public sealed class ShardWorker(AggregatorOptions options, MqttTransportOptions mqttOptions, AggregatorStatus status, TimeProvider time, ILogger logger)
{
    private readonly int _index = options.ShardIndex ?? throw new ArgumentException("Aggregator:ShardIndex is not set.", nameof(options));
    private readonly ClosedRounds _closed = new();
    private readonly ChunkAssembler _uplink = new(options.MaxUpdateBytes, Math.Max(64, 4 * options.CohortSize), 2, options.MaxUpdateBytes + options.MaxUpdateBytes / 16 + 65536);
    private MqttConnection _mqtt = null!;
    private VehicleLink _link = null!;
    private FleetEpochs _epochs = null!;
    private LiteDbRoundStore _store = null!;
    private RoundCoordinator? _round;
    private HashSet<string> _part = [];
    private HashSet<string> _previous = []; // the part of the round before: its late answers are still this shard's
    private long _previousRound;
    private int _modulusBits;

    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>
    /// Completes once the shard is connected and subscribed to the plans and to every vehicle's uplinks: what a vehicle sends
    /// from then on reaches it. An update sent before that is lost to this shard until the vehicle resends it.
    /// </summary>
    public Task Ready => _ready.Task;

    /// <summary>Fault injection for the simulator's shard-death runs (<c>simulate --shard-kill</c>): called with the round just before its partial sum is published.</summary>
    public Action<long>? BeforeHandOn { get; init; }

    /// <summary>Runs until <paramref name="cancellationToken"/> stops it.</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        var strategy = StrategyCatalog.Parse(options.Strategy, options.ServerLearningRate);
        using var coordinatorKey = SigningKeys.LoadPublic(options.CoordinatorKeyPath);
        var deviceCa = options.DeviceCaFile is { } ca ? DeviceCertificateAuthority.FromPem(File.ReadAllText(ca), time) : null;
        using var databaseLock = DatabaseLock.Acquire(options.DatabasePath, $"aggregator shard {_index}");
        using var store = _store = LiteDbRoundStore.Open(options.DatabasePath); // only the fleet epoch: a shard's rounds live in memory
        _epochs = new FleetEpochs(store, logger, 0);
        await using var mqtt = _mqtt = new MqttConnection(mqttOptions, time, logger);
        var inbox = new AggregatorInbox(options.InboxBytes, options.InboxBytesPerVehicle, mqtt.Topics, status, logger);
        mqtt.MessageReceived += m => inbox.AcceptAsync(m, cancellationToken);
        _link = new VehicleLink(mqtt, status, options, _epochs);
        foreach (var filter in new[] { mqtt.Topics.RoundCurrent, mqtt.Topics.Prefix + "vehicles/+/up/update", mqtt.Topics.Prefix + "vehicles/+/up/secagg" })
            await mqtt.SubscribeAsync(filter, cancellationToken).ConfigureAwait(false);
        mqtt.Start(cancellationToken);
        await mqtt.WaitUntilConnectedAsync(cancellationToken).ConfigureAwait(false);
        _ready.TrySetResult();
        logger.LogInformation("aggregator shard {Shard}: waiting for the coordinator's plans on {Topic}.", _index, mqtt.Topics.RoundCurrent);
        status.Running = true;
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                var until = _round is { Phase: not Closed } open ? open.NextDeadline : time.GetUtcNow() + TimeSpan.FromSeconds(1);
                var message = await inbox.ReadUntilAsync(until, time, cancellationToken).ConfigureAwait(false);
                if (message is not null) await HandleSafelyAsync(message, coordinatorKey, strategy, deviceCa, cancellationToken).ConfigureAwait(false);
                if (_round is { Phase: not Closed } due && time.GetUtcNow() >= due.NextDeadline) await CarryOutAsync(due, due.Tick(), cancellationToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
        finally
        {
            _round?.Dispose();
            deviceCa?.Dispose();
            status.Running = false;
        }
    }

    private async Task HandleSafelyAsync(MqttIncoming message, ECDsa coordinatorKey, IFederatedStrategy strategy, DeviceCertificateAuthority? deviceCa, CancellationToken cancellationToken)
    {
        try
        {
            if (message.Topic == _mqtt.Topics.RoundCurrent) await OpenAsync(message.Payload, coordinatorKey, strategy, deviceCa, cancellationToken).ConfigureAwait(false);
            else await HandleUplinkAsync(message, cancellationToken).ConfigureAwait(false);
        }
        catch (WireFormatException e)
        {
            status.Rejected(e.Reason);
            logger.LogWarning("aggregator shard {Shard}: rejected a message on {Topic} ({Reason}): {Why}", _index, message.Topic, e.Reason, e.Message);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            status.Rejected(RejectReasons.Malformed);
            logger.LogError(e, "aggregator shard {Shard}: a message on {Topic} could not be handled; dropped.", _index, message.Topic);
        }
    }

    /// <summary>A new plan of the coordinator: the previous round is over for this shard; a part in this one opens its coordinator.</summary>
    private Task OpenAsync(ReadOnlyMemory<byte> signed, ECDsa coordinatorKey, IFederatedStrategy strategy, DeviceCertificateAuthority? deviceCa, CancellationToken cancellationToken)
    {
        if (signed.IsEmpty) return Task.CompletedTask; // the coordinator cleared its retained plan
        var bytes = signed.ToArray();
        var plan = RoundPlanCodec.Verify(bytes, coordinatorKey, _mqtt.Topics.Fleet);
        if (_round is not null && plan.Round <= _round.Round) return Task.CompletedTask;
        (_previous, _previousRound) = (_part, _round?.Round ?? 0);
        if (_round is not null)
        {
            if (!_closed.IsClosed(_round.Round)) _closed.Add(_round);
            _round.Dispose();
            _round = null;
        }
        _epochs = FleetEpochs.ForShard(_store, logger, plan); // the coordinator's epoch; its checks apply to the vehicles' envelopes
        _link = new VehicleLink(_mqtt, status, options, _epochs);
        _epochs.Announce(plan.Round, bytes);
        if (PlanShards.Find(plan, _index) is not { } entry)
        {
            _part = [];
            logger.LogInformation("aggregator shard {Shard}: round {Round} gives this shard no part.", _index, plan.Round);
            return Task.CompletedTask;
        }
        _round = RoundOpening.OpenShard(options, plan, bytes, _index, strategy, deviceCa, time);
        _part = [.. _round.Cohort];
        _modulusBits = plan.Protection?.CreatePipeline(ModelDimension(plan), plan.Cohort.Count) is { IsSecure: true } pipeline ? pipeline.ModulusBits : 1;
        status.CurrentRound = plan.Round;
        logger.LogInformation("aggregator shard {Shard}: round {Round}, a part of {Count} of the cohort's {Cohort} vehicles.", _index, plan.Round, entry.Members.Count, plan.Cohort.Count);
        return Task.CompletedTask;
    }

    private static int ModelDimension(RoundPlan plan) => Core.Model.ModelSpec.Parse(plan.ModelSpec).ParameterCount;

    private async Task HandleUplinkAsync(MqttIncoming message, CancellationToken cancellationToken)
    {
        if (!_mqtt.Topics.TryParseVehicleTopic(message.Topic, out var vehicle, out var channel, out var kind) || channel != "up" || kind is not ("update" or "secagg")) return;
        if (!_part.Contains(vehicle) && !_previous.Contains(vehicle)) return; // another shard's vehicle: that shard answers it
        if (!_uplink.TryAdd(vehicle, message.Topic, message.Payload, out var whole)) return;
        var update = Envelope.DecodeInPlace(whole, options.MaxUpdateBytes);
        // The vehicle may be this shard's in one round and another's in the next: the round it answers decides.
        if (!(update.Round == _round?.Round ? _part.Contains(vehicle) : update.Round == _previousRound && _previous.Contains(vehicle))) return;
        if (update.Vehicle != vehicle || update.Kind != (kind == "update" ? EnvelopeKind.Update : EnvelopeKind.SecAgg))
            throw new WireFormatException($"A message on {vehicle}'s {kind} topic names {update.Vehicle} / {update.Kind}.", RejectReasons.NotInCohort);
        var (admission, step) = UpdateAdmission.Admit(_closed, _epochs, status, _round is { Phase: not Closed } ? _round : null, vehicle, update);
        if (step is { } effects) await CarryOutAsync(_round!, effects, cancellationToken).ConfigureAwait(false);
        if (admission.Status == AckStatus.Rejected)
            logger.LogWarning("aggregator shard {Shard}: rejected {Kind} from {Vehicle} for round {Round}: {Reason}", _index, kind, vehicle, update.Round, admission.Why);
        await _link.AckAsync(update, admission, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Routes SecAgg messages to the part's vehicles, and hands the partial sum on when the part closes.</summary>
    private async Task CarryOutAsync(RoundCoordinator round, RoundStep step, CancellationToken cancellationToken)
    {
        var routes = step.Effects.OfType<RouteEffect>().ToList();
        if (routes.Count > 0) await _link.RouteAsync(round.Round, routes, cancellationToken).ConfigureAwait(false);
        status.Activity = $"shard {_index}: {round.Progress}";
        var (phase, answered, expected) = round.PhaseProgress;
        status.ReportPhase(round.Round, phase, answered, expected);
        if (round.Phase is Closed && !_closed.IsClosed(round.Round)) _closed.Add(round); // late answers are now the closed round's (duplicate or late)
        foreach (var handOn in step.Effects.OfType<PartialSumEffect>())
        {
            BeforeHandOn?.Invoke(round.Round);
            var bytes = PartialSumCodec.Encode(handOn.Partial, _modulusBits);
            var expiry = TimeSpan.FromMinutes(10);
            foreach (var chunk in ChunkCodec.Split(bytes, _mqtt.Options.MaxPacketSize))
                await _mqtt.PublishReliablyAsync(_mqtt.Topics.ShardPartial(_index), chunk, expiry: expiry, cancellationToken: cancellationToken).ConfigureAwait(false);
            status.Sent(bytes.Length);
            logger.LogInformation("aggregator shard {Shard}: round {Round} handed on ({Kind}, {Count} contributors, {Bytes} bytes).",
                _index, round.Round, handOn.Partial.GetType().Name, handOn.Partial.Contributors.Count, bytes.Length);
        }
    }
}
