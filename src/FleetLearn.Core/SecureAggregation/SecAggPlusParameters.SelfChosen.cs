namespace FleetLearn.Core.SecureAggregation;

/// <summary>SecAgg+ parameters for share holders drawn by each vehicle (<see cref="SelfChosenGraph"/>).</summary>
/// <remarks>
/// Each honest vehicle's C(u) is a uniform k-subset of the other n − 1, drawn independently after the cohort (and so the
/// colluders) is fixed; the dropouts are assumed independent of the draws. Three events, each union-bounded:
/// <list type="number">
/// <item>Colluding holders: n·P[Hyp(n−1, ⌈γn⌉, k) ≥ t − 1]. One less than on the ring because a malicious server can
/// claim that all of u's honest holders failed to advertise: u then shares with its colluding holders and itself, and its
/// own share makes the t-th.</item>
/// <item>Dropout: n·P[Hyp(n−1, ⌈δn⌉, k) ≥ k + 2 − t], as on the ring.</item>
/// <item>Partition of the honest survivors R (r = n − m, m = ⌈γn⌉ + ⌈δn⌉) on the union graph: some S ⊂ R with
/// |S| = s ≤ r/2 has no edge to R \ S only if every u ∈ S drew inside S ∪ M and every w ∈ R \ S drew outside S:
/// Σ_s C(r, s)·[C(s − 1 + m, k)/C(n − 1, k)]^s·[C(n − 1 − s, k)/C(n − 1, k)]^(r − s).</item>
/// </list>
/// Bell et al. 2020 analyse an Erdős–Rényi graph; here every vehicle has at least k neighbours (its own draw) and about
/// 2k − k²/(n − 1) on average (those that drew it), so the masking and the server's unmasking cost about twice the ring's
/// at the same k, while each vehicle still sends and holds shares for k holders.
/// </remarks>
public static partial class SecAggPlusParameters
{
    /// <summary>
    /// The smallest even k (then the best t) whose self-chosen failure bound is ≤ 2^<paramref name="targetLog2"/>; the complete
    /// graph if none below n − 1 is. Even like the ring's, so one k setting (<c>--secagg-neighbors</c>) validates in both modes.
    /// </summary>
    public static SecAggPlusChoice DeriveSelfChosen(int vehicles, double colluders, double dropout, double targetLog2 = DefaultTargetLog2)
    {
        Check(vehicles, colluders, dropout);
        if (!(targetLog2 < 0)) throw new ArgumentOutOfRangeException(nameof(targetLog2), targetLog2, "The failure target must be below 2^0.");
        for (int k = 2; k < vehicles - 1; k += 2)
        {
            double partition = SelfChosenPartitionLog(vehicles, k, colluders, dropout);
            SecAggPlusChoice? best = null;
            for (int t = (k + 1) / 2 + 1; t <= k + 1; t++)
            {
                var c = EvaluateSelfChosen(vehicles, k, t, colluders, dropout, partition);
                if (best is null || c.FailureLog2 < best.FailureLog2) best = c;
            }
            if (best!.FailureLog2 <= targetLog2) return best;
        }
        return Evaluate(vehicles, vehicles - 1, vehicles / 2 + 1, colluders, dropout);
    }

    /// <summary>The self-chosen failure bound of a given (k, t), k &lt; n − 1.</summary>
    public static SecAggPlusChoice EvaluateSelfChosen(int vehicles, int holders, int threshold, double colluders, double dropout)
    {
        Check(vehicles, colluders, dropout);
        if (holders < 2 || holders >= vehicles - 1 || threshold < 2 || threshold > holders + 1)
            throw new ArgumentOutOfRangeException(nameof(threshold), $"Need 2 ≤ k < n − 1 and 2 ≤ t ≤ k + 1; got k = {holders}, t = {threshold}.");
        return EvaluateSelfChosen(vehicles, holders, threshold, colluders, dropout, SelfChosenPartitionLog(vehicles, holders, colluders, dropout));
    }

    /// <summary>The smallest even k whose bound with the default threshold (a strict majority of k + 1) meets 2^-40 at γ = 5%; null for the complete graph.</summary>
    public static int? DefaultSelfChosenHolders(int n, double missing = DefaultDropout)
    {
        if (n < 4) return null;
        for (int k = 2; k < n - 1; k += 2)
            if (EvaluateSelfChosen(n, k, (k + 1) / 2 + 1, DefaultColluders, missing).FailureLog2 <= DefaultTargetLog2) return k;
        return null;
    }

    private static SecAggPlusChoice EvaluateSelfChosen(int n, int k, int t, double colluders, double dropout, double partition)
    {
        int corrupt = (int)Math.Ceiling(colluders * n - 1e-9), dropped = (int)Math.Ceiling(dropout * n - 1e-9);
        double colluding = LogUnion(n, HypergeometricTailLog(n - 1, corrupt, k, t - 1));
        double drop = LogUnion(n, HypergeometricTailLog(n - 1, dropped, k, k + 2 - t));
        double total = LogSumExp(colluding, partition, drop);
        const double toLog2 = 1 / 0.69314718055994530942;
        return new SecAggPlusChoice(k, t, Math.Min(0, total) * toLog2, colluding * toLog2, partition * toLog2, drop * toLog2);
    }

    /// <summary>Natural log of the partition bound of the remarks (independent of t).</summary>
    private static double SelfChosenPartitionLog(int n, int k, double colluders, double dropout)
    {
        int m = Math.Min(n, (int)Math.Ceiling(colluders * n - 1e-9) + (int)Math.Ceiling(dropout * n - 1e-9));
        int r = n - m;
        double all = LogChoose(n - 1, k), acc = double.NegativeInfinity, previous = double.NegativeInfinity;
        int falling = 0;
        for (int s = 1; s <= r / 2; s++)
        {
            double inside = LogChoose(s - 1 + m, k) - all;
            if (double.IsNegativeInfinity(inside)) continue;
            double term = LogChoose(r, s) + s * inside + (r - s) * (LogChoose(n - 1 - s, k) - all);
            acc = LogSumExp(acc, term);
            // The terms rise to one peak and then fall (log-concave in s); 64 falling terms e^-50 below the sum end it.
            falling = term < previous && term < acc - 50 ? falling + 1 : 0;
            if (falling >= 64) break;
            previous = term;
        }
        return Math.Min(0, acc);
    }
}
