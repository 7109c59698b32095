namespace FleetLearn.Core.Federated;

/// <summary>
/// Multi-Krum (Blanchard et al. 2017, "Machine Learning with Adversaries: Byzantine Tolerant Gradient Descent", §4):
/// with n updates of which up to f are Byzantine, each update's score is the sum of squared L2 distances to its
/// n − f − 2 nearest others; the m = n − f lowest-scoring updates are averaged (uniformly, like Krum; weights are
/// ignored, as in the paper). An attacker's update far from the honest cluster scores high and is left out. Buffers
/// the cohort and compares every pair: memory O(n·d), time O(n²·d) — for robustness experiments and small cohorts.
/// </summary>
public sealed class MultiKrumAggregator : BufferingAggregator
{

    /// <summary><paramref name="byzantineFraction"/> = f / n ∈ [0, 0.5): the share of updates assumed hostile.</summary>
    public MultiKrumAggregator(int dimension, double byzantineFraction) : base(dimension)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(dimension);
        if (!(byzantineFraction >= 0 && byzantineFraction < 0.5))
            throw new ArgumentOutOfRangeException(nameof(byzantineFraction), byzantineFraction, "The Byzantine fraction must be within [0, 0.5).");
        ByzantineFraction = byzantineFraction;
    }

    /// <summary>f / n.</summary>
    public double ByzantineFraction { get; }

    /// <summary>Indices (in order of <see cref="BufferingAggregator.Add"/>) of the updates the last <see cref="Complete"/> averaged.</summary>
    public IReadOnlyList<int> Selected { get; private set; } = [];

    public override void Complete(Span<float> combined)
    {
        int n = Updates.Count;
        if (n == 0) throw new InvalidOperationException("No update was aggregated this round.");
        int f = (int)Math.Floor(ByzantineFraction * n);
        // Krum needs n > 2f + 2 for its guarantee; with fewer updates it still ranks by the nearest n − f − 2 (at least 1).
        int neighbours = Math.Clamp(n - f - 2, 1, Math.Max(1, n - 1));
        int keep = Math.Max(1, n - f);
        var distances = new double[n, n];
        for (int i = 0; i < n; i++)
        {
            for (int j = i + 1; j < n; j++)
            {
                double d = SquaredDistance(Updates[i], Updates[j]);
                distances[i, j] = d;
                distances[j, i] = d;
            }
        }
        var scores = new double[n];
        var row = new double[Math.Max(0, n - 1)];
        for (int i = 0; i < n; i++)
        {
            int k = 0;
            for (int j = 0; j < n; j++)
            {
                if (j != i) row[k++] = distances[i, j];
            }
            Array.Sort(row);
            double s = 0;
            for (int j = 0; j < Math.Min(neighbours, row.Length); j++) s += row[j];
            scores[i] = s;
        }
        var order = Enumerable.Range(0, n).OrderBy(i => scores[i]).ThenBy(i => i).Take(keep).Order().ToArray();
        Selected = order;
        var sum = new double[Dimension];
        foreach (int i in order)
        {
            var u = Updates[i];
            for (int c = 0; c < Dimension; c++) sum[c] += u[c];
        }
        for (int c = 0; c < Dimension; c++) combined[c] = (float)(sum[c] / order.Length);
    }

    private static double SquaredDistance(float[] a, float[] b)
    {
        double s = 0;
        for (int c = 0; c < a.Length; c++)
        {
            double d = (double)a[c] - b[c];
            s += d * d;
        }
        return s;
    }
}
