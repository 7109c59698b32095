namespace FleetLearn.Core.Rounds;

/// <summary>One aggregator shard's part of a sharded round, as the signed plan tells it to every vehicle (docs/scale.md).</summary>
public sealed record PlanShard
{
    /// <summary>The shard's number (0 to <see cref="PlanShards.MaxShards"/> − 1): its uplinks go to that shard process.</summary>
    public required int Index { get; init; }

    /// <summary>Positions in <see cref="RoundPlan.Cohort"/>, strictly ascending: a member's SecAgg index is its place in this list.</summary>
    public required IReadOnlyList<int> Members { get; init; }

    /// <summary>32 public random bytes (base64) of this shard's own SecAgg session: its graph; null without secure aggregation.</summary>
    public string? SecAggRoundSeed { get; init; }

    /// <summary>k of this shard's SecAgg+ graph (null: complete graph), sized for its part, not the whole cohort.</summary>
    public int? Neighbors { get; init; }
}

/// <summary>A vehicle's shard in a sharded plan: the part whose secure sum it joins and its place there.</summary>
/// <param name="Shard">The shard's entry in the plan.</param>
/// <param name="Cohort">The part's vehicle ids, in SecAgg index order.</param>
/// <param name="Index">This vehicle's SecAgg index within the part.</param>
public sealed record ShardView(PlanShard Shard, IReadOnlyList<string> Cohort, int Index);

/// <summary>Checks and reads a plan's shard table (<see cref="RoundPlan.Shards"/>).</summary>
public static class PlanShards
{
    /// <summary>Most shards a plan may name.</summary>
    public const int MaxShards = 1024;

    /// <summary>
    /// Throws <see cref="WireFormatException"/> unless the table partitions the cohort: distinct shard numbers in range, every
    /// member a cohort position, ascending within its shard, and every position in exactly one shard. Under secure aggregation
    /// each shard needs its own seed and at least 3 members (one SecAgg instance each), and the privacy terms must hold for
    /// every part, since a shard unmasks its own partial sum.
    /// </summary>
    public static void Validate(RoundPlan plan)
    {
        ArgumentNullException.ThrowIfNull(plan);
        if (plan.Shards is not { } shards) return;
        if (shards.Count is 0 or > MaxShards) throw Bad($"has {shards.Count} shards; 1..{MaxShards} are allowed");
        var owner = new int[plan.Cohort.Count];
        Array.Fill(owner, -1);
        var seen = new HashSet<int>();
        foreach (var shard in shards)
        {
            if (shard is null || shard.Members is null) throw Bad("has an empty shard entry");
            if (shard.Index is < 0 or >= MaxShards || !seen.Add(shard.Index)) throw Bad($"names shard {shard.Index} twice or out of range");
            if (shard.Members.Count == 0) throw Bad($"gives shard {shard.Index} no vehicles");
            int previous = -1;
            foreach (int position in shard.Members)
            {
                if (position < 0 || position >= owner.Length) throw Bad($"puts cohort position {position} in shard {shard.Index}; the cohort has {owner.Length}");
                if (position <= previous) throw Bad($"lists shard {shard.Index}'s members out of order");
                if (owner[position] >= 0) throw Bad($"puts {plan.Cohort[position]} in shards {owner[position]} and {shard.Index}");
                owner[position] = shard.Index;
                previous = position;
            }
        }
        int missing = Array.IndexOf(owner, -1);
        if (missing >= 0) throw Bad($"puts {plan.Cohort[missing]} in no shard");
        if (plan.Protection is not { } protection || protection.SecureMode == Compression.SecureAggregationMode.Off) return;
        if (protection.MaliciousAggregator) throw Bad("runs shards against a malicious aggregator, which is not built (one session per shard)");
        foreach (var shard in shards)
        {
            if (shard.Members.Count < 3) throw Bad($"gives shard {shard.Index} {shard.Members.Count} vehicles; secure aggregation needs at least 3");
            if (!IsSeed(shard.SecAggRoundSeed)) throw Bad($"gives shard {shard.Index} no 32-byte base64 SecAgg seed");
            if (shard.Neighbors is { } k && (k < 1 || k > shard.Members.Count - 1)) throw Bad($"gives shard {shard.Index} k = {k} for {shard.Members.Count} vehicles");
            if (protection.PrivacyRefusal(new Privacy.VehiclePrivacyFloors(), shard.Members.Count, shard.Neighbors ?? shard.Members.Count - 1) is { } why) throw Bad($"is inconsistent for shard {shard.Index}: {why}");
        }
    }

    /// <summary>The shard that owns <paramref name="vehicleId"/> in <paramref name="plan"/>, or null when the plan is unsharded or the vehicle not selected.</summary>
    public static ShardView? Of(RoundPlan plan, string vehicleId)
    {
        ArgumentNullException.ThrowIfNull(plan);
        if (plan.Shards is not { } shards) return null;
        int position = IndexOf(plan.Cohort, vehicleId);
        if (position < 0) return null;
        foreach (var shard in shards)
        {
            int index = IndexOf(shard.Members, position);
            if (index >= 0) return new ShardView(shard, [.. shard.Members.Select(p => plan.Cohort[p])], index);
        }
        return null;
    }

    /// <summary>The entry of shard <paramref name="index"/>, or null.</summary>
    public static PlanShard? Find(RoundPlan plan, int index) => plan?.Shards?.FirstOrDefault(s => s.Index == index);

    private static int IndexOf<T>(IReadOnlyList<T> list, T value)
    {
        for (int i = 0; i < list.Count; i++)
            if (EqualityComparer<T>.Default.Equals(list[i], value)) return i;
        return -1;
    }

    private static bool IsSeed(string? base64)
    {
        if (base64 is null) return false;
        Span<byte> bytes = stackalloc byte[33];
        return Convert.TryFromBase64String(base64, bytes, out int n) && n == 32;
    }

    private static WireFormatException Bad(string what) => new($"Round plan shard table {what}.", RejectReasons.Malformed);
}
