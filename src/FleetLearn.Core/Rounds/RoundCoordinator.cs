using System.Globalization;
using FleetLearn.Core.Compression;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Numerics;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Core.Rounds;

/// <summary>
/// The aggregator's side of one round, as a pure state machine: <see cref="Receive"/> admits each vehicle message (one table:
/// accepted, duplicate, rejected with a reason) and <see cref="Tick"/> closes phases and the round at their deadlines; both
/// return effects (route, charge, close) for the runner to carry out. No I/O, time injected. The aggregator worker and the
/// in-process simulator both drive this type, so "a vehicle drops mid-round", "too few survive" or "ε is charged" each
/// happen here and nowhere else (docs/architecture.md).
/// </summary>
public sealed class RoundCoordinator : IDisposable
{
    private readonly RoundSetup _setup;
    private readonly TimeProvider _time;
    private readonly Dictionary<string, int> _index;
    private readonly IUpdateAggregator? _aggregator;
    private readonly SecAggServer? _server;
    private readonly Dictionary<string, Guid> _contributors = new(StringComparer.Ordinal);
    private readonly HashSet<Guid> _seen = [];
    private readonly HashSet<string> _answered = new(StringComparer.Ordinal);
    private readonly Dictionary<SecAggMessageType, int> _received = [];
    private readonly Dictionary<string, (SecAggMessage Message, SecAggServerPhase Phase)> _lastRouted = new(StringComparer.Ordinal);
    private readonly int _wanted;
    private double _lossSum;
    private int _lossCount;
    private int _unclipped;

    /// <summary>Opens round <see cref="RoundSetup.Round"/>; a secure round starts its <see cref="SecAggServer"/> now.</summary>
    public RoundCoordinator(RoundSetup setup, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(setup);
        ArgumentNullException.ThrowIfNull(time);
        if (setup.Rules.Privacy == NoiseMode.Central && setup.CentralNoise is null && setup.Shard is null)
            throw new ArgumentException("Central DP needs a noise source for the round.", nameof(setup));
        _setup = setup;
        _time = time;
        _index = new Dictionary<string, int>(setup.Cohort.Count, StringComparer.Ordinal);
        for (int i = 0; i < setup.Cohort.Count; i++) _index.Add(setup.Cohort[i], i);
        if (setup.Secure is { } secure)
        {
            _server = new SecAggServer(secure.Parameters, secure.Registry, time, new SecAggServerOptions { MaxDegreeOfParallelism = secure.MaxDegreeOfParallelism, SigningKey = secure.SigningKey });
            _wanted = setup.Cohort.Count;
            Phase = new CollectingSecure(_server.Phase);
        }
        else
        {
            _aggregator = setup.Strategy.CreateAggregator(setup.Global.Length);
            _wanted = Math.Min(setup.Rules.CohortSize, setup.Cohort.Count);
            Phase = new CollectingPlain(0, _wanted);
        }
    }

    /// <summary>Why a secure round open at a restart is aborted rather than resumed (the same sentence in every runner).</summary>
    public const string SecureRestartReason =
        "the aggregator restarted mid-round; a secure round is not resumed (the vehicles' round secrets and the server's share state lived in memory only), so it is aborted before any unmasking and no ε is charged";

    /// <summary>
    /// Reopens a plaintext round after a restart by replaying the updates it had folded, in the order they were folded (the
    /// same sum, bit for bit). Their ids are seen again, so a vehicle's resend of one is a duplicate. <paramref name="effects"/>
    /// holds what the replay leaves for the runner: nothing, or the charge and close when the journal already completes the
    /// round (the crash came between the last fold and the stored close; charges are idempotent per round). A secure round
    /// cannot be resumed: the caller aborts it with <see cref="SecureRestartReason"/>.
    /// </summary>
    public static RoundCoordinator Resume(RoundSetup setup, TimeProvider time, IEnumerable<JournaledUpdate> journal, out IReadOnlyList<RoundEffect> effects)
    {
        ArgumentNullException.ThrowIfNull(setup);
        ArgumentNullException.ThrowIfNull(journal);
        if (setup.Secure is not null) throw new ArgumentException($"Round {setup.Round} is secure: {SecureRestartReason}.", nameof(setup));
        var coordinator = new RoundCoordinator(setup, time);
        var replayed = new List<RoundEffect>();
        foreach (var update in journal)
        {
            if (coordinator.Phase is Closed) break;
            var step = coordinator.Receive(update.Vehicle, update.UpdateId, new PlainUpdateMessage(update.Envelope, update.TrainLoss));
            if (step.Admission.Status == AckStatus.Rejected)
            {
                coordinator.Dispose();
                throw new InvalidDataException($"The journal of round {setup.Round} holds {update.Vehicle}'s update {update.UpdateId}, which this round refuses ({step.Admission.Why}): it was written for another plan.");
            }
            replayed.AddRange(step.Effects.Where(e => e is not JournalEffect));
        }
        effects = replayed;
        return coordinator;
    }

    /// <summary>The round number.</summary>
    public long Round => _setup.Round;

    /// <summary>The cohort, in cohort-index order.</summary>
    public IReadOnlyList<string> Cohort => _setup.Cohort;

    /// <summary>True when <paramref name="vehicle"/> was selected for this round (over-selected vehicles included).</summary>
    public bool InCohort(string vehicle) => _index.ContainsKey(vehicle);

    /// <summary>Where the round is.</summary>
    public RoundPhase Phase { get; private set; }

    /// <summary>The outcome once closed.</summary>
    public RoundOutcome? Outcome => (Phase as Closed)?.Outcome;

    /// <summary>Update ids seen in this round (a resend after the round closed is a duplicate, not late).</summary>
    public IReadOnlySet<Guid> SeenUpdateIds => _seen;

    /// <summary>Survivors of a completed secure round by cohort index (their unneeded unmask answers are harmless).</summary>
    public IReadOnlyDictionary<string, int> CompletedSurvivors =>
        _server?.Result is { } r ? r.Survivors.ToDictionary(i => _setup.Cohort[i], i => i, StringComparer.Ordinal) : new Dictionary<string, int>();

    /// <summary>The round's deadline (the plan's, on the aggregator's clock).</summary>
    public DateTimeOffset Deadline => _setup.Deadline;

    /// <summary>When <see cref="Tick"/> must next be called: the end of the current secure phase, or the round's deadline.</summary>
    public DateTimeOffset NextDeadline => _server is { } s && s.PhaseDeadline < _setup.Deadline && Phase is not Closed ? s.PhaseDeadline : _setup.Deadline;

    /// <summary>A one-line account of the round's progress (for status pages and logs).</summary>
    public string Progress => Phase switch
    {
        CollectingPlain p => string.Create(CultureInfo.InvariantCulture, $"round {Round}: {p.Folded}/{p.Wanted} updates folded"),
        CollectingSecure s => string.Create(CultureInfo.InvariantCulture,
            $"round {Round}: secure aggregation phase {s.Phase}; received {string.Join(", ", _received.Select(p => $"{p.Key} {p.Value}"))} of {Cohort.Count} vehicles"),
        Closed { Outcome: RoundApplied a } => string.Create(CultureInfo.InvariantCulture, $"round {Round}: applied with {a.Contributors.Count} contributors"),
        Closed { Outcome: RoundAborted a } => string.Create(CultureInfo.InvariantCulture, $"round {Round}: aborted ({a.Reason})"),
        Closed { Outcome: RoundHandedOn h } => string.Create(CultureInfo.InvariantCulture, $"round {Round}: shard {h.Partial.Shard} handed on {h.Contributors.Count} contributors"),
        _ => "",
    };

    /// <summary>The current phase's name, the vehicles that have answered in it, and how many are expected (for progress bars).</summary>
    public (string Phase, int Answered, int Expected) PhaseProgress => Phase switch
    {
        CollectingPlain p => ("Collecting", p.Folded, p.Wanted),
        CollectingSecure s => (s.Phase.ToString(), _received.GetValueOrDefault(s.Phase switch
        {
            SecAggServerPhase.AdvertiseKeys => SecAggMessageType.AdvertiseKeys,
            SecAggServerPhase.ShareKeys => SecAggMessageType.ShareKeys,
            SecAggServerPhase.MaskedInputCollection => SecAggMessageType.MaskedInput,
            SecAggServerPhase.ConsistencyCheck => SecAggMessageType.ConsistencySignature,
            _ => SecAggMessageType.UnmaskResponse,
        }), Cohort.Count),
        Closed c => (c.Outcome switch { RoundApplied => "Applied", RoundHandedOn => "HandedOn", _ => "Aborted" }, c.Outcome.Contributors.Count, Cohort.Count),
        _ => ("", 0, 0),
    };

    /// <summary>Admits one message of <paramref name="vehicle"/> (identified by its transport) for this round.</summary>
    public RoundStep Receive(string vehicle, Guid updateId, VehicleMessage message)
    {
        ArgumentNullException.ThrowIfNull(vehicle);
        ArgumentNullException.ThrowIfNull(message);
        if (Phase is Closed)
            return Verdict(Admission.Rejected(RejectReasons.Late, $"round {Round} has closed"));
        if (!_index.TryGetValue(vehicle, out int index))
            return Verdict(Admission.Rejected(RejectReasons.NotInCohort, $"not in the cohort of round {Round}"));
        if (!_seen.Add(updateId))
            return new RoundStep(Admission.Duplicate(), Replay(vehicle, message));
        return message switch
        {
            PlainUpdateMessage plain => ReceivePlain(vehicle, index, updateId, plain),
            SecureUpdateMessage secure => ReceiveSecure(vehicle, index, secure.Message),
            _ => Verdict(Admission.Rejected(RejectReasons.Malformed, $"unknown message {message.GetType().Name}")),
        };
    }

    /// <summary>Closes a secure phase whose deadline has passed, and the round once complete or past its deadline.</summary>
    public RoundStep Tick()
    {
        if (Phase is Closed) return RoundStep.Empty;
        var effects = new List<RoundEffect>();
        if (_server is { } server && _time.GetUtcNow() >= server.PhaseDeadline && server.Phase is not (SecAggServerPhase.Completed or SecAggServerPhase.Aborted))
        {
            Route(server.Tick().Outbox, effects);
            Phase = new CollectingSecure(server.Phase);
        }
        if (_server is { Phase: SecAggServerPhase.Completed or SecAggServerPhase.Aborted } || _time.GetUtcNow() >= _setup.Deadline)
            Close(effects);
        return new RoundStep(Admission.Accepted, effects);
    }

    /// <summary>
    /// Closes the round as aborted for a reason outside it (the fleet moved to a newer epoch): nothing is released, nobody is
    /// charged. A closed round is left as it is.
    /// </summary>
    public RoundStep Abort(string reason)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(reason);
        if (Phase is Closed) return RoundStep.Empty;
        var outcome = new RoundAborted
        {
            Round = Round, Contributors = [.. _contributors.Keys], Silent = [.. _setup.Cohort.Where(v => !_answered.Contains(v))],
            TrainLoss = _lossCount == 0 ? double.NaN : _lossSum / _lossCount, UnclippedCount = _unclipped, ClosedAt = _time.GetUtcNow(), Reason = reason,
        };
        Phase = new Closed(outcome);
        return new RoundStep(Admission.Accepted, [new CloseEffect(outcome)]);
    }

    private static RoundStep Verdict(Admission admission) => new(admission, []);

    private RoundStep ReceivePlain(string vehicle, int index, Guid updateId, PlainUpdateMessage message)
    {
        if (_aggregator is null) return Verdict(Admission.Rejected(RejectReasons.Protocol, "this round uses secure aggregation: plaintext updates are refused"));
        if (_contributors.ContainsKey(vehicle)) return Verdict(Admission.Duplicate("one update per vehicle per round"));
        // A shard's vehicles name their position in the whole cohort (the plan's), not in the shard's part.
        ulong claimed = (ulong)(_setup.Shard?.CohortPositions is { } positions ? positions[index] : index);
        if (RoundPolicy.AdmitPlain(_setup.Codec, _setup.Rules, message.Body, claimed, out var decoded) is { } refused) return Verdict(refused);
        double weight = decoded.Header.Weight;
        RoundPolicy.Fold(_aggregator, decoded, weight);
        _contributors[vehicle] = updateId;
        _answered.Add(vehicle);
        if (decoded.Header.Unclipped) _unclipped++;
        if (double.IsFinite(message.TrainLoss))
        {
            _lossSum += message.TrainLoss;
            _lossCount++;
        }
        Phase = new CollectingPlain(_contributors.Count, _wanted);
        // Journalled first: the runner makes the update durable before it charges, closes or acknowledges anything.
        var effects = new List<RoundEffect> { new JournalEffect(Round, new JournaledUpdate(vehicle, updateId, message.Body, message.TrainLoss)) };
        if (_contributors.Count >= _wanted) Close(effects);
        return new RoundStep(Admission.Accepted, effects);
    }

    private RoundStep ReceiveSecure(string vehicle, int index, SecAggMessage message)
    {
        if (_server is not { } server) return Verdict(Admission.Rejected(RejectReasons.Protocol, "this round does not use secure aggregation"));
        if (message.VehicleId != index)
            return Verdict(Admission.Rejected(RejectReasons.NotInCohort, string.Create(CultureInfo.InvariantCulture, $"the message names cohort index {message.VehicleId}; this vehicle is {index}")));
        var step = server.Receive(message);
        // The server closes an expired phase before it looks at the message: what that produced goes out even when the
        // message itself is refused (late for the phase it was meant for).
        var effects = new List<RoundEffect>();
        Route(step.Outbox, effects);
        Phase = new CollectingSecure(server.Phase);
        if (server.Phase is SecAggServerPhase.Completed or SecAggServerPhase.Aborted) Close(effects);
        if (step.Rejection is { } why) return new RoundStep(Admission.Rejected(RejectReasons.Protocol, why), effects);
        _answered.Add(vehicle);
        _received[message.Type] = _received.GetValueOrDefault(message.Type) + 1;
        return new RoundStep(Admission.Accepted, effects);
    }

    private void Route(IReadOnlyList<SecAggMessage> outbox, List<RoundEffect> effects)
    {
        foreach (var m in outbox)
        {
            effects.Add(new RouteEffect(_setup.Cohort[m.VehicleId], m));
            _lastRouted[_setup.Cohort[m.VehicleId]] = (m, _server!.Phase); // the phase it opens, for Replay
        }
    }

    /// <summary>
    /// Downlink replay (issue 14 item 3). A vehicle that resends a secure message the server already has is still waiting
    /// for the server's answer: the key directory, its forwarded shares or the unmask request went missing, for example
    /// queued in a broker that restarted without them. Its resend is the signal, and the server sends its last message to
    /// that vehicle again, byte for byte. It does so only while the server is still in the phase that message opened: an
    /// older message would ask for work the server no longer takes. Replaying reveals nothing new (the same bytes went to the
    /// same vehicle), and the vehicle ignores a message for a phase it has passed, so a copy that arrives twice is harmless.
    /// </summary>
    private List<RoundEffect> Replay(string vehicle, VehicleMessage message)
    {
        if (message is not SecureUpdateMessage || _server is null || !_lastRouted.TryGetValue(vehicle, out var last) || last.Phase != _server.Phase) return [];
        return [new RouteEffect(vehicle, last.Message)];
    }

    /// <summary>
    /// Closes the round: its sum as a <see cref="PartialSum"/>, then either the release (<see cref="RoundRelease.Close"/>, the
    /// one close policy: decode, secure completion, noise shares and the minimum, charge before use, central noise, strategy,
    /// divergence) or, for a shard, the partial sum handed to the combiner, which releases the combined sum the same way.
    /// </summary>
    private void Close(List<RoundEffect> effects)
    {
        var now = _time.GetUtcNow();
        var partial = Partial();
        if (_setup.Shard is not null)
        {
            Phase = new Closed(new RoundHandedOn
            {
                Round = Round, Contributors = partial.Contributors, Silent = partial.Silent, ClosedAt = now, Partial = partial,
                TrainLoss = partial.LossCount == 0 ? double.NaN : partial.LossSum / partial.LossCount, UnclippedCount = partial.UnclippedCount,
            });
            effects.Add(new PartialSumEffect(partial));
            return;
        }
        Phase = new Closed(RoundRelease.Close(_setup, partial, partial.Silent, now, effects));
    }

    /// <summary>What this round aggregated: the plaintext mean and weight, the secure ring sum of the survivors, or why there is none.</summary>
    private PartialSum Partial()
    {
        int shard = _setup.Shard?.Index ?? 0;
        if (_server is null)
        {
            float[]? mean = null;
            if (_aggregator!.Count > 0)
            {
                mean = new float[_setup.Global.Length];
                _aggregator.Complete(mean);
            }
            return new PlainPartialSum
            {
                Round = Round, Shard = shard, Contributors = [.. _contributors.Keys], Silent = [.. _setup.Cohort.Where(v => !_contributors.ContainsKey(v))],
                UnclippedCount = _unclipped, LossSum = _lossSum, LossCount = _lossCount, Mean = mean, Weight = _aggregator.TotalWeight,
            };
        }
        if (_server.Phase != SecAggServerPhase.Completed || _server.Result is not { } result)
            return new FailedPartialSum
            {
                Round = Round, Shard = shard, Contributors = [], Silent = [.. _setup.Cohort.Where(v => !_answered.Contains(v))],
                UnclippedCount = _unclipped, LossSum = _lossSum, LossCount = _lossCount,
                Reason = $"secure aggregation stopped in phase {_server.Phase}: {_server.AbortReason ?? "deadline passed"}",
            };
        var survivors = new HashSet<int>(result.Survivors);
        return new SecurePartialSum
        {
            Round = Round, Shard = shard, Contributors = [.. result.Survivors.Select(i => _setup.Cohort[i])],
            Silent = [.. Enumerable.Range(0, _setup.Cohort.Count).Where(i => !survivors.Contains(i)).Select(i => _setup.Cohort[i])],
            UnclippedCount = _unclipped, LossSum = _lossSum, LossCount = _lossCount, Sum = result.Sum,
        };
    }

    /// <summary>Releases the secure-aggregation state and the key registry.</summary>
    public void Dispose()
    {
        _server?.Dispose();
        (_setup.Secure?.Registry as IDisposable)?.Dispose();
    }
}
