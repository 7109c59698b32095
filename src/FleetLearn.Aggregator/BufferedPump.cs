using System.Security.Cryptography;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Model;
using FleetLearn.Core.Random;
using FleetLearn.Core.Rounds;
using FleetLearn.Storage;
using FleetLearn.Transport.Mqtt;
using Microsoft.Extensions.Logging;

namespace FleetLearn.Aggregator;

/// <summary>The aggregator's connections and stores, as <see cref="AggregatorWorker"/> opened them, that the FedBuff pump reuses.</summary>
internal sealed record AggregatorParts(
    MqttConnection Mqtt, AggregatorInbox Inbox, LiteDbRoundStore Store, LiteDbPrivacyLedgerStore? Ledger, FleetRoster Roster, VehicleLink Link, FleetEpochs Epochs, ECDsa SigningKey);

/// <summary>
/// Aggregator:Mode = fedbuff: a message pump around <see cref="BufferedCoordinator"/> beside the round pump (docs/async.md,
/// "Over MQTT"). A check-in with samples calls <see cref="BufferedCoordinator.CheckIn"/> and is answered in the vehicle's inbox
/// (<see cref="Assignment"/>: the signed plan of the version to train on, its slot, K — or busy / participation_cap); a
/// check-in with 0 samples withdraws; an update is <see cref="BufferedCoordinator.Receive"/>d and acknowledged with its verdict;
/// a released step's charges go to the ledger before its model is stored and published (the last MaxStaleness + 1 versions
/// stay retained); leases end at <see cref="BufferedCoordinator.NextDeadline"/> (<see cref="BufferedCoordinator.Tick"/>).
/// </summary>
internal sealed class BufferedPump(AggregatorOptions options, AggregatorStatus status, TimeProvider time, ILogger logger, AggregatorRandomness random, AggregatorParts parts)
{
    private readonly ModelPublisher _publisher = new(parts.Mqtt, status, options.OnnxFolder, logger, time, options.ModelRetention, keep: options.MaxStaleness + 1);
    private readonly ChunkAssembler _uplink = new(options.MaxUpdateBytes, 256, 2, options.MaxUpdateBytes + options.MaxUpdateBytes / 16 + 65536);
    private readonly int _k = options.Buffer ?? options.CohortSize;
    private float _proximalMu;

    /// <summary>Runs steps from <paramref name="model"/> until <see cref="AggregatorOptions.Rounds"/> steps were released (0: until stopped); returns the last model.</summary>
    public async Task<Checkpoint> RunAsync(Checkpoint model, IFederatedStrategy strategy, long firstRecord, CancellationToken cancellationToken)
    {
        _proximalMu = strategy.ProximalMu;
        var protection = AggregatorProtection.Describe(options, _k, options.MaxWeight ?? options.WeightCap ?? 1);
        RoundProtection ProtectionOf(long version) => protection with { CodecSeed = DeterministicRandom.Derive(options.Seed, 0xC0DE, (ulong)version).NextUInt64() };
        int dimension = model.Parameters.Length;
        var rules = RoundOpening.Rules(options, protection) with { CohortSize = _k };
        long record = firstRecord;
        // The step in progress keeps its acknowledged updates in the journal under its record number: a restart folds them again.
        var coordinator = BufferedCoordinator.Resume(new BufferedSetup
        {
            Global = model.Parameters,
            Strategy = strategy,
            CodecFor = v => BufferedTask.CodecFor(ProtectionOf(v), dimension, _k, v),
            Rules = rules,
            MaxStaleness = options.MaxStaleness,
            Concurrency = options.Concurrency ?? 2 * _k,
            Lease = options.BufferedLease,
            MaxParticipations = options.MaxParticipations,
            Ledger = parts.Ledger, // durable: the cap and the budget count every participation it ever recorded, across restarts
            CentralNoiseFor = rules.Privacy is null ? null : v => random.CentralNoise(v),
            FirstVersion = model.Version,
        }, time, parts.Store.JournalOf(record), out var replayed);
        status.Buffered = coordinator.Progress;
        logger.LogInformation("aggregator: FedBuff from model {Version}: K = {K}, concurrency {Concurrency}, max staleness {MaxStaleness}; {Buffered} acknowledged updates back from the journal.",
            model.Version, _k, options.Concurrency ?? 2 * _k, options.MaxStaleness, coordinator.Progress.Buffered);
        int steps = 0;
        if (Record(replayed, record, cancellationToken) is { } resumed) // the crash came between the K-th update's journal and its model
        {
            model = Store(model, resumed, record++, cancellationToken);
            if (resumed is RoundApplied) steps++;
        }
        var bytes = model.ToBytes();
        await _publisher.PublishAsync(model, bytes, cancellationToken).ConfigureAwait(false);
        while (!cancellationToken.IsCancellationRequested && (options.Rounds == 0 || steps < options.Rounds))
        {
            status.Activity = $"FedBuff: version {coordinator.Version}, {coordinator.Progress.Buffered}/{_k} buffered, {coordinator.Training} training";
            var now = time.GetUtcNow();
            var until = coordinator.NextDeadline < now + TimeSpan.FromMinutes(1) ? coordinator.NextDeadline : now + TimeSpan.FromMinutes(1);
            if (await parts.Inbox.ReadUntilAsync(until, time, cancellationToken).ConfigureAwait(false) is not { } message)
            {
                foreach (var gone in coordinator.Tick()) logger.LogInformation("aggregator: {Vehicle}'s FedBuff lease ended without an update; its slot is free.", gone);
                await _publisher.PublishAsync(model, bytes, cancellationToken).ConfigureAwait(false); // again once half its retention passed
                continue;
            }
            status.Received(message.Payload.Length);
            RoundOutcome? closed;
            try
            {
                closed = await HandleAsync(coordinator, message, model, bytes, v => ProtectionOf(v), record, cancellationToken).ConfigureAwait(false);
            }
            catch (WireFormatException e)
            {
                status.Rejected(e.Reason);
                logger.LogWarning("aggregator: rejected a message on {Topic} ({Reason}): {Why}", message.Topic, e.Reason, e.Message);
                continue;
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                // Nothing a vehicle sends stops the worker: a message that breaks a handler is dropped, counted and logged.
                status.Rejected(RejectReasons.Malformed);
                logger.LogError(e, "aggregator: a message on {Topic} could not be handled; dropped.", message.Topic);
                continue;
            }
            if (closed is null) continue;
            // The step's charges are in the ledger (HandleAsync); now its model and record, then the model goes out.
            var stored = Store(model, closed, record++, cancellationToken);
            if (closed is not RoundApplied) continue;
            (model, bytes) = (stored, stored.ToBytes());
            await _publisher.PublishAsync(model, bytes, cancellationToken).ConfigureAwait(false);
            steps++;
        }
        return model;
    }

    /// <summary>Stores a released step's model and record (which also compacts its journal); returns the model to go on from.</summary>
    private Checkpoint Store(Checkpoint model, RoundOutcome closed, long record, CancellationToken cancellationToken) =>
        AggregatorRecords.Close(parts.Store, _publisher, status, logger, new RoundRecord(record, model.Version, null, RoundStatus.Open, _k, 0, double.NaN, time.GetUtcNow(), null), model, closed, cancellationToken);

    /// <summary>
    /// Makes a step's effects durable in order: an accepted update's journal entry (under the step's record), a release's
    /// charges (before its model is used or stored); returns the release, if any.
    /// </summary>
    private RoundOutcome? Record(IEnumerable<RoundEffect> effects, long record, CancellationToken cancellationToken)
    {
        RoundOutcome? closed = null;
        foreach (var effect in effects)
        {
            if (effect is JournalEffect journal) // durable before the ack: "accepted" means committed
                DiskFullRetry.Run(() => parts.Store.Journal(record, journal.Update), "the journal of an accepted update", logger, cancellationToken);
            if (effect is ChargeEffect charge && parts.Ledger is { } ledger)
                foreach (var v in charge.Vehicles) DiskFullRetry.Run(() => status.VehicleEpsilon(v, ledger.Record(v, charge.Round, charge.Charge).Epsilon), "a ledger charge", logger, cancellationToken);
            if (effect is CloseEffect close) closed = close.Outcome;
        }
        return closed;
    }

    /// <summary>Handles one vehicle message; returns the step an update released (its charges already recorded), else null.</summary>
    private async Task<RoundOutcome?> HandleAsync(BufferedCoordinator coordinator, MqttIncoming message, Checkpoint model, byte[] modelBytes, Func<long, RoundProtection> protectionOf,
        long record, CancellationToken cancellationToken)
    {
        var mqtt = parts.Mqtt;
        if (!mqtt.Topics.TryParseVehicleTopic(message.Topic, out var vehicle, out var channel, out var kind)) return null;
        status.VehicleSeen(vehicle);
        if (channel == "checkin")
        {
            var envelope = parts.Roster.CheckIn(vehicle, message.Payload);
            status.CheckedIn = parts.Roster.Count;
            if (Checkin.Decode(envelope.Payload.Span).Samples == 0)
            {
                bool freed = coordinator.Withdraw(vehicle);
                status.Report(new(vehicle, BufferedEventKind.Withdrawn, freed ? Admission.Accepted : Admission.Rejected(RejectReasons.NotInCohort, "held no check-in"), coordinator.Version, 0, null, coordinator.Progress));
                return null;
            }
            var answer = coordinator.CheckIn(vehicle);
            var assignment = answer.Admission.Status == AckStatus.Accepted
                ? new Assignment(AckStatus.Accepted, "", answer.Slot, _k, RoundPlanCodec.Sign(PlanFor(vehicle, answer, model, modelBytes, protectionOf(answer.Version)), parts.SigningKey))
                : new Assignment(answer.Admission.Status, $"{answer.Admission.Reason}: {answer.Admission.Why}", 0, _k, []);
            var signed = assignment.Sign(parts.SigningKey);
            await mqtt.PublishReliablyAsync(mqtt.Topics.Inbox(vehicle, "assignment"), signed, expiry: options.BufferedLease, cancellationToken: cancellationToken).ConfigureAwait(false);
            status.Sent(signed.Length);
            status.Report(new(vehicle, BufferedEventKind.Answered, answer.Admission, answer.Version, answer.Slot, null, coordinator.Progress));
            return null;
        }
        if (channel == "up" && kind == "model") await _publisher.ServeAsync(vehicle, message.Payload, [vehicle], cancellationToken).ConfigureAwait(false);
        if (channel != "up" || kind != "update" || !_uplink.TryAdd(vehicle, message.Topic, message.Payload, out var whole)) return null;
        var update = Envelope.DecodeInPlace(whole, options.MaxUpdateBytes);
        if (update.Vehicle != vehicle || update.Kind != EnvelopeKind.Update)
            throw new WireFormatException($"A message on {vehicle}'s update topic names {update.Vehicle} / {update.Kind}.", RejectReasons.NotInCohort);
        var (admission, step) = Admit(coordinator, vehicle, update);
        var closed = Record(step?.Effects ?? [], record, cancellationToken);
        switch (admission.Status)
        {
            case AckStatus.Accepted:
                status.Accepted();
                status.VehicleParticipated(vehicle, coordinator.Version);
                break;
            case AckStatus.Duplicate: status.Duplicate(); break;
            default:
                status.Rejected(admission.Reason ?? RejectReasons.Malformed);
                status.VehicleRejected(vehicle, admission.Reason ?? RejectReasons.Malformed);
                logger.LogWarning("aggregator: rejected the FedBuff update of {Vehicle}: {Reason}", vehicle, admission.Why);
                break;
        }
        status.Staleness = coordinator.StalenessCounts.ToDictionary(p => p.Key, p => p.Value);
        status.Report(new(vehicle, BufferedEventKind.Update, admission, coordinator.Version, 0, closed, coordinator.Progress) { Charges = [.. step?.Effects.OfType<ChargeEffect>() ?? []] });
        await parts.Link.AckAsync(update, admission, cancellationToken).ConfigureAwait(false);
        return closed;
    }

    private (Admission Admission, RoundStep? Step) Admit(BufferedCoordinator coordinator, string vehicle, Envelope update)
    {
        if (parts.Epochs.Check(update) is { } refused) return (refused, null);
        VehicleMessage message;
        try
        {
            message = UplinkDecoder.Decode(update);
        }
        catch (WireFormatException e)
        {
            return (Admission.Rejected(e.Reason, e.Message), null);
        }
        if (message is not PlainUpdateMessage plain) return (Admission.Rejected(RejectReasons.Protocol, "a FedBuff update is plaintext"), null);
        var step = coordinator.Receive(vehicle, update.UpdateId, plain);
        return (step.Admission, step);
    }

    /// <summary>The plan of one assignment: the version to train on, the vehicle its only member, the lease end its deadline.</summary>
    private RoundPlan PlanFor(string vehicle, BufferedCheckIn answer, Checkpoint model, byte[] modelBytes, RoundProtection protection)
    {
        if (answer.Version != model.Version) throw new InvalidOperationException($"An assignment of version {answer.Version} while the model is {model.Version}.");
        return new RoundPlan
        {
            Fleet = parts.Mqtt.Topics.Fleet,
            Round = answer.Version + 1, // the step its update feeds at the earliest
            Epoch = parts.Epochs.State.Epoch,
            ModelVersion = answer.Version,
            ModelSpec = model.Spec.ToString(),
            ModelSha256 = RoundPlanCodec.HashModel(modelBytes),
            ModelBytes = modelBytes.Length,
            Cohort = [vehicle],
            LocalEpochs = options.LocalEpochs,
            Batch = options.Batch,
            LearningRate = options.LearningRate,
            ProximalMu = _proximalMu,
            Protection = protection,
            DeadlineUnixMs = answer.LeaseUntil.ToUnixTimeMilliseconds(),
            IssuedUnixMs = time.GetUtcNow().ToUnixTimeMilliseconds(),
        };
    }
}
