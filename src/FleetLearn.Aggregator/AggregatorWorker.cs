using System.Security.Cryptography;
using FleetLearn.Core.Compression;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Model;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Rounds;
using FleetLearn.Core.SecureAggregation;
using FleetLearn.Storage;
using FleetLearn.Transport.Mqtt;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace FleetLearn.Aggregator;

/// <summary>
/// The cloud worker: a message pump around <see cref="RoundCoordinator"/>, which decides everything about a round; the
/// worker selects the cohort, publishes model and plan, carries out the coordinator's effects and acks every message.
/// </summary>
public sealed class AggregatorWorker(
    IOptions<AggregatorOptions> aggregatorOptions,
    IOptions<MqttTransportOptions> mqttOptions,
    AggregatorStatus status,
    TimeProvider time,
    ILogger<AggregatorWorker> logger,
    IHostApplicationLifetime? lifetime = null,
    AggregatorRandomness? randomness = null,
    CohortGate? cohortGate = null) : BackgroundService
{
    private readonly AggregatorOptions _options = aggregatorOptions.Value;
    private readonly AggregatorRandomness _random = randomness ?? AggregatorRandomness.Secure;
    private readonly UplinkGate _gate = new(new ClosedRounds());
    private readonly PaceSignal _slowDown = new(TimeProvider.System); // queueing is measured on the real clock: the simulation's aggregator clock skips idle waits
    private readonly ClockSkewMonitor _clocks = new(status, time, logger, aggregatorOptions.Value.ClockSkewTolerance);
    private ChunkAssembler _uplink = null!;
    private MqttConnection _mqtt = null!;
    private AggregatorInbox _inbox = null!;
    private LiteDbRoundStore _store = null!;
    private LiteDbPrivacyLedgerStore? _ledger;
    private FleetRoster _roster = null!;
    private ModelPublisher _publisher = null!;
    private VehicleLink _link = null!;
    private FleetEpochs _epochs = null!;
    private PaceAdvisor? _pace; // Aggregator:PaceSteering
    private (RoundRecord Record, RoundPlan Plan)? _resume;
    private ShardCoordination? _shards; // Aggregator:Shards > 1: this aggregator coordinates shard processes

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (_options.ShardIndex is not null) { await new ShardWorker(_options, mqttOptions.Value, status, time, logger).RunAsync(stoppingToken).ConfigureAwait(false); return; }
        var spec = ModelSpec.Parse(_options.Model);
        var strategy = StrategyCatalog.Parse(_options.Strategy, _options.ServerLearningRate);
        using var databaseLock = DatabaseLock.Acquire(_options.DatabasePath, "aggregator");
        using var store = _store = LiteDbRoundStore.Open(_options.DatabasePath);
        using var signingKey = SigningKeyGuard.Load(_options, store, logger);
        using var ledger = _ledger = _options.PrivacyMode is null ? null : LiteDbPrivacyLedgerStore.Open(_options.PrivacyLedgerPath, new PrivacyLedgerOptions(_options.EpsilonBudget ?? double.MaxValue, _options.Delta));
        status.MaxVehicleEpsilon = ledger?.Vehicles().Select(v => v.Epsilon).DefaultIfEmpty(0).Max() ?? 0;
        _roster = new FleetRoster(store, ledger, _options.EpsilonBudget, _options.DeviceCaFile is { } ca ? DeviceCertificateAuthority.FromPem(File.ReadAllText(ca), time) : null);
        var model = AggregatorRecords.LoadModel(store, spec, _options, logger);
        RoundPlan? plan = null;
        var (last, open) = AggregatorRecords.RestoreRounds(store, status, _gate.Closed, time, logger,
            r => (plan = RoundResumption.Check(store, r, signingKey, mqttOptions.Value.Fleet, model, out var why)) is null ? why : null);
        _resume = open is null ? null : (open, plan!);
        long round = open?.Round ?? last + 1;
        _epochs = new FleetEpochs(store, logger, open?.Round ?? last);
        _uplink = new ChunkAssembler(_options.MaxUpdateBytes, Math.Max(64, 4 * _options.CohortSize), 2, _options.MaxUpdateBytes + _options.MaxUpdateBytes / 16 + 65536) { Admit = _gate.Admits };
        await using var mqtt = _mqtt = new MqttConnection(mqttOptions.Value, time, logger);
        status.Inbox = _inbox = new AggregatorInbox(_options.InboxBytes, _options.InboxBytesPerVehicle, mqtt.Topics, status, logger); // bounded by bytes (issue 14)
        _publisher = new ModelPublisher(mqtt, status, _options.OnnxFolder, logger, time, _options.ModelRetention);
        _link = new VehicleLink(mqtt, status, _options, _epochs);
        _pace = _options.PaceSteering && !_options.IsFedBuff ? new PaceAdvisor(_options, mqtt, status, signingKey, time, logger) : null;
        _shards = _options.Shards > 1 ? new ShardCoordination(_options, status, new(mqtt, store, ledger, _roster, _publisher, _epochs, _random), time, logger) : null;
        await using var lease = new FleetLeaseHolder(mqtt, store, _options, _epochs, time, logger, lifetime);
        mqtt.MessageReceived += m => m.Topic == lease.Topic ? lease.ObserveAsync(m) : _inbox.AcceptAsync(m, stoppingToken);
        await _link.StartAsync(lease, stoppingToken).ConfigureAwait(false);
        logger.LogInformation("aggregator: model {Spec} version {Version}, strategy {Strategy}, codec {Codec}, secure aggregation {Secure}, privacy {Privacy}; starting at round {Round}.",
            spec, model.Version, strategy.Name, _options.Codec, _options.SecureAggregation, _options.Privacy, round);
        (status.ModelVersion, status.Running) = (model.Version, true);
        try
        {
            AggregatorParts Parts() => new(mqtt, _inbox, store, ledger, _roster, _link, _epochs, signingKey);
            if (_options.IsFedBuff && _options.SecureMode != SecureAggregationMode.Off) // each buffer a secure group (docs/async.md, "Secure groups over MQTT")
                await new SecureBufferedPump(_options, status, time, logger, _random, Parts()).RunAsync(model, strategy, round, stoppingToken).ConfigureAwait(false);
            else if (_options.IsFedBuff) // Aggregator:Mode = fedbuff: the buffered pump instead of rounds (docs/async.md, "Over MQTT")
                await new BufferedPump(_options, status, time, logger, _random, Parts()).RunAsync(model, strategy, round, stoppingToken).ConfigureAwait(false);
            else for (int done = 0; !stoppingToken.IsCancellationRequested && (_options.Rounds == 0 || done < _options.Rounds); done++, round = _epochs.State.NextRound)
                model = await RunRoundAsync(round, model, strategy, signingKey, stoppingToken).ConfigureAwait(false);
            // Answer what is still in flight for the last round (late unmask answers, resends), so that every vehicle's
            // outbox empties; a long-running aggregator does the same while it runs its next round.
            var drainUntil = time.GetUtcNow() + _options.DrainTime;
            while (!_options.IsFedBuff && time.GetUtcNow() < drainUntil && !stoppingToken.IsCancellationRequested)
                await ProcessNextAsync(null, drainUntil, stoppingToken).ConfigureAwait(false);
            logger.LogInformation("aggregator: finished the {Rounds} rounds of this start (Aggregator:Rounds); {Next}.", _options.Rounds, _options.StopWhenDone ? "stopping (Aggregator:StopWhenDone)" : "no more rounds; running until stopped (Aggregator:StopWhenDone=true ends the process)");
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

    private async Task<Checkpoint> RunRoundAsync(long round, Checkpoint model, IFederatedStrategy strategy, ECDsa key, CancellationToken cancellationToken)
    {
        if (_shards is not null && await SelectAsync(round, model, cancellationToken).ConfigureAwait(false) is var (number, cohort)) // sharded: the shards run the round
            return await _shards.RunAsync(number, cohort, model, strategy, key, (until, c) => ProcessNextAsync(null, until, c), cancellationToken).ConfigureAwait(false);
        var modelBytes = model.ToBytes(); // 1. the round: resumed from the store, or a new cohort
        var (opened, record, replayed) = _resume is { } resume && resume.Record.Round == round
            ? RoundResumption.Reopen(_store, _options, _random, _roster, resume.Record, resume.Plan, model, strategy, key, time, logger)
            : await OpenAsync(round, model, modelBytes, strategy, key, cancellationToken).ConfigureAwait(false);
        using var coordinator = opened.Coordinator;
        _epochs.Announce(status.CurrentRound = coordinator.Round, opened.SignedPlan);
        // 2. Model (retained, chunked, once per version), then the signed plan (stored before it was announced; it expires at its deadline).
        await _publisher.PublishAsync(model, modelBytes, cancellationToken).ConfigureAwait(false);
        await _mqtt.PublishReliablyAsync(_mqtt.Topics.RoundCurrent, opened.SignedPlan, retain: true, expiry: coordinator.Deadline - time.GetUtcNow(), cancellationToken: cancellationToken).ConfigureAwait(false);
        status.Sent(opened.SignedPlan.Length);
        status.Activity = $"round {coordinator.Round}: plan published to a cohort of {coordinator.Cohort.Count}";
        await CarryOutAsync(coordinator, new RoundStep(Admission.Accepted, replayed), cancellationToken).ConfigureAwait(false);
        // 3. Collect until the coordinator closes the round (complete, or at its deadline).
        while (coordinator.Phase is not Closed)
        {
            await ProcessNextAsync(coordinator, coordinator.NextDeadline, cancellationToken).ConfigureAwait(false);
            if (coordinator.Phase is not Closed && (time.GetUtcNow() >= coordinator.NextDeadline || _epochs.State.PendingRollback is not null))
                await CarryOutAsync(coordinator, _epochs.State.TakeRollback() is { } why ? coordinator.Abort(why) : coordinator.Tick(), cancellationToken).ConfigureAwait(false);
        }
        _gate.Closed.Add(coordinator);
        _roster.Forget(coordinator.Outcome!.Silent);
        status.CheckedIn = _roster.Count;
        return AggregatorRecords.Close(_store, _publisher, status, logger, record, model, coordinator.Outcome, cancellationToken);
    }

    /// <summary>1. Cohort (<see cref="SelectAsync"/>): opens the round and stores it with its plan.</summary>
    private async Task<(OpenedRound, RoundRecord, IReadOnlyList<RoundEffect>)> OpenAsync(long round, Checkpoint model, byte[] modelBytes, IFederatedStrategy strategy, ECDsa key, CancellationToken cancellationToken)
    {
        (round, var cohort) = await SelectAsync(round, model, cancellationToken).ConfigureAwait(false);
        var opened = RoundOpening.Open(_options, _random, _roster, _mqtt.Topics.Fleet, round, _epochs.State.Epoch, cohort, model, modelBytes, strategy, key, time);
        var record = new RoundRecord(round, model.Version, null, RoundStatus.Open, cohort.Length, 0, double.NaN, time.GetUtcNow(), null);
        DiskFullRetry.Run(() => _store.SaveOpenRound(record, opened.SignedPlan, cohort), "the new round", logger, cancellationToken);
        status.Record(record, null);
        logger.LogInformation("aggregator: round {Round} open, model {Version}, cohort of {Count}{Secure}.", round, model.Version, cohort.Length,
            _options.SecureMode != SecureAggregationMode.Off ? $", {(opened.Protection.Neighbors is { } k ? $"SecAgg+ k={k}" : "SecAgg")} m={opened.ModulusBits}" : "");
        return (opened, record, []);
    }

    /// <summary>Waits for enough eligible check-ins (or the <see cref="CohortGate"/>; or CohortWait with at least MinParticipants) and selects the round's number and cohort.</summary>
    private async Task<(long Round, string[] Cohort)> SelectAsync(long round, Checkpoint model, CancellationToken cancellationToken)
    {
        bool secure = _options.SecureMode != SecureAggregationMode.Off;
        int selectionSize = CohortSelection.SelectionSize(_options.CohortSize, _options.OverSelection);
        var waitUntil = time.GetUtcNow() + _options.CohortWait;
        int minimum = Math.Max(_options.MinParticipants, secure ? 3 : 1);
        string[] candidates;
        for (var charge = RoundOpening.EligibilityCharge(_options, model.Parameters.Length, selectionSize); ;) // what the round will record
        {
            candidates = _roster.Eligible(charge);
            status.Activity = $"round {round}: waiting for check-ins ({candidates.Length}/{selectionSize} eligible vehicles)";
            if ((cohortGate?.Invoke(round, candidates) ?? candidates.Length >= selectionSize) || candidates.Length >= minimum && time.GetUtcNow() >= waitUntil) break;
            await ProcessNextAsync(null, waitUntil > time.GetUtcNow() ? waitUntil : time.GetUtcNow() + TimeSpan.FromSeconds(1), cancellationToken).ConfigureAwait(false);
        }
        round = _epochs.State.NumberNewRound(round); // past every round the fleet saw (a rollback found in the check-ins)
        return (round, CohortSelection.Select(candidates, selectionSize, _options.Seed, round));
    }

    /// <summary>Carries out a coordinator step's effects in order (<see cref="RoundEffects"/>).</summary>
    private Task CarryOutAsync(RoundCoordinator coordinator, RoundStep step, CancellationToken cancellationToken) =>
        RoundEffects.CarryOutAsync(_store, _ledger, _link, status, logger, coordinator, step, cancellationToken);

    private async Task ProcessNextAsync(RoundCoordinator? coordinator, DateTimeOffset until, CancellationToken cancellationToken)
    {
        _gate.Open = coordinator;
        if (await _inbox.ReadUntilAsync(until, time, cancellationToken).ConfigureAwait(false) is not { } message) return;
        await _slowDown.AfterReadAsync(_inbox.LastWait, _mqtt, logger, cancellationToken).ConfigureAwait(false); // saturated: vehicles hold their resends
        status.Received(message.Payload.Length);
        status.ReportBroker(_mqtt.IsConnected);
        try
        {
            await HandleAsync(coordinator, message, cancellationToken).ConfigureAwait(false);
        }
        catch (WireFormatException e)
        {
            status.Rejected(e.Reason);
            logger.LogWarning("aggregator: rejected a message on {Topic} ({Reason}): {Why}", message.Topic, e.Reason, e.Message);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // Nothing a vehicle sends stops the worker: a message that breaks a handler is dropped, counted and logged.
            status.Rejected(RejectReasons.Malformed);
            logger.LogError(e, "aggregator: a message on {Topic} could not be handled; dropped.", message.Topic);
        }
    }

    private async Task HandleAsync(RoundCoordinator? coordinator, MqttIncoming message, CancellationToken cancellationToken)
    {
        if (_shards?.Accept(message) == true) return; // a shard's partial sum
        if (!_mqtt.Topics.TryParseVehicleTopic(message.Topic, out var vehicle, out var channel, out var kind)) return;
        status.VehicleSeen(vehicle);
        if (channel == "checkin")
        {
            var checkin = _roster.CheckIn(vehicle, message.Payload);
            _clocks.Observe(vehicle, message); // reported only: deadlines travel as durations
            status.CheckedIn = _roster.Count;
            _epochs.Observe(checkin.Round, checkin.Epoch, $"{vehicle}'s check-in");
            if (_pace is not null && _roster.Find(vehicle) is { } accepted) await _pace.CheckedInAsync(vehicle, accepted, message, cancellationToken).ConfigureAwait(false);
            return;
        }
        if (channel == "up" && kind == "eval") status.RecordEvaluation(vehicle, message.Payload);
        if (channel == "up" && kind == "model") await _publisher.ServeAsync(vehicle, message.Payload, coordinator?.Cohort ?? _shards?.Cohort, cancellationToken).ConfigureAwait(false); // it lacks the round's model
        if (channel != "up" || kind is not ("update" or "secagg")) return;
        if (!_uplink.TryAdd(vehicle, message.Topic, message.Payload, out var whole)) return; // the payload's own array: kept, not copied
        var update = Envelope.DecodeInPlace(whole, _options.MaxUpdateBytes);
        var expectedKind = kind == "update" ? EnvelopeKind.Update : EnvelopeKind.SecAgg;
        if (update.Vehicle != vehicle || update.Kind != expectedKind)
            throw new WireFormatException($"A message on {vehicle}'s {kind} topic names {update.Vehicle} / {update.Kind}.", RejectReasons.NotInCohort);
        var (admission, effects) = UpdateAdmission.Admit(_gate.Closed, _epochs, status, coordinator, vehicle, update);
        if (effects is not null) await CarryOutAsync(coordinator!, effects, cancellationToken).ConfigureAwait(false);
        switch (admission.Status)
        {
            case AckStatus.Duplicate: status.Duplicate(); break;
            case AckStatus.Rejected:
                status.Rejected(admission.Reason ?? RejectReasons.Malformed);
                status.VehicleRejected(vehicle, admission.Reason ?? RejectReasons.Malformed);
                logger.LogWarning("aggregator: rejected {Kind} from {Vehicle} for round {Round}: {Reason}", kind, vehicle, update.Round, admission.Why);
                break;
        }
        await _link.AckAsync(update, admission, cancellationToken).ConfigureAwait(false);
    }
}
