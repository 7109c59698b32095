using FleetLearn.Core.Rounds;

namespace FleetLearn.Aggregator;

/// <summary>What the FedBuff pump did with one vehicle message.</summary>
public enum BufferedEventKind
{
    /// <summary>A check-in was answered: an assignment (accepted) or a refusal (busy, participation cap).</summary>
    Answered,

    /// <summary>A withdrawing check-in (0 samples): accepted when it freed a slot, rejected when the vehicle held none.</summary>
    Withdrawn,

    /// <summary>An update got its verdict; <see cref="BufferedEvent.Step"/> is the step it released, if any.</summary>
    Update,

    /// <summary>Secure FedBuff: a group formed and its secure round opened (<see cref="BufferedEvent.Slot"/> is the group, <see cref="BufferedEvent.Version"/> its version).</summary>
    GroupFormed,

    /// <summary>Secure FedBuff: a group's secure round closed; <see cref="BufferedEvent.Step"/> is the step its mean gave (applied, stale or aborted).</summary>
    GroupClosed,
}

/// <summary>One thing the FedBuff pump did, with the coordinator's progress after it.</summary>
/// <param name="Vehicle">The vehicle whose message it was.</param>
/// <param name="Kind">What the message was.</param>
/// <param name="Admission">The verdict.</param>
/// <param name="Version">For an assignment, the version handed out; else the current version.</param>
/// <param name="Slot">For an assignment, the slot handed out.</param>
/// <param name="Step">The step an update released (applied or aborted), else null.</param>
/// <param name="Progress">The coordinator's counters after the message.</param>
public sealed record BufferedEvent(string Vehicle, BufferedEventKind Kind, Admission Admission, long Version, ulong Slot, RoundOutcome? Step, BufferedProgress Progress)
{
    /// <summary>The charges of the step an update released (recorded in the aggregator's ledger before the event).</summary>
    public IReadOnlyList<ChargeEffect> Charges { get; init; } = [];
}

/// <summary>The FedBuff pump's part of the status.</summary>
public sealed partial class AggregatorStatus
{
    /// <summary>The FedBuff coordinator's counters (null in synchronous mode).</summary>
    public BufferedProgress? Buffered { get; internal set; }

    /// <summary>Accepted updates by staleness τ, as of the last step (FedBuff mode).</summary>
    public IReadOnlyDictionary<long, long> Staleness { get; internal set; } = new Dictionary<long, long>();

    /// <summary>Raised on the aggregator's loop after the FedBuff pump handled a check-in, a withdrawal or an update (simulations follow the run with it).</summary>
    public event Action<BufferedEvent>? BufferedHandled;

    internal void Report(BufferedEvent e)
    {
        Buffered = e.Progress;
        BufferedHandled?.Invoke(e);
    }
}
