using System.Globalization;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Model;
using FleetLearn.Core.Rounds;
using FleetLearn.Core.SecureAggregation;
using FleetLearn.Storage;
using FleetLearn.Transport.Mqtt;
using Microsoft.Extensions.Logging;

namespace FleetLearn.Aggregator;

/// <summary>
/// Aggregator:Mode = fedbuff with secure aggregation: each buffer is a secure-aggregation group (docs/async.md, "Secure groups over
/// MQTT"). Check-ins join the forming group (<see cref="SecureGroupFormation{TVehicle}"/>, answered with a signed waiting
/// <see cref="Assignment"/>); a formed group is a <see cref="RoundCoordinator"/> secure round of its own (record, signed plan sent to
/// each member, SecAgg messages routed as the round pump does); its mean is applied with the group's staleness
/// (<see cref="SecureBufferStep"/>), stored and published. Several groups run at once. Groups still open at a restart are aborted
/// by the start-up's record check (<see cref="RoundCoordinator.SecureRestartReason"/>); their members check in again.
/// </summary>
internal sealed class SecureBufferedPump(AggregatorOptions options, AggregatorStatus status, TimeProvider time, ILogger logger, AggregatorRandomness random, AggregatorParts parts)
{
    private readonly ModelPublisher _publisher = new(parts.Mqtt, status, options.OnnxFolder, logger, time, options.ModelRetention, keep: options.MaxStaleness + 1);
    private readonly ChunkAssembler _uplink = new(options.MaxUpdateBytes, 256, 2, options.MaxUpdateBytes + options.MaxUpdateBytes / 16 + 65536);
    private readonly ClosedRounds _closed = new(keep: 64);
    private readonly Dictionary<long, Group> _groups = []; // open groups by round number
    private readonly int _k = options.Buffer ?? options.CohortSize;
    private SecureGroupFormation<string> _formation = null!;
    private IFederatedStrategy _strategy = null!;
    private RoundRules _rules = null!;
    private Checkpoint _model = null!;
    private byte[] _bytes = [];
    private long _nextRound, _applied, _stale, _withdrawn;

    private sealed record Group(long Id, RoundCoordinator Coordinator, RoundRecord Record, long Version);

    /// <summary>Runs groups from <paramref name="model"/> until <see cref="AggregatorOptions.Rounds"/> steps were applied (0: until stopped); returns the last model.</summary>
    public async Task<Checkpoint> RunAsync(Checkpoint model, IFederatedStrategy strategy, long firstRecord, CancellationToken cancellationToken)
    {
        (_model, _bytes, _strategy, _nextRound) = (model, model.ToBytes(), strategy, firstRecord);
        int size = CohortSelection.SelectionSize(_k, options.OverSelection);
        var protection = AggregatorProtection.Describe(options, _k, options.MaxWeight ?? options.WeightCap ?? 1);
        protection.CreatePipeline(model.Parameters.Length, size); // a setting SecAgg cannot run with (no clip norm) stops the start, not each group
        _rules = RoundOpening.Rules(options, protection) with { CohortSize = _k };
        // Over MQTT a group's plan names its cohort, so members can only be handed their model once the group has formed.
        _formation = new SecureGroupFormation<string>(new SecureGroupRules
        {
            GroupSize = size,
            MinimumMembers = Math.Max(3, options.MinParticipants),
            Concurrency = options.Concurrency ?? 2 * _k,
            FormationWindow = options.CohortWait > TimeSpan.Zero ? options.CohortWait : TimeSpan.FromMinutes(30),
            Version = GroupVersion.Formed,
        }, firstGroup: firstRecord);
        logger.LogInformation("aggregator: secure FedBuff from model {Version}: groups of {Size} (K = {K}), concurrency {Concurrency}, formation window {Window}.",
            model.Version, size, _k, _formation.Rules.Concurrency, _formation.Rules.FormationWindow);
        await _publisher.PublishAsync(_model, _bytes, cancellationToken).ConfigureAwait(false);
        try
        {
            await PumpAsync(size, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            foreach (var group in _groups.Values) group.Coordinator.Dispose(); // left open: recorded open, aborted by the next start
        }
        return _model;
    }

    /// <summary>Handles messages, formation windows and phase deadlines until <see cref="AggregatorOptions.Rounds"/> steps were applied (0: until stopped).</summary>
    private async Task PumpAsync(int size, CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested && (options.Rounds == 0 || _applied < options.Rounds))
        {
            status.Activity = $"secure FedBuff: version {_model.Version}, {_formation.Forming.Count}/{size} in the forming group, {_groups.Count} groups open, {_formation.Training} training";
            var now = time.GetUtcNow();
            var until = new[] { now + TimeSpan.FromMinutes(1), _formation.FormationDue ?? DateTimeOffset.MaxValue }.Concat(_groups.Values.Select(g => g.Coordinator.NextDeadline)).Min();
            if (await parts.Inbox.ReadUntilAsync(until, time, cancellationToken).ConfigureAwait(false) is { } message)
            {
                status.Received(message.Payload.Length);
                try
                {
                    await HandleAsync(message, cancellationToken).ConfigureAwait(false);
                }
                catch (WireFormatException e)
                {
                    status.Rejected(e.Reason);
                    logger.LogWarning("aggregator: rejected a message on {Topic} ({Reason}): {Why}", message.Topic, e.Reason, e.Message);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    status.Rejected(RejectReasons.Malformed); // nothing a vehicle sends stops the worker
                    logger.LogError(e, "aggregator: a message on {Topic} could not be handled; dropped.", message.Topic);
                }
            }
            if (_formation.Tick(_model.Version, time.GetUtcNow()) is { } formed) await OpenAsync(formed, cancellationToken).ConfigureAwait(false);
            foreach (var group in _groups.Values.ToList())
            {
                if (group.Coordinator.Phase is not Closed && time.GetUtcNow() >= group.Coordinator.NextDeadline)
                    await CarryOutAsync(group.Coordinator, group.Coordinator.Tick(), cancellationToken).ConfigureAwait(false);
                if (group.Coordinator.Phase is Closed) await CloseAsync(group, cancellationToken).ConfigureAwait(false);
            }
        }
    }

    private Task CarryOutAsync(RoundCoordinator coordinator, RoundStep step, CancellationToken cancellationToken) =>
        RoundEffects.CarryOutAsync(parts.Store, parts.Ledger, parts.Link, status, logger, coordinator, step, cancellationToken);

    private BufferedProgress Progress => new(_model.Version, _formation.Forming.Count, _formation.Rules.GroupSize, _formation.Training, _applied, _stale, 0, _withdrawn);

    private async Task HandleAsync(MqttIncoming message, CancellationToken cancellationToken)
    {
        var mqtt = parts.Mqtt;
        if (!mqtt.Topics.TryParseVehicleTopic(message.Topic, out var vehicle, out var channel, out var kind)) return;
        status.VehicleSeen(vehicle);
        if (channel == "checkin")
        {
            await CheckInAsync(vehicle, parts.Roster.CheckIn(vehicle, message.Payload), cancellationToken).ConfigureAwait(false);
            return;
        }
        if (channel == "up" && kind == "model") await _publisher.ServeAsync(vehicle, message.Payload, [vehicle], cancellationToken).ConfigureAwait(false);
        if (channel != "up" || kind is not ("update" or "secagg") || !_uplink.TryAdd(vehicle, message.Topic, message.Payload, out var whole)) return;
        var update = Envelope.DecodeInPlace(whole, options.MaxUpdateBytes);
        if (update.Vehicle != vehicle || update.Kind != (kind == "update" ? EnvelopeKind.Update : EnvelopeKind.SecAgg))
            throw new WireFormatException($"A message on {vehicle}'s {kind} topic names {update.Vehicle} / {update.Kind}.", RejectReasons.NotInCohort);
        var group = _groups.GetValueOrDefault(update.Round);
        // The round pump's admission: each group is a round, so its messages go to that group's coordinator.
        var (admission, step) = UpdateAdmission.Admit(_closed, parts.Epochs, status, group?.Coordinator, vehicle, update, out var decoded);
        if (step is not null) await CarryOutAsync(group!.Coordinator, step, cancellationToken).ConfigureAwait(false);
        if (admission.Status == AckStatus.Accepted && decoded is SecureUpdateMessage { Message: MaskedInputMessage })
        {
            _formation.StopTraining(vehicle); // its masked input is in: its training slot is free; it stays in its group to unmask
            status.Report(new(vehicle, BufferedEventKind.Update, admission, group!.Version, (ulong)group.Id, null, Progress));
        }
        if (admission.Status == AckStatus.Rejected)
        {
            status.Rejected(admission.Reason ?? RejectReasons.Malformed);
            status.VehicleRejected(vehicle, admission.Reason ?? RejectReasons.Malformed);
            logger.LogWarning("aggregator: rejected {Kind} from {Vehicle} for secure group round {Round}: {Reason}", kind, vehicle, update.Round, admission.Why);
        }
        else if (admission.Status == AckStatus.Duplicate) status.Duplicate();
        await parts.Link.AckAsync(update, admission, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>A check-in: with 0 samples a withdrawal, else the forming group's answer (busy, participation cap, or joined), signed.</summary>
    private async Task CheckInAsync(string vehicle, Envelope envelope, CancellationToken cancellationToken)
    {
        status.CheckedIn = parts.Roster.Count;
        if (Checkin.Decode(envelope.Payload.Span).Samples == 0)
        {
            bool left = _formation.Withdraw(vehicle);
            _withdrawn += left ? 1 : 0;
            status.Report(new(vehicle, BufferedEventKind.Withdrawn, left ? Admission.Accepted : Admission.Rejected(RejectReasons.NotInCohort, "was not waiting in the forming group"), _model.Version, 0, null, Progress));
            return;
        }
        var answer = Refusal(vehicle) is { } refused ? new GroupCheckIn<string>(refused, 0, null) : _formation.CheckIn(vehicle, _model.Version, time.GetUtcNow());
        var reason = answer.Admission.Status == AckStatus.Accepted
            ? string.Create(CultureInfo.InvariantCulture, $"joined secure group {answer.Group}; its plan follows when it forms")
            : $"{answer.Admission.Reason}: {answer.Admission.Why}";
        await SendAsync(vehicle, new Assignment(answer.Admission.Status, reason, (ulong)answer.Group, _k, []), options.BufferedLease, cancellationToken).ConfigureAwait(false);
        status.Report(new(vehicle, BufferedEventKind.Answered, answer.Admission, _model.Version, (ulong)answer.Group, null, Progress));
        if (answer.Formed is { } formed) await OpenAsync(formed, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The cap and the budget, read from the durable ledger (so they hold across restarts); null when the vehicle may join.</summary>
    private Admission? Refusal(string vehicle)
    {
        if (parts.Ledger is not { } ledger) return null;
        int used = ledger.Get(vehicle).Participations;
        if (options.MaxParticipations is { } cap && used >= cap)
            return Admission.Rejected(RejectReasons.ParticipationCap, string.Create(CultureInfo.InvariantCulture, $"{used} participations: the cap is {cap}"));
        var charge = RoundOpening.EligibilityCharge(options, _model.Parameters.Length, _formation.Rules.GroupSize);
        return charge is { } c && !ledger.CanParticipate(vehicle, c) ? Admission.Rejected(RejectReasons.ParticipationCap, "one more participation would exceed its privacy budget") : null;
    }

    /// <summary>Opens a formed group's secure round: stored with its signed plan before any member hears of it, then the plan goes to each member.</summary>
    private async Task OpenAsync(FormedGroup<string> formed, CancellationToken cancellationToken)
    {
        long round = Math.Max(_nextRound, parts.Epochs.State.HighestRound + 1);
        _nextRound = round + 1;
        string[] cohort = [.. formed.Members.Order(VehicleId.Order)];
        OpenedRound opened;
        try
        {
            opened = RoundOpening.Open(options, random, parts.Roster, parts.Mqtt.Topics.Fleet, round, parts.Epochs.State.Epoch, cohort, _model, _bytes, new GroupMeanStrategy(_strategy), parts.SigningKey, time);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            foreach (var member in cohort) _formation.Leave(member); // free to check in again: never held by a group that did not open
            logger.LogError(e, "aggregator: secure group {Group} could not open; its {Count} members may check in again.", formed.Id, cohort.Length);
            return;
        }
        var record = new RoundRecord(round, formed.Version, null, RoundStatus.Open, cohort.Length, 0, double.NaN, time.GetUtcNow(), null);
        DiskFullRetry.Run(() => parts.Store.SaveOpenRound(record, opened.SignedPlan, cohort), "the new secure group", logger, cancellationToken);
        status.Record(record, null);
        parts.Epochs.Announce(round, opened.SignedPlan);
        _groups[round] = new Group(formed.Id, opened.Coordinator, record, formed.Version);
        logger.LogInformation("aggregator: secure group {Group} formed as round {Round} on model {Version} with {Count} members.", formed.Id, round, formed.Version, cohort.Length);
        var assignment = new Assignment(AckStatus.Accepted, string.Create(CultureInfo.InvariantCulture, $"secure group {formed.Id} formed"), (ulong)formed.Id, _k, opened.SignedPlan);
        foreach (var member in cohort) await SendAsync(member, assignment, opened.Coordinator.Deadline - time.GetUtcNow(), cancellationToken).ConfigureAwait(false);
        status.Report(new("", BufferedEventKind.GroupFormed, Admission.Accepted, formed.Version, (ulong)formed.Id, null, Progress));
    }

    /// <summary>A group's round closed: its mean applied with its staleness, the step stored and published; its members may join again.</summary>
    private async Task CloseAsync(Group group, CancellationToken cancellationToken)
    {
        var coordinator = group.Coordinator;
        _groups.Remove(coordinator.Round);
        _closed.Add(coordinator);
        foreach (var member in coordinator.Cohort) if (_formation.IsHeld(member)) _formation.Leave(member);
        var outcome = coordinator.Outcome is RoundApplied mean
            ? SecureBufferStep.Apply(_rules, _strategy, _model.Parameters, mean, group.Version, _model.Version, options.MaxStaleness, time.GetUtcNow())
            : coordinator.Outcome!;
        coordinator.Dispose();
        if (coordinator.Outcome is RoundApplied && outcome is RoundAborted) _stale++;
        var stored = AggregatorRecords.Close(parts.Store, _publisher, status, logger, group.Record, _model, outcome, cancellationToken);
        bool applied = outcome is RoundApplied;
        if (applied)
        {
            _applied++;
            status.Staleness = new Dictionary<long, long>(status.Staleness) { [_model.Version - group.Version] = status.Staleness.GetValueOrDefault(_model.Version - group.Version) + outcome.Contributors.Count };
            (_model, _bytes) = (stored, stored.ToBytes());
            await _publisher.PublishAsync(_model, _bytes, cancellationToken).ConfigureAwait(false);
        }
        status.Report(new("", BufferedEventKind.GroupClosed, applied ? Admission.Accepted : Admission.Rejected(RejectReasons.Protocol, (outcome as RoundAborted)?.Reason ?? ""), group.Version, (ulong)group.Id, outcome, Progress));
    }

    private async Task SendAsync(string vehicle, Assignment assignment, TimeSpan expiry, CancellationToken cancellationToken)
    {
        var signed = assignment.Sign(parts.SigningKey);
        await parts.Mqtt.PublishReliablyAsync(parts.Mqtt.Topics.Inbox(vehicle, "assignment"), signed, expiry: expiry, cancellationToken: cancellationToken).ConfigureAwait(false);
        status.Sent(signed.Length);
    }
}
