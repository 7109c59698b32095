namespace FleetLearn.Core.Privacy;

/// <summary>
/// k-ary randomized response (Warner 1965; generalized as in Kairouz et al. 2014 and Apple's "Learning with
/// Privacy at Scale", 2017): a vehicle reports its true category v ∈ [0, k) with probability
/// p = e^ε/(e^ε + k − 1) and each other category with probability 1/(e^ε + k − 1), which is ε-LDP.
/// </summary>
public sealed class RandomizedResponse
{
    /// <summary>Creates the mechanism for <paramref name="categories"/> values at local privacy ε.</summary>
    public RandomizedResponse(int categories, double epsilon)
    {
        if (categories < 2) throw new ArgumentOutOfRangeException(nameof(categories), categories, "Randomized response needs at least 2 categories.");
        if (!(epsilon > 0) || double.IsInfinity(epsilon)) throw new ArgumentOutOfRangeException(nameof(epsilon), epsilon, "ε must be a positive finite number.");
        Categories = categories;
        Epsilon = epsilon;
        double e = Math.Exp(epsilon);
        KeepProbability = e / (e + categories - 1);
        OtherProbability = 1 / (e + categories - 1);
    }

    /// <summary>k: number of categories.</summary>
    public int Categories { get; }

    /// <summary>ε of the local guarantee.</summary>
    public double Epsilon { get; }

    /// <summary>p = e^ε/(e^ε + k − 1): probability of reporting the true value.</summary>
    public double KeepProbability { get; }

    /// <summary>q = 1/(e^ε + k − 1): probability of reporting one particular other value.</summary>
    public double OtherProbability { get; }

    /// <summary>The vehicle's randomized report of <paramref name="value"/> (noise from a secure source by default).</summary>
    public int Perturb(int value, INoiseSource? source = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(value);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(value, Categories);
        source ??= new SecureNoiseSource();
        if (source.NextUniform() < KeepProbability) return value;
        int other = source.NextInt(Categories - 1); // uniform over the k − 1 other values
        return other >= value ? other + 1 : other;
    }

    /// <summary>
    /// The aggregator's unbiased frequency estimate from report counts: f̂_v = (c_v/n − q)/(p − q), since
    /// E[c_v/n] = f_v·p + (1 − f_v)·q. Estimates can fall outside [0, 1]; project only for display.
    /// </summary>
    public double[] EstimateFrequencies(ReadOnlySpan<long> reportCounts)
    {
        if (reportCounts.Length != Categories) throw new ArgumentException($"Expected {Categories} counts, got {reportCounts.Length}.", nameof(reportCounts));
        long n = 0;
        foreach (var c in reportCounts)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(c);
            n += c;
        }
        if (n == 0) throw new ArgumentException("No reports to estimate from.", nameof(reportCounts));
        var estimate = new double[Categories];
        for (int v = 0; v < Categories; v++) estimate[v] = ((double)reportCounts[v] / n - OtherProbability) / (KeepProbability - OtherProbability);
        return estimate;
    }

    /// <summary>Variance of one category's estimate with n reports and true frequency f: (n·Var[c_v/n]) / (p − q)² / n.</summary>
    public double EstimateVariance(double trueFrequency, long reports)
    {
        double pv = trueFrequency * KeepProbability + (1 - trueFrequency) * OtherProbability;
        return pv * (1 - pv) / (reports * (KeepProbability - OtherProbability) * (KeepProbability - OtherProbability));
    }
}

/// <summary>Which unary-encoding flip probabilities to use (Wang et al. 2017, "Locally Differentially Private Protocols for Frequency Estimation").</summary>
public enum UnaryEncodingVariant
{
    /// <summary>Optimized unary encoding (OUE): the true bit stays 1 with p = ½, every other bit becomes 1 with q = 1/(e^ε + 1). Lowest variance; the default.</summary>
    Optimized,

    /// <summary>Symmetric unary encoding (SUE, basic one-time RAPPOR, Erlingsson et al. 2014): p = e^(ε/2)/(e^(ε/2) + 1), q = 1 − p.</summary>
    Symmetric,
}

/// <summary>
/// Unary encoding for ε-LDP frequency estimation: the value v becomes a one-hot vector of k bits; each bit is
/// reported independently (1→1 with p, 0→1 with q), so two inputs differ in two bits and the ratio is e^ε.
/// Estimator: f̂_v = (c_v/n − q)/(p − q) (Wang et al. 2017).
/// </summary>
public sealed class UnaryEncoding
{
    /// <summary>Creates the mechanism for <paramref name="categories"/> values at local privacy ε.</summary>
    public UnaryEncoding(int categories, double epsilon, UnaryEncodingVariant variant = UnaryEncodingVariant.Optimized)
    {
        if (categories < 2) throw new ArgumentOutOfRangeException(nameof(categories), categories, "Unary encoding needs at least 2 categories.");
        if (!(epsilon > 0) || double.IsInfinity(epsilon)) throw new ArgumentOutOfRangeException(nameof(epsilon), epsilon, "ε must be a positive finite number.");
        Categories = categories;
        Epsilon = epsilon;
        Variant = variant;
        if (variant == UnaryEncodingVariant.Optimized)
        {
            OneProbability = 0.5;
            ZeroProbability = 1 / (Math.Exp(epsilon) + 1);
        }
        else
        {
            double h = Math.Exp(epsilon / 2);
            OneProbability = h / (h + 1);
            ZeroProbability = 1 / (h + 1);
        }
    }

    /// <summary>k: number of categories (bits per report).</summary>
    public int Categories { get; }

    /// <summary>ε of the local guarantee.</summary>
    public double Epsilon { get; }

    /// <summary>OUE or SUE.</summary>
    public UnaryEncodingVariant Variant { get; }

    /// <summary>p: probability that the true value's bit is reported as 1.</summary>
    public double OneProbability { get; }

    /// <summary>q: probability that any other bit is reported as 1.</summary>
    public double ZeroProbability { get; }

    /// <summary>Writes the randomized bit vector of <paramref name="value"/> into <paramref name="bits"/> (length k).</summary>
    public void Perturb(int value, Span<bool> bits, INoiseSource? source = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(value);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(value, Categories);
        if (bits.Length != Categories) throw new ArgumentException($"Expected {Categories} bits, got {bits.Length}.", nameof(bits));
        source ??= new SecureNoiseSource();
        for (int i = 0; i < bits.Length; i++) bits[i] = source.NextUniform() < (i == value ? OneProbability : ZeroProbability);
    }

    /// <summary>Unbiased frequencies from per-bit counts of 1s over <paramref name="reports"/> reports.</summary>
    public double[] EstimateFrequencies(ReadOnlySpan<long> oneCounts, long reports)
    {
        if (oneCounts.Length != Categories) throw new ArgumentException($"Expected {Categories} counts, got {oneCounts.Length}.", nameof(oneCounts));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(reports);
        var estimate = new double[Categories];
        for (int v = 0; v < Categories; v++)
        {
            if (oneCounts[v] < 0 || oneCounts[v] > reports) throw new ArgumentOutOfRangeException(nameof(oneCounts), oneCounts[v], "A bit count must lie in [0, reports].");
            estimate[v] = ((double)oneCounts[v] / reports - ZeroProbability) / (OneProbability - ZeroProbability);
        }
        return estimate;
    }
}
