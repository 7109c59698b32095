namespace FleetLearn.Core.Rounds;

/// <summary>Which live shard owns which vehicle of a round's cohort: deterministic, so the signed plan and every shard agree.</summary>
public static class ShardAssignment
{
    /// <summary>
    /// Assigns <paramref name="cohort"/> (in cohort order) to <paramref name="liveShards"/>. A vehicle whose
    /// <paramref name="preferred"/> shard is live goes there (in a bridged broker network: the shard on its regional broker);
    /// every other vehicle goes to the live shard with the fewest vehicles so far (lowest number on a tie), so parts stay
    /// balanced — secure aggregation's threshold and noise shares are sized per part. A shard that died is simply not live:
    /// its vehicles are spread over the others. Returns each live shard's part, in cohort order.
    /// </summary>
    public static IReadOnlyDictionary<int, IReadOnlyList<string>> Assign(IReadOnlyList<string> cohort, IReadOnlyCollection<int> liveShards, Func<string, int?>? preferred = null)
    {
        ArgumentNullException.ThrowIfNull(cohort);
        ArgumentNullException.ThrowIfNull(liveShards);
        if (liveShards.Count == 0) throw new ArgumentException("No shard is live.", nameof(liveShards));
        var live = liveShards.Distinct().Order().ToArray();
        var parts = live.ToDictionary(s => s, _ => new List<string>());
        var rest = new List<string>();
        foreach (var v in cohort)
        {
            if (preferred?.Invoke(v) is { } p && parts.TryGetValue(p, out var part)) part.Add(v);
            else rest.Add(v);
        }
        foreach (var v in rest) parts[live.MinBy(s => (parts[s].Count, s))].Add(v);
        var order = new Dictionary<string, int>(cohort.Count, StringComparer.Ordinal);
        for (int i = 0; i < cohort.Count; i++) order[cohort[i]] = i;
        return parts.ToDictionary(p => p.Key, p => (IReadOnlyList<string>)[.. p.Value.OrderBy(v => order[v])]);
    }
}
