using FleetLearn.Core.Privacy;

namespace FleetLearn.Core.SecureAggregation;

/// <summary>
/// The SecAgg+ graph when every vehicle draws its own share holders (issue 13 item 5): u's holders are the k cohort members
/// C(u) it drew, after the plan fixed the cohort, from randomness the aggregator never sees; masks run on the union graph
/// N(u) = C(u) ∪ {v : u ∈ C(v)}. Built from the signed advertisements, so the server and every vehicle derive the same graph.
/// </summary>
/// <remarks>
/// Why not the seed ring: whoever picks the seed (or the cohort order) picks the ring, and a malicious aggregator grinds it
/// until an honest vehicle's holders are its colluders (docs/threat-model.md). Here a colluder can attach itself to an honest
/// vehicle only by drawing it, which makes the colluder a mask neighbour of the vehicle, never a holder of its shares.
/// </remarks>
public sealed class SelfChosenGraph : IShareGraph
{
    private readonly int[]?[] _chosen;       // C(u), ascending; null when u did not advertise
    private readonly List<int>[] _chosenBy;  // {v : u ∈ C(v)}

    /// <summary>Builds the graph from each vehicle's choice (null: no advertisement); choices must pass <see cref="Check"/>.</summary>
    public SelfChosenGraph(int size, IReadOnlyList<int[]?> chosen)
    {
        ArgumentNullException.ThrowIfNull(chosen);
        if (chosen.Count != size) throw new ArgumentException($"Expected {size} choices, got {chosen.Count}.", nameof(chosen));
        Size = size;
        _chosen = [.. chosen];
        _chosenBy = new List<int>[size];
        for (int u = 0; u < size; u++) _chosenBy[u] = [];
        for (int v = 0; v < size; v++)
            if (_chosen[v] is { } c)
                foreach (int u in c) _chosenBy[u].Add(v);
    }

    /// <inheritdoc/>
    public int Size { get; }

    /// <inheritdoc/>
    public bool IsComplete => false;

    /// <summary>C(u), ascending (empty when u did not advertise).</summary>
    public IReadOnlyList<int> ChosenBy(int u) => _chosen[u] ?? [];

    /// <inheritdoc/>
    public bool AreNeighbors(int u, int v) => u != v && (Chose(u, v) || Chose(v, u));

    /// <inheritdoc/>
    public int[] NeighborsOf(int u)
    {
        var set = new SortedSet<int>(_chosenBy[u]);
        if (_chosen[u] is { } c) set.UnionWith(c);
        return [.. set];
    }

    /// <inheritdoc/>
    public int[] HoldersOf(int u) => WithSelf(_chosen[u] ?? [], u);

    /// <inheritdoc/>
    public bool IsHolder(int u, int v) => u == v || Chose(u, v);

    /// <inheritdoc/>
    public int[] HeldBy(int v)
    {
        var list = new List<int>(_chosenBy[v]);
        list.Sort();
        return WithSelf([.. list], v);
    }

    /// <inheritdoc/>
    public int[] DirectoryOf(int u) => WithSelf(NeighborsOf(u), u);

    private bool Chose(int u, int v) => _chosen[u] is { } c && Array.BinarySearch(c, v) >= 0;

    private static int[] WithSelf(int[] sorted, int u)
    {
        var h = new int[sorted.Length + 1];
        int i = 0, j = 0;
        while (i < sorted.Length && sorted[i] < u) h[j++] = sorted[i++];
        h[j++] = u;
        while (i < sorted.Length) h[j++] = sorted[i++];
        return h;
    }

    /// <summary>
    /// Vehicle u's draw: k distinct other cohort members, uniform over all k-subsets (Floyd's algorithm), ascending. The
    /// source is the vehicle's CSPRNG (<see cref="SecureNoiseSource"/>); a seeded one only where a simulation must replay.
    /// </summary>
    public static int[] Draw(int cohortSize, int k, int u, INoiseSource randomness)
    {
        ArgumentNullException.ThrowIfNull(randomness);
        int others = cohortSize - 1;
        if (k < 1 || k > others) throw new ArgumentOutOfRangeException(nameof(k), k, $"Need 1 ≤ k ≤ {others}.");
        var picked = new HashSet<int>(k);
        for (int j = others - k; j < others; j++)
        {
            int r = randomness.NextInt(j + 1);
            picked.Add(picked.Contains(r) ? j : r);
        }
        var result = picked.Select(x => x < u ? x : x + 1).ToArray();
        Array.Sort(result);
        return result;
    }

    /// <summary>Why <paramref name="holders"/> is not a valid choice of vehicle u (k distinct other cohort members, ascending), or null.</summary>
    public static string? Check(int cohortSize, int k, int u, IReadOnlyList<int> holders)
    {
        ArgumentNullException.ThrowIfNull(holders);
        if (holders.Count != k) return $"vehicle {u} chose {holders.Count} share holders; the round asks for k = {k}";
        for (int i = 0; i < holders.Count; i++)
        {
            int v = holders[i];
            if (v < 0 || v >= cohortSize) return $"vehicle {u} chose holder {v}, outside the cohort of {cohortSize}";
            if (v == u) return $"vehicle {u} chose itself as a share holder";
            if (i > 0 && v <= holders[i - 1]) return $"vehicle {u}'s share holders are not ascending or repeat vehicle {v}";
        }
        return null;
    }
}
