using System.Globalization;

namespace FleetLearn.Core.Rounds;

/// <summary>
/// The fleet epoch, pure (issue 14 item 2): the aggregator's database says which rounds it opened; vehicles say which round
/// they last joined (check-ins) and which epoch they run (envelopes). Evidence of a round or epoch beyond the database's
/// means the database is older than the fleet (restored from a backup): a new epoch starts, numbered on past every round
/// the fleet saw, so that round numbers never repeat and vehicles never mistake a new round for one they already joined.
/// </summary>
public sealed class FleetEpoch(long epoch, long highestRound)
{
    /// <summary>The epoch the aggregator runs.</summary>
    public long Epoch { get; private set; } = epoch;

    /// <summary>The highest round number this aggregator opened or learned the fleet has seen.</summary>
    public long HighestRound { get; private set; } = highestRound;

    /// <summary>The number of the next round to open.</summary>
    public long NextRound => HighestRound + 1;

    /// <summary>Why the open round must be aborted (a rollback was found while it ran), until <see cref="TakeRollback"/>.</summary>
    public string? PendingRollback { get; private set; }

    /// <summary>Records that round <paramref name="round"/> was opened (or resumed).</summary>
    public void Opened(long round) => HighestRound = Math.Max(HighestRound, round);

    /// <summary>
    /// Weighs what <paramref name="source"/> reports: round <paramref name="round"/> joined, under epoch <paramref name="epoch"/>
    /// (0: not stated). Returns the sentence to log when it proves the database older than the fleet (the epoch is then raised), else null.
    /// </summary>
    public string? Observe(long round, long epoch, string source)
    {
        if (round <= HighestRound && epoch <= Epoch) return null;
        long next = Math.Max(Epoch, epoch) + 1;
        string why = string.Create(CultureInfo.InvariantCulture,
            $"restored older database detected: {source} reports round {round} (epoch {epoch}), but this database knows rounds up to {HighestRound} in epoch {Epoch}; epoch {next} starts, its first round after {Math.Max(round, HighestRound)}");
        Epoch = next;
        HighestRound = Math.Max(HighestRound, round);
        PendingRollback = why;
        return why;
    }

    /// <summary>The number of a round about to open: at least <paramref name="proposed"/> and past every round seen (this settles a pending rollback).</summary>
    public long NumberNewRound(long proposed)
    {
        PendingRollback = null;
        return Math.Max(proposed, NextRound);
    }

    /// <summary>Returns and clears the pending rollback reason.</summary>
    public string? TakeRollback()
    {
        var why = PendingRollback;
        PendingRollback = null;
        return why;
    }
}
