using System.Globalization;
using FleetLearn.Core.Random;

namespace FleetLearn.Core.Federated;

/// <summary>How a dataset is split across vehicles.</summary>
public abstract record PartitionScheme
{
    /// <summary>Parses <c>iid</c>, <c>shards</c> (two label shards per vehicle) or <c>dirichlet:α</c>.</summary>
    public static PartitionScheme Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var t = text.Trim().ToLowerInvariant();
        if (t == "iid") return new Iid();
        if (t == "shards") return new Shards(2);
        if (t.StartsWith("shards:", StringComparison.Ordinal)
            && int.TryParse(t.AsSpan(7), NumberStyles.None, CultureInfo.InvariantCulture, out int s) && s is >= 1 and <= 100)
            return new Shards(s);
        if (t.StartsWith("dirichlet:", StringComparison.Ordinal)
            && double.TryParse(t.AsSpan(10), NumberStyles.Float, CultureInfo.InvariantCulture, out double alpha) && alpha > 0 && double.IsFinite(alpha))
            return new Dirichlet(alpha);
        throw new FormatException($"Unknown partition '{text}'; expected iid, shards, shards:N (1..100 shards per vehicle) or dirichlet:α with α > 0 (e.g. dirichlet:0.5).");
    }

    /// <summary>Uniformly random, equal-size parts.</summary>
    public sealed record Iid : PartitionScheme
    {
        public override string ToString() => "iid";
    }

    /// <summary>McMahan et al. 2017: sort by label, cut into (vehicles × per-vehicle) shards, give each vehicle that many at random.</summary>
    public sealed record Shards(int PerVehicle) : PartitionScheme
    {
        public override string ToString() => PerVehicle == 2 ? "shards" : $"shards:{PerVehicle}";
    }

    /// <summary>Label skew: for each class, the share going to each vehicle is drawn from Dirichlet(α).</summary>
    public sealed record Dirichlet(double Alpha) : PartitionScheme
    {
        public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"dirichlet:{Alpha}");
    }
}

/// <summary>Splits row indices of a labelled dataset across vehicles, deterministically per seed.</summary>
public static class Partitioner
{
    /// <summary>Returns, for each vehicle, the (sorted) row indices it holds. Every row goes to exactly one vehicle.</summary>
    public static int[][] Split(ReadOnlySpan<byte> labels, int vehicles, PartitionScheme scheme, ulong seed)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(vehicles);
        ArgumentNullException.ThrowIfNull(scheme);
        var rng = DeterministicRandom.Derive(seed, purpose: 0x9A87);
        int[][] parts = scheme switch
        {
            PartitionScheme.Iid => SplitIid(labels.Length, vehicles, rng),
            PartitionScheme.Shards s => SplitShards(labels, vehicles, s.PerVehicle, rng),
            PartitionScheme.Dirichlet d => SplitDirichlet(labels, vehicles, d.Alpha, rng),
            _ => throw new ArgumentException($"Unsupported partition scheme {scheme}.", nameof(scheme)),
        };
        foreach (var part in parts) Array.Sort(part);
        return parts;
    }

    private static int[][] ArraySplit(ReadOnlySpan<int> items, int parts)
    {
        // numpy.array_split: the first (n mod k) parts get one extra item.
        var result = new int[parts][];
        int baseSize = items.Length / parts, extra = items.Length % parts, at = 0;
        for (int p = 0; p < parts; p++)
        {
            int size = baseSize + (p < extra ? 1 : 0);
            result[p] = items.Slice(at, size).ToArray();
            at += size;
        }
        return result;
    }

    private static int[][] SplitIid(int n, int vehicles, DeterministicRandom rng)
    {
        var order = Enumerable.Range(0, n).ToArray();
        rng.Shuffle(order.AsSpan());
        return ArraySplit(order, vehicles);
    }

    private static int[][] SplitShards(ReadOnlySpan<byte> labels, int vehicles, int perVehicle, DeterministicRandom rng)
    {
        int shardCount = checked(vehicles * perVehicle);
        if (shardCount > labels.Length)
            throw new ArgumentException($"{vehicles} vehicles × {perVehicle} shards need at least {shardCount} rows; the dataset has {labels.Length}.");
        var order = Enumerable.Range(0, labels.Length).ToArray();
        var keys = labels.ToArray();
        Array.Sort(keys, order); // Array.Sort(keys, items) is not stable: restore row order within a label below.
        int start = 0;
        for (int i = 1; i <= order.Length; i++)
        {
            if (i == order.Length || keys[i] != keys[start])
            {
                Array.Sort(order, start, i - start);
                start = i;
            }
        }
        var shards = ArraySplit(order, shardCount);
        var ids = Enumerable.Range(0, shardCount).ToArray();
        rng.Shuffle(ids.AsSpan());
        var parts = new int[vehicles][];
        for (int v = 0; v < vehicles; v++)
        {
            var list = new List<int>();
            for (int s = 0; s < perVehicle; s++) list.AddRange(shards[ids[v * perVehicle + s]]);
            parts[v] = list.ToArray();
        }
        return parts;
    }

    private static int[][] SplitDirichlet(ReadOnlySpan<byte> labels, int vehicles, double alpha, DeterministicRandom rng)
    {
        var lists = new List<int>[vehicles];
        for (int v = 0; v < vehicles; v++) lists[v] = [];
        int classes = 0;
        foreach (var l in labels) classes = Math.Max(classes, l + 1);
        var proportions = new double[vehicles];
        for (int c = 0; c < classes; c++)
        {
            var rows = new List<int>();
            for (int i = 0; i < labels.Length; i++) if (labels[i] == c) rows.Add(i);
            var idc = rows.ToArray();
            rng.Shuffle(idc.AsSpan());
            double sum = 0;
            for (int v = 0; v < vehicles; v++) sum += proportions[v] = rng.NextGamma(alpha);
            // Cut points at floor(cumsum(p)·n), as the reference does.
            double cumulative = 0;
            int at = 0;
            for (int v = 0; v < vehicles; v++)
            {
                cumulative += proportions[v] / sum;
                int end = v == vehicles - 1 ? idc.Length : Math.Min(idc.Length, (int)(cumulative * idc.Length));
                for (int i = at; i < end; i++) lists[v].Add(idc[i]);
                at = Math.Max(at, end);
            }
        }
        return lists.Select(l => l.ToArray()).ToArray();
    }

    /// <summary>Label histogram of one vehicle's rows.</summary>
    public static int[] Histogram(ReadOnlySpan<byte> labels, ReadOnlySpan<int> rows, int classes)
    {
        var h = new int[classes];
        foreach (var r in rows) h[labels[r]]++;
        return h;
    }
}
