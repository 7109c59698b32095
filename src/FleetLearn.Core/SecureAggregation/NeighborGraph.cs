namespace FleetLearn.Core.SecureAggregation;

/// <summary>
/// Who masks with whom. Complete graph (SecAgg) or a k-regular Harary graph H(k, n) on a random
/// ring order (SecAgg+, Bell et al. 2020 §3): vehicle at ring position i is joined to positions
/// i ± 1 … i ± k/2. The ring order is a Fisher–Yates shuffle driven by AES-CTR keyed with the
/// public round seed, so the graph is fixed by the round plan and reproducible on any platform.
/// </summary>
public sealed class NeighborGraph : IShareGraph
{
    private readonly int[]? _order;     // ring position → vehicle
    private readonly int[]? _position;  // vehicle → ring position
    private readonly int _half;

    private NeighborGraph(int n, int? k, int[]? order, int[]? position)
    {
        Size = n;
        Degree = k ?? n - 1;
        _half = Degree / 2;
        _order = order;
        _position = position;
    }

    /// <summary>Number of vehicles.</summary>
    public int Size { get; }

    /// <summary>Neighbours per vehicle (k, or n − 1 for the complete graph).</summary>
    public int Degree { get; }

    /// <summary>True for the complete graph.</summary>
    public bool IsComplete => _order is null;

    /// <summary>
    /// The default k of SecAgg+ for a cohort of <paramref name="n"/>: derived, not guessed — the smallest even k whose failure
    /// bound is ≤ 2^-40 against 5% colluding vehicles and a fraction <paramref name="missing"/> (default 10%) that never send
    /// their masked input (<see cref="SecAggPlusParameters.Derive"/>, Bell et al. 2020; with over-selection pass
    /// <see cref="SecAggPlusParameters.MissingFraction"/>); null (the complete graph) when no k below n − 1 meets it. Its
    /// threshold is the default strict majority.
    /// </summary>
    public static int? DefaultNeighbors(int n, double missing = SecAggPlusParameters.DefaultDropout)
    {
        if (n < 3) return null;
        var c = SecAggPlusParameters.Derive(n, SecAggPlusParameters.DefaultColluders, missing);
        return c.Neighbors >= n - 1 ? null : c.Neighbors;
    }

    /// <summary>Builds the graph; <paramref name="k"/> null or ≥ n − 1 means complete.</summary>
    public static NeighborGraph Create(int n, int? k, ReadOnlySpan<byte> roundSeed)
    {
        if (k is null || k.Value >= n - 1) return new NeighborGraph(n, null, null, null);
        if (k.Value < 2 || k.Value % 2 != 0) throw new SecAggConfigurationException($"k = {k} must be even and ≥ 2.");
        var order = new int[n];
        for (int i = 0; i < n; i++) order[i] = i;
        var stream = new PrgStream(SecAggCrypto.DeriveLabelledKey(roundSeed, "graph"));
        for (int i = n - 1; i > 0; i--)
        {
            int j = (int)stream.NextBelow((uint)(i + 1));
            (order[i], order[j]) = (order[j], order[i]);
        }
        var position = new int[n];
        for (int i = 0; i < n; i++) position[order[i]] = i;
        return new NeighborGraph(n, k, order, position);
    }

    /// <summary>True when u and v mask with each other (u ≠ v).</summary>
    public bool AreNeighbors(int u, int v)
    {
        if (u == v) return false;
        if (_position is null) return true;
        int d = Math.Abs(_position[u] - _position[v]);
        d = Math.Min(d, Size - d);
        return d <= _half;
    }

    /// <summary>N(u), ascending.</summary>
    public int[] NeighborsOf(int u)
    {
        if (_order is null)
        {
            var all = new int[Size - 1];
            for (int i = 0, j = 0; i < Size; i++) if (i != u) all[j++] = i;
            return all;
        }
        var result = new int[Degree];
        int p = _position![u], idx = 0;
        for (int d = 1; d <= _half; d++)
        {
            result[idx++] = _order[(p + d) % Size];
            result[idx++] = _order[(p - d + Size) % Size];
        }
        Array.Sort(result);
        return result;
    }

    /// <summary>H(u) = N(u) ∪ {u}, ascending: the vehicles holding shares of u's secrets.</summary>
    public int[] HoldersOf(int u)
    {
        var n = NeighborsOf(u);
        var h = new int[n.Length + 1];
        int i = 0, j = 0;
        while (i < n.Length && n[i] < u) h[j++] = n[i++];
        h[j++] = u;
        while (i < n.Length) h[j++] = n[i++];
        return h;
    }

    /// <summary>True when v holds shares of u's secrets (v ∈ H(u)).</summary>
    public bool IsHolder(int u, int v) => u == v || AreNeighbors(u, v);

    /// <summary>H(v): holding is symmetric on the ring and the complete graph.</summary>
    public int[] HeldBy(int v) => HoldersOf(v);

    /// <summary>H(u) = N(u) ∪ {u}.</summary>
    public int[] DirectoryOf(int u) => HoldersOf(u);
}
