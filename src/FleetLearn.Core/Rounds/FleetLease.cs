namespace FleetLearn.Core.Rounds;

/// <summary>What an aggregator instance says on the fleet's lease topic: a probe (to find the retained claim) or its claim.</summary>
/// <param name="Kind">"probe" or "claim".</param>
/// <param name="Instance">The instance id (kept in its database, so a restart of the same instance is recognised).</param>
/// <param name="Holder">Host and process, for the refusal message.</param>
/// <param name="AcquiredUnixMs">When the claim was first made (its rank: the earlier claim wins).</param>
/// <param name="ExpiresUnixMs">Until when the claim holds without renewal.</param>
/// <param name="Epoch">The fleet epoch the holder runs.</param>
public sealed record LeaseClaim(string Kind, string Instance, string Holder, long AcquiredUnixMs, long ExpiresUnixMs, long Epoch)
{
    /// <summary>A probe's kind.</summary>
    public const string Probe = "probe";

    /// <summary>A claim's kind.</summary>
    public const string Claim = "claim";
}

/// <summary>
/// The single-writer rules of a fleet (issue 15 item 5), pure: an instance may start only when no other instance holds an
/// unexpired claim; when two claims meet anyway (two starts within one broker round trip: MQTT has no compare-and-set), the
/// earlier acquisition wins, ties broken by instance id, so that every instance draws the same conclusion.
/// </summary>
public static class FleetLeaseRules
{
    /// <summary>The claim that forbids <paramref name="instance"/> to start now, or null.</summary>
    public static LeaseClaim? Blocking(LeaseClaim? retained, string instance, DateTimeOffset now) =>
        retained is { Kind: LeaseClaim.Claim } c && c.Instance != instance && c.ExpiresUnixMs > now.ToUnixTimeMilliseconds() ? c : null;

    /// <summary>True when claim <paramref name="other"/> outranks <paramref name="mine"/>: the holder of <paramref name="mine"/> must stop.</summary>
    public static bool Outranks(LeaseClaim other, LeaseClaim mine)
    {
        ArgumentNullException.ThrowIfNull(other);
        ArgumentNullException.ThrowIfNull(mine);
        return other.Kind == LeaseClaim.Claim && other.Instance != mine.Instance
            && (other.AcquiredUnixMs < mine.AcquiredUnixMs || other.AcquiredUnixMs == mine.AcquiredUnixMs && string.CompareOrdinal(other.Instance, mine.Instance) < 0);
    }
}
