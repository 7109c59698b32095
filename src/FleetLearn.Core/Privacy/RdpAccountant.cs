namespace FleetLearn.Core.Privacy;

/// <summary>How Rényi-DP is converted into (ε, δ)-DP.</summary>
public enum RdpConversion
{
    /// <summary>Balle et al. 2020 ("Hypothesis testing interpretations and Rényi DP"), Thm 21, as in Opacus and TF-Privacy:
    /// ε = rdp(α) + log((α−1)/α) − (log δ + log α)/(α−1).</summary>
    Improved,

    /// <summary>Mironov 2017, Prop. 3: ε = rdp(α) − log δ/(α−1).</summary>
    Classic,
}

/// <summary>(ε, δ) guarantee with the Rényi order that attained it.</summary>
public readonly record struct PrivacySpent(double Epsilon, double Delta, double Order);

/// <summary>
/// Rényi-DP accountant for the Poisson-sampled Gaussian mechanism (Mironov 2017, "Rényi Differential
/// Privacy"; Mironov, Talwar, Zhang 2019, "Rényi Differential Privacy of the Sampled Gaussian Mechanism"),
/// a port of TF-Privacy's <c>rdp_accountant</c> (the integer-order closed form and the two-series
/// expression for fractional orders, both in log space).
/// </summary>
/// <remarks>
/// One step = one round of DP-FedAvg: each unit (vehicle) is included independently with probability
/// <c>q</c>, the sum of the clipped updates (L2 sensitivity C) gets N(0, σ²C²). T rounds compose by adding
/// RDP: rdp_T(α) = T·rdp_1(α).
/// </remarks>
public static class RdpAccountant
{
    private static readonly double[] s_defaultOrders = BuildDefaultOrders();

    /// <summary>Opacus's default orders (1.1, 1.2 … 10.9, 12 … 63) plus 64, 128, 256, 512 for small-ε, large-σ regimes.</summary>
    public static IReadOnlyList<double> DefaultOrders => s_defaultOrders;

    private static double[] BuildDefaultOrders()
    {
        var orders = new List<double>();
        for (int i = 1; i < 100; i++) orders.Add(1.0 + i / 10.0); // 1.1 … 10.9 (Opacus: [1 + x / 10.0 for x in range(1, 100)])
        for (int a = 12; a < 64; a++) orders.Add(a);              // 12 … 63
        orders.AddRange([64, 128, 256, 512]);
        return [.. orders];
    }

    /// <summary>RDP of <paramref name="steps"/> compositions of the sampled Gaussian mechanism at one order α.</summary>
    /// <param name="q">Sampling rate in [0, 1] (Poisson sampling).</param>
    /// <param name="noiseMultiplier">σ: noise standard deviation divided by the L2 sensitivity.</param>
    /// <param name="steps">Number of compositions (rounds).</param>
    /// <param name="order">Rényi order α &gt; 1.</param>
    public static double ComputeRdp(double q, double noiseMultiplier, long steps, double order)
    {
        Validate(q, noiseMultiplier, steps);
        if (!(order > 1.0)) throw new ArgumentOutOfRangeException(nameof(order), order, "Rényi orders must be > 1.");
        return RdpOneStep(q, noiseMultiplier, order) * steps;
    }

    /// <summary>RDP at each order (TF-Privacy's <c>compute_rdp</c>).</summary>
    public static double[] ComputeRdp(double q, double noiseMultiplier, long steps, IReadOnlyList<double> orders)
    {
        ArgumentNullException.ThrowIfNull(orders);
        var rdp = new double[orders.Count];
        for (int i = 0; i < rdp.Length; i++) rdp[i] = ComputeRdp(q, noiseMultiplier, steps, orders[i]);
        return rdp;
    }

    /// <summary>Smallest ε at <paramref name="delta"/> over the given orders for an RDP curve (TF-Privacy's <c>compute_eps</c>).</summary>
    public static PrivacySpent GetPrivacySpent(IReadOnlyList<double> orders, IReadOnlyList<double> rdp, double delta, RdpConversion conversion = RdpConversion.Improved)
    {
        ArgumentNullException.ThrowIfNull(orders);
        ArgumentNullException.ThrowIfNull(rdp);
        if (orders.Count != rdp.Count || orders.Count == 0)
            throw new ArgumentException($"Need one RDP value per order; got {orders.Count} orders and {rdp.Count} values.", nameof(rdp));
        if (!(delta > 0 && delta < 1)) throw new ArgumentOutOfRangeException(nameof(delta), delta, "δ must lie in (0, 1).");
        double bestEps = double.PositiveInfinity, bestOrder = orders[0];
        double logDelta = Math.Log(delta);
        for (int i = 0; i < orders.Count; i++)
        {
            double a = orders[i], r = rdp[i];
            if (!(a > 1)) throw new ArgumentOutOfRangeException(nameof(orders), a, "Rényi orders must be > 1.");
            if (r < 0 || double.IsNaN(r)) throw new ArgumentOutOfRangeException(nameof(rdp), r, "RDP values must be ≥ 0.");
            double eps;
            if (conversion == RdpConversion.Classic)
            {
                eps = r - logDelta / (a - 1);
            }
            else if (delta * delta + SpecialFunctions.Expm1(-r) >= 0)
            {
                // δ ≥ sqrt(1 − e^(−KL)) bounds the total-variation distance directly (TF-Privacy): ε = 0.
                eps = 0;
            }
            else if (a > 1.01)
            {
                // Balle et al. 2020, Thm 21 (TF-Privacy's form: log1p(−1/α) = log((α−1)/α)).
                eps = r + SpecialFunctions.Log1p(-1.0 / a) - (logDelta + Math.Log(a)) / (a - 1);
            }
            else
            {
                // The improved bound is numerically unstable this close to α = 1 (TF-Privacy returns ∞ too).
                eps = double.PositiveInfinity;
            }
            if (eps < bestEps)
            {
                bestEps = eps;
                bestOrder = a;
            }
        }
        return new PrivacySpent(Math.Max(0, bestEps), delta, bestOrder);
    }

    /// <summary>(ε, δ) after <paramref name="steps"/> rounds of the sampled Gaussian mechanism.</summary>
    public static PrivacySpent GetEpsilon(double q, double noiseMultiplier, long steps, double delta,
        IReadOnlyList<double>? orders = null, RdpConversion conversion = RdpConversion.Improved)
    {
        orders ??= DefaultOrders;
        return GetPrivacySpent(orders, ComputeRdp(q, noiseMultiplier, steps, orders), delta, conversion);
    }

    /// <summary>
    /// Smallest noise multiplier σ (to ≤ 1e-7 relative) whose ε after <paramref name="steps"/> rounds is at most
    /// <paramref name="targetEpsilon"/>; the returned σ always satisfies the target (bisection keeps the upper end).
    /// </summary>
    public static double GetNoiseMultiplier(double q, double targetEpsilon, long steps, double delta,
        IReadOnlyList<double>? orders = null, RdpConversion conversion = RdpConversion.Improved)
    {
        if (!(targetEpsilon > 0) || double.IsInfinity(targetEpsilon))
            throw new ArgumentOutOfRangeException(nameof(targetEpsilon), targetEpsilon, "The target ε must be a positive finite number.");
        Validate(q, 1.0, steps);
        if (!(delta > 0 && delta < 1)) throw new ArgumentOutOfRangeException(nameof(delta), delta, "δ must lie in (0, 1).");
        orders ??= DefaultOrders;

        double Eps(double sigma) => GetEpsilon(q, sigma, steps, delta, orders, conversion).Epsilon;

        double hi = 1.0;
        while (Eps(hi) > targetEpsilon)
        {
            hi *= 2;
            if (hi > 1e12) throw new ArgumentException($"No noise multiplier below 1e12 reaches ε = {targetEpsilon} with these orders; add larger orders or relax the target.");
        }
        double lo = hi / 2;
        while (Eps(lo) <= targetEpsilon)
        {
            hi = lo;
            lo /= 2;
            if (lo < 1e-6) return hi; // ε is met with (almost) no noise: the target is not binding.
        }
        // Invariant: Eps(lo) > target ≥ Eps(hi).
        while ((hi - lo) > 1e-7 * hi)
        {
            double mid = 0.5 * (lo + hi);
            if (Eps(mid) <= targetEpsilon) hi = mid; else lo = mid;
        }
        return hi;
    }

    private static void Validate(double q, double noiseMultiplier, long steps)
    {
        if (!(q >= 0 && q <= 1)) throw new ArgumentOutOfRangeException(nameof(q), q, "The sampling rate q must lie in [0, 1].");
        if (!(noiseMultiplier > 0) || double.IsInfinity(noiseMultiplier))
            throw new ArgumentOutOfRangeException(nameof(noiseMultiplier), noiseMultiplier, "The noise multiplier σ must be a positive finite number.");
        ArgumentOutOfRangeException.ThrowIfNegative(steps);
    }

    private static double RdpOneStep(double q, double sigma, double alpha)
    {
        if (q == 0) return 0;
        if (q == 1.0) return alpha / (2 * sigma * sigma);
        if (double.IsPositiveInfinity(alpha)) return double.PositiveInfinity;
        double logA = alpha == Math.Floor(alpha) && alpha < int.MaxValue
            ? LogAInt(q, sigma, (int)alpha)
            : LogAFrac(q, sigma, alpha);
        return logA / (alpha - 1);
    }

    // log A_α for integer α (MTZ 2019, eq. for integer orders): A = Σ_i C(α,i) (1−q)^(α−i) q^i exp((i²−i)/(2σ²)).
    private static double LogAInt(double q, double sigma, int alpha)
    {
        double logA = double.NegativeInfinity;
        double logQ = Math.Log(q), log1mQ = SpecialFunctions.Log1p(-q);
        double logBinom = 0; // log C(α, 0)
        for (int i = 0; i <= alpha; i++)
        {
            if (i > 0) logBinom += Math.Log(alpha - i + 1) - Math.Log(i);
            double s = logBinom + i * logQ + (alpha - i) * log1mQ + ((double)i * i - i) / (2 * sigma * sigma);
            logA = SpecialFunctions.LogAdd(logA, s);
        }
        return logA;
    }

    // log A_α for fractional α: the two series of MTZ 2019 (Section 3.3), as TF-Privacy's _compute_log_a_frac.
    private static double LogAFrac(double q, double sigma, double alpha)
    {
        double logA0 = double.NegativeInfinity, logA1 = double.NegativeInfinity;
        double z0 = sigma * sigma * Math.Log(1 / q - 1) + 0.5;
        double logQ = Math.Log(q), log1mQ = SpecialFunctions.Log1p(-q);
        double sqrt2Sigma = Math.Sqrt(2) * sigma;
        double logHalf = Math.Log(0.5);
        double logAbsCoef = 0; // log|C(α, 0)|
        int sign = 1;
        for (int i = 0; ; i++)
        {
            if (i > 0)
            {
                // C(α, i) = C(α, i−1)·(α − i + 1)/i
                double factor = alpha - i + 1;
                logAbsCoef += Math.Log(Math.Abs(factor)) - Math.Log(i);
                if (factor < 0) sign = -sign;
            }
            double j = alpha - i;
            double logT0 = logAbsCoef + i * logQ + j * log1mQ;
            double logT1 = logAbsCoef + j * logQ + i * log1mQ;
            double logE0 = logHalf + SpecialFunctions.LogErfc((i - z0) / sqrt2Sigma);
            double logE1 = logHalf + SpecialFunctions.LogErfc((z0 - j) / sqrt2Sigma);
            double logS0 = logT0 + ((double)i * i - i) / (2 * sigma * sigma) + logE0;
            double logS1 = logT1 + (j * j - j) / (2 * sigma * sigma) + logE1;
            if (sign > 0)
            {
                logA0 = SpecialFunctions.LogAdd(logA0, logS0);
                logA1 = SpecialFunctions.LogAdd(logA1, logS1);
            }
            else
            {
                logA0 = SpecialFunctions.LogSub(logA0, logS0);
                logA1 = SpecialFunctions.LogSub(logA1, logS1);
            }
            if (Math.Max(logS0, logS1) < -30) break;
            if (i > 10_000_000) throw new ArithmeticException($"The fractional-order RDP series did not converge (q = {q}, σ = {sigma}, α = {alpha}).");
        }
        return SpecialFunctions.LogAdd(logA0, logA1);
    }
}
