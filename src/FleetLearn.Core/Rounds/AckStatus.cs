namespace FleetLearn.Core.Rounds;

/// <summary>The aggregator's verdict on an update.</summary>
public enum AckStatus : byte
{
    /// <summary>Folded into the round.</summary>
    Accepted = 0,

    /// <summary>Already folded earlier (a resend): nothing changed.</summary>
    Duplicate = 1,

    /// <summary>Not usable (late, wrong round, not in the cohort, malformed): the vehicle drops it from its outbox.</summary>
    Rejected = 2,
}
