namespace FleetLearn.Core.Privacy;

/// <summary>
/// Conditional randomized rounding to the integer grid of granularity γ (Kairouz, Liu &amp; Steinke 2021, "The Distributed
/// Discrete Gaussian Mechanism for Federated Learning with Secure Aggregation", §4 and Theorem 1): round every coordinate
/// of x/γ up or down with probability equal to its fractional part, and start again until the rounded vector's L2 norm
/// is within the public bound Δ₂/γ, so the sensitivity the accountant uses holds for what is released.
/// </summary>
public static class ConditionalRounding
{
    /// <summary>
    /// Δ₂² of KLS 2021 Theorem 1: min{(C + γ√d)², C² + γ²d/4 + √(2 ln(1/β))·γ·(C + γ√d/2)} — the squared L2 norm every
    /// rounded vector of norm ≤ C is conditioned to (β = 0: the first term alone, no retries needed).
    /// </summary>
    public static double SensitivitySquared(double clipNorm, double gamma, int dimension, double beta)
    {
        if (!(clipNorm >= 0) || !(gamma > 0) || dimension < 1 || !(beta >= 0 && beta < 1))
            throw new ArgumentOutOfRangeException(nameof(clipNorm), $"Need C ≥ 0, γ > 0, d ≥ 1, β ∈ [0, 1); got C = {clipNorm}, γ = {gamma}, d = {dimension}, β = {beta}.");
        double sd = Math.Sqrt(dimension);
        double always = Math.Pow(clipNorm + gamma * sd, 2);
        if (beta == 0) return always;
        double conditioned = clipNorm * clipNorm + 0.25 * gamma * gamma * dimension
            + Math.Sqrt(2 * Math.Log(1 / beta)) * gamma * (clipNorm + 0.5 * gamma * sd);
        return Math.Min(always, conditioned);
    }

    /// <summary>
    /// Rounds <paramref name="values"/>/γ to integers in <paramref name="destination"/>, repeating until the squared norm is at
    /// most <paramref name="boundSquared"/>/γ²; returns the number of attempts. Each attempt succeeds with probability ≥ 1 − β
    /// when ‖values‖ ≤ C (KLS 2021 Lemma 23), so the cap is never reached by an honest input.
    /// </summary>
    public static int Round(ReadOnlySpan<float> values, double gamma, double boundSquared, INoiseSource random, Span<long> destination, int maxAttempts = 10_000)
    {
        ArgumentNullException.ThrowIfNull(random);
        if (!(gamma > 0) || !double.IsFinite(gamma)) throw new ArgumentOutOfRangeException(nameof(gamma), gamma, "The granularity γ must be positive and finite.");
        if (destination.Length != values.Length) throw new ArgumentException("One integer per value is required.", nameof(destination));
        double limit = boundSquared / (gamma * gamma);
        for (int attempt = 1; attempt <= maxAttempts; attempt++)
        {
            double norm2 = 0;
            for (int i = 0; i < values.Length; i++)
            {
                double t = values[i] / gamma;
                double floor = Math.Floor(t);
                long z = (long)floor;
                if (t > floor && random.NextUniform() < t - floor) z++;
                destination[i] = z;
                norm2 += (double)z * z;
            }
            if (norm2 <= limit) return attempt;
        }
        throw new InvalidOperationException($"Conditional randomized rounding failed {maxAttempts} times: the input's norm exceeds the bound √{boundSquared} the round was accounted for.");
    }
}

/// <summary>
/// Rényi-DP accountant for the (sampled) distributed discrete Gaussian mechanism: n vehicles each add N_Z(0, σ²/γ²) on
/// the integer grid of granularity γ after conditional rounding (KLS 2021 Theorem 1 and Proposition 14 / Eq. 17, as in
/// the paper's accounting code), Poisson subsampling by Zhu &amp; Wang 2019 ("Poisson Subsampled Rényi Differential
/// Privacy") Theorem 5, integer orders.
/// </summary>
/// <remarks>
/// Unlike the continuous Gaussian, the sum of n discrete Gaussians is not a discrete Gaussian; τ bounds the gap and
/// inflates ε, most when σ/γ is small. The sensitivity is the rounded one (<see cref="ConditionalRounding.SensitivitySquared"/>),
/// not C: rounding can lengthen a vector. The simplified RDP omits the L1 term, as the paper's code does.
/// </remarks>
public static class DistributedDiscreteGaussianAccountant
{
    /// <summary>Integer orders the paper's code uses: 2..20, 22, 24, 28, 32, 64, 128, 256.</summary>
    public static IReadOnlyList<double> DefaultOrders { get; } =
        [.. Enumerable.Range(2, 19).Select(i => (double)i), 22, 24, 28, 32, 64, 128, 256];

    /// <summary>τ = 10·Σ_{k=1}^{n−1} exp(−2π²(σ²/γ²)·k/(k+1)) (KLS 2021 Theorem 1), σ the per-vehicle standard deviation in real units.</summary>
    public static double Tau(int vehicles, double localStdDev, double gamma)
    {
        if (vehicles < 1) throw new ArgumentOutOfRangeException(nameof(vehicles), vehicles, "At least one vehicle adds noise.");
        double v = localStdDev * localStdDev / (gamma * gamma);
        double tau = 0;
        for (int k = 1; k < vehicles; k++)
        {
            double term = Math.Exp(-2 * Math.PI * Math.PI * v * k / (k + 1));
            tau += term;
            if (term < 1e-300) { tau += term * (vehicles - 1 - k); break; } // the terms only shrink in k's factor k/(k+1) ≥ 1/2
        }
        return 10 * tau;
    }

    /// <summary>RDP of one unsampled release at order α: min{α·s²/2 + τd, (α/2)(s + τ√d)²} with s = Δ₂/(√n·σ) (Eq. 17).</summary>
    public static double Rdp(double order, double l2Scale, double tau, int dimension)
    {
        double first = order * l2Scale * l2Scale / 2 + tau * dimension;
        double second = order / 2 * Math.Pow(l2Scale + Math.Sqrt(dimension) * tau, 2);
        return Math.Min(first, second);
    }

    /// <summary>
    /// RDP curve of <paramref name="steps"/> rounds: vehicles sampled with probability <paramref name="q"/>, <paramref name="vehicles"/>
    /// noise shares of standard deviation <paramref name="localStdDev"/> each (real units), clip C, granularity γ, rounding β, dimension d.
    /// </summary>
    public static double[] ComputeRdp(double q, double localStdDev, double clipNorm, double gamma, double beta, int vehicles, int dimension, long steps, IReadOnlyList<double> orders)
    {
        ArgumentNullException.ThrowIfNull(orders);
        if (!(q > 0 && q <= 1)) throw new ArgumentOutOfRangeException(nameof(q), q, "The sampling rate must be within (0, 1].");
        if (!(localStdDev > 0)) throw new ArgumentOutOfRangeException(nameof(localStdDev), localStdDev, "The noise standard deviation must be positive.");
        double variance = localStdDev * localStdDev;
        double s2 = ConditionalRounding.SensitivitySquared(clipNorm, gamma, dimension, beta) / (vehicles * variance);
        double scale = Math.Sqrt(s2);
        double tau = Tau(vehicles, localStdDev, gamma);
        double Eps(int order) => Rdp(order, scale, tau, dimension);
        var rdp = new double[orders.Count];
        for (int i = 0; i < rdp.Length; i++)
        {
            int alpha = (int)orders[i];
            if (alpha < 2 || alpha != orders[i]) throw new ArgumentException($"Order {orders[i]} is not an integer ≥ 2.", nameof(orders));
            rdp[i] = steps * (q == 1 ? Eps(alpha) : Math.Min(SubsampledRdp(alpha, q, Eps), Eps(alpha)));
        }
        return rdp;
    }

    /// <summary>(ε, δ) after <paramref name="steps"/> rounds (RDP → (ε, δ) as <see cref="RdpAccountant.GetPrivacySpent"/>).</summary>
    public static PrivacySpent GetEpsilon(double q, double localStdDev, double clipNorm, double gamma, double beta, int vehicles, int dimension, long steps, double delta)
    {
        var orders = DefaultOrders;
        return RdpAccountant.GetPrivacySpent(orders, ComputeRdp(q, localStdDev, clipNorm, gamma, beta, vehicles, dimension, steps, orders), delta);
    }

    /// <summary>Zhu &amp; Wang 2019's upper bound for Poisson subsampling (Theorem 6 of the ICML version; "Theorem 5" in the KLS code): RDP of the Poisson-subsampled mechanism at integer order α from its RDP function ε(·).</summary>
    public static double SubsampledRdp(int alpha, double q, Func<int, double> eps)
    {
        ArgumentNullException.ThrowIfNull(eps);
        if (alpha < 2) throw new ArgumentOutOfRangeException(nameof(alpha), alpha, "α must be an integer ≥ 2.");
        double log1q = Math.Log(1 - q), logq = Math.Log(q);
        // (1−q)^{α−1}(αq − q + 1) + C(α,2) q² (1−q)^{α−2} e^{ε(2)} + 3 Σ_{l≥3} C(α,l) q^l (1−q)^{α−l} e^{(l−1)ε(l)}, in log space.
        var terms = new List<double>(alpha)
        {
            (alpha - 1) * log1q + Math.Log(alpha * q - q + 1),
            eps(2) + LogBinomial(alpha, 2) + 2 * logq + (alpha - 2) * log1q,
        };
        for (int l = 3; l <= alpha; l++)
            terms.Add(Math.Log(3) + (l - 1) * eps(l) + LogBinomial(alpha, l) + (alpha - l) * log1q + l * logq);
        double max = terms.Max();
        double sum = terms.Sum(t => Math.Exp(t - max));
        return (max + Math.Log(sum)) / (alpha - 1);
    }

    private static double LogBinomial(int n, int k)
    {
        double sum = 0;
        for (int i = 1; i <= k; i++) sum += Math.Log((double)(n - k + i) / i);
        return sum;
    }
}
