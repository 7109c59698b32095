namespace FleetLearn.Core.SecureAggregation;

/// <summary>SecAgg+ neighbours k and threshold t for a cohort, with the log2 of the failure probability they guarantee.</summary>
/// <param name="Neighbors">k (even), or n − 1 for the complete graph.</param>
/// <param name="Threshold">t: a strict majority of the k + 1 share holders.</param>
/// <param name="FailureLog2">log2 of the bound on P(privacy or correctness fails): the sum of the three below.</param>
/// <param name="ColludingHoldersLog2">log2 P(some honest vehicle has ≥ t colluding neighbours: its secrets are reconstructable).</param>
/// <param name="PartitionLog2">log2 P(the honest survivors' mask graph falls apart: a partial sum is revealed).</param>
/// <param name="DropoutLog2">log2 P(some vehicle keeps fewer than t live holders: the round cannot unmask).</param>
public sealed record SecAggPlusChoice(int Neighbors, int Threshold, double FailureLog2, double ColludingHoldersLog2, double PartitionLog2, double DropoutLog2);

/// <summary>
/// Derives SecAgg+ parameters (Bell et al. 2020, "Secure Single-Server Aggregation with (Poly)Logarithmic Overhead",
/// §3–4: k = O(log n) neighbours, failure ≤ 2^-40 as the paper targets) for this project's graph, the Harary graph H(k, n)
/// over a secret random ring order (<see cref="NeighborGraph"/>), against a fraction γ of colluding vehicles and a
/// fraction δ of dropouts, both placed without knowing the ring order.
/// </summary>
/// <remarks>
/// Three events, each bounded by a union bound over the n vehicles or ring windows (Bell et al. bound the same three for
/// their random graph; their Lemma-level constants do not transfer to H(k, n), so the bounds here are derived for it):
/// <list type="number">
/// <item>Colluding holders: an honest vehicle's k neighbours are a uniform k-subset of the other n − 1, so the number of
/// colluders among them is hypergeometric; ≥ t of them reconstruct its b and s: n·P[Hyp(n−1, ⌈γn⌉, k) ≥ t].</item>
/// <item>Partition: removing colluders and dropouts (m = ⌈γn⌉ + ⌈δn⌉ vehicles) disconnects the ring-ordered H(k, n) only if two
/// disjoint runs of k/2 consecutive positions are all removed; at most n²/2 window pairs, each fully removed with
/// probability Π_{i&lt;k}(m−i)/(n−i).</item>
/// <item>Dropout: a vehicle with fewer than t − 1 live neighbours cannot have its secret rebuilt: n·P[Hyp(n−1, ⌈δn⌉, k) ≥ k + 2 − t].</item>
/// </list>
/// The ring order must be unpredictable to whoever picks the colluders (issue 13 item 5's commit–reveal seed); until then
/// the bound assumes the colluders were fixed before the round seed was drawn.
/// </remarks>
public static partial class SecAggPlusParameters
{
    /// <summary>γ the defaults are derived for (<see cref="NeighborGraph.DefaultNeighbors"/>).</summary>
    public const double DefaultColluders = 0.05;

    /// <summary>δ the defaults are derived for (Bonawitz et al. 2019 report 6–10% dropout).</summary>
    public const double DefaultDropout = 0.1;

    /// <summary>The failure bound Bell et al. target: 2^-40.</summary>
    public const double DefaultTargetLog2 = -40;

    /// <summary>
    /// δ for a round that selects <paramref name="selected"/> vehicles and closes its masked-input phase once
    /// <paramref name="needed"/> have sent (over-selection): the surplus never sends a masked input, so to SecAgg+ it is
    /// missing exactly like a dropout; with no surplus, the default dropout rate <see cref="DefaultDropout"/>.
    /// </summary>
    public static double MissingFraction(int selected, int needed)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(selected);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(needed);
        return Math.Max(DefaultDropout, Math.Max(0, selected - needed) / (double)selected);
    }

    /// <summary>The smallest even k (then the t minimising the bound) whose failure bound is ≤ 2^<paramref name="targetLog2"/>; the complete graph if none below n − 1 is.</summary>
    public static SecAggPlusChoice Derive(int vehicles, double colluders, double dropout, double targetLog2 = DefaultTargetLog2)
    {
        Check(vehicles, colluders, dropout);
        if (!(targetLog2 < 0)) throw new ArgumentOutOfRangeException(nameof(targetLog2), targetLog2, "The failure target must be below 2^0.");
        for (int k = 2; k < vehicles - 1; k += 2)
        {
            var best = BestThreshold(vehicles, k, colluders, dropout);
            if (best.FailureLog2 <= targetLog2) return best;
        }
        return BestThreshold(vehicles, vehicles - 1, colluders, dropout);
    }

    /// <summary>The failure bound of a given (k, t) (k ≥ n − 1: the complete graph, where the counts are exact).</summary>
    public static SecAggPlusChoice Evaluate(int vehicles, int neighbors, int threshold, double colluders, double dropout)
    {
        Check(vehicles, colluders, dropout);
        int n = vehicles;
        int k = Math.Min(neighbors, n - 1);
        if (k < 2 || threshold < 1 || threshold > k + 1) throw new ArgumentOutOfRangeException(nameof(threshold), $"Need 2 ≤ k and 1 ≤ t ≤ k + 1; got k = {neighbors}, t = {threshold}.");
        // Rounded up: a fraction of a vehicle is a whole vehicle for the adversary.
        int corrupt = (int)Math.Ceiling(colluders * n - 1e-9), dropped = (int)Math.Ceiling(dropout * n - 1e-9);
        double colluding = LogUnion(n, HypergeometricTailLog(n - 1, corrupt, k, threshold));
        double drop = LogUnion(n, HypergeometricTailLog(n - 1, dropped, k, k + 2 - threshold));
        double partition = double.NegativeInfinity;
        if (k < n - 1)
        {
            int m = Math.Min(n, corrupt + dropped);
            double log = Math.Log(n) * 2 - Math.Log(2);
            for (int i = 0; i < k && !double.IsNegativeInfinity(log); i++) log += m - i <= 0 ? double.NegativeInfinity : Math.Log((double)(m - i) / (n - i));
            partition = Math.Min(0, log);
        }
        double total = LogSumExp(colluding, partition, drop);
        const double toLog2 = 1 / 0.69314718055994530942;
        return new SecAggPlusChoice(k == n - 1 ? n - 1 : neighbors, threshold, Math.Min(0, total) * toLog2, colluding * toLog2, partition * toLog2, drop * toLog2);
    }

    private static SecAggPlusChoice BestThreshold(int n, int k, double colluders, double dropout)
    {
        SecAggPlusChoice? best = null;
        // t must be a strict majority of the k + 1 holders (SecAggParameters.Validate).
        for (int t = (k + 1) / 2 + 1; t <= k + 1; t++)
        {
            var c = Evaluate(n, k, t, colluders, dropout);
            if (best is null || c.FailureLog2 < best.FailureLog2) best = c;
        }
        return best!;
    }

    private static void Check(int vehicles, double colluders, double dropout)
    {
        if (vehicles < 3 || vehicles > SecAggParameters.MaxCohortSize) throw new ArgumentOutOfRangeException(nameof(vehicles), vehicles, $"The cohort must have 3..{SecAggParameters.MaxCohortSize} vehicles.");
        if (!(colluders >= 0 && colluders < 1)) throw new ArgumentOutOfRangeException(nameof(colluders), colluders, "The colluder fraction γ must be within [0, 1).");
        if (!(dropout >= 0 && dropout < 1)) throw new ArgumentOutOfRangeException(nameof(dropout), dropout, "The dropout fraction δ must be within [0, 1).");
        if (colluders + dropout >= 1) throw new ArgumentOutOfRangeException(nameof(dropout), dropout, $"γ + δ = {colluders + dropout} leaves no honest survivor.");
    }

    private static double LogUnion(int n, double logEach) => Math.Min(0, Math.Log(n) + logEach);

    /// <summary>log P[X ≥ x] for X ~ Hypergeometric(population N, K marked, k draws).</summary>
    private static double HypergeometricTailLog(int population, int marked, int draws, int x)
    {
        if (x <= 0) return 0;
        int hi = Math.Min(marked, draws);
        if (x > hi) return double.NegativeInfinity;
        double logTotal = LogChoose(population, draws);
        double acc = double.NegativeInfinity;
        for (int j = x; j <= hi; j++)
        {
            if (draws - j > population - marked) continue;
            acc = LogSumExp(acc, LogChoose(marked, j) + LogChoose(population - marked, draws - j) - logTotal);
        }
        return Math.Min(0, acc);
    }

    private static double LogChoose(int n, int k)
    {
        if (k < 0 || k > n) return double.NegativeInfinity;
        k = Math.Min(k, n - k);
        double sum = 0;
        for (int i = 1; i <= k; i++) sum += Math.Log((double)(n - k + i) / i);
        return sum;
    }

    private static double LogSumExp(params double[] terms)
    {
        double max = terms.Max();
        if (double.IsNegativeInfinity(max)) return max;
        return max + Math.Log(terms.Sum(t => Math.Exp(t - max)));
    }
}
