namespace FleetLearn.Core.Rounds;

/// <summary>The labels under which rejected messages are counted (<c>fleetlearn_aggregator_rejected_total{reason=…}</c>).</summary>
public static class RejectReasons
{
    /// <summary>Shorter than its format says.</summary>
    public const string Truncated = "truncated";

    /// <summary>Another magic or format version.</summary>
    public const string Version = "version";

    /// <summary>For a round that is not open.</summary>
    public const string WrongRound = "wrong_round";

    /// <summary>For a round that has closed (a straggler's answer; harmless, acknowledged so the vehicle drops it).</summary>
    public const string Late = "late";

    /// <summary>NaN or ∞ in a value.</summary>
    public const string NonFinite = "non_finite";

    /// <summary>Over a size limit.</summary>
    public const string Oversized = "oversized";

    /// <summary>A signature or hash does not verify.</summary>
    public const string Signature = "signature";

    /// <summary>From a vehicle that is not in the round's cohort, or claims another vehicle.</summary>
    public const string NotInCohort = "not_in_cohort";

    /// <summary>Refused by the secure-aggregation state machine (late, repeated, bad signature on round keys, …).</summary>
    public const string Protocol = "protocol";

    /// <summary>Anything else that does not parse.</summary>
    public const string Malformed = "malformed";

    /// <summary>A plaintext update whose L2 norm exceeds the round's bound (a boosted or corrupt update).</summary>
    public const string NormExceeded = "norm_exceeded";

    /// <summary>Buffered rounds: an update trained on a model more than the maximum staleness behind (its work is wasted).</summary>
    public const string Stale = "stale";

    /// <summary>Buffered rounds: a check-in refused for now (all training slots taken, or the vehicle already holds one); come back later.</summary>
    public const string Busy = "busy";

    /// <summary>Buffered rounds: the vehicle has used its participations (the cap the privacy accountant relies on).</summary>
    public const string ParticipationCap = "participation_cap";

    /// <summary>The aggregator's inbox already holds the sender's share of bytes: the message was dropped before it was read (the sender resends).</summary>
    public const string InboxFull = "inbox_full";

    /// <summary>Produced under another plan for the same round number (another aggregator instance, or a restored database).</summary>
    public const string PlanMismatch = "plan_mismatch";

    /// <summary>Produced under another fleet epoch than the one the aggregator runs.</summary>
    public const string WrongEpoch = "wrong_epoch";

    /// <summary>Every label, for exposing zero counters.</summary>
    public static IReadOnlyList<string> All { get; } =
        [Truncated, Version, WrongRound, Late, NonFinite, Oversized, Signature, NotInCohort, Protocol, Malformed, NormExceeded, Stale, Busy, ParticipationCap, PlanMismatch, WrongEpoch];
}
