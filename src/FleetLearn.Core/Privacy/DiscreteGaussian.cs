using System.Numerics;

namespace FleetLearn.Core.Privacy;

/// <summary>
/// Exact sampling of the discrete Gaussian N_Z(0, σ²) and the discrete Laplace (Canonne, Kamath &amp; Steinke 2020,
/// "The Discrete Gaussian for Differential Privacy", Algorithms 1–3) with integer arithmetic only: no floating point
/// touches a draw, so Mironov 2012's least-significant-bit attack has nothing to read.
/// </summary>
/// <remarks>
/// σ² is used as the rational ⌊σ²·2^16⌉ / 2^16 (<see cref="RepresentableVariance"/>); the accountant must use that value,
/// which differs from the requested one by at most 2^-17. Every random bit comes from the <see cref="INoiseSource"/>
/// (whole 64-bit words when it is a <see cref="SecureNoiseSource"/> or <see cref="SeededNoiseSource"/>, else the 53 exact
/// bits of each uniform), so a CSPRNG-backed source gives draws an adversary cannot predict.
/// </remarks>
public static partial class DiscreteGaussian
{
    /// <summary>σ² is represented with this many fractional bits.</summary>
    public const int VarianceFractionBits = 16;

    /// <summary>Largest σ² accepted (2^36, σ = 2^18): keeps every intermediate of the acceptance test within 128 bits.</summary>
    public const double MaxVariance = 68719476736.0;

    /// <summary>The σ² actually sampled for a requested variance: the nearest multiple of 2^-16.</summary>
    public static double RepresentableVariance(double variance) => VarianceNumerator(variance) / (double)(1UL << VarianceFractionBits);

    private static ulong VarianceNumerator(double variance)
    {
        if (!(variance >= 0) || variance > MaxVariance)
            throw new ArgumentOutOfRangeException(nameof(variance), variance, $"The discrete Gaussian variance must be within [0, {MaxVariance}].");
        return (ulong)Math.Round(variance * (1UL << VarianceFractionBits), MidpointRounding.ToEven);
    }

    /// <summary>One draw of N_Z(0, σ²) with σ² = <see cref="RepresentableVariance"/>(<paramref name="variance"/>); 0 when σ² rounds to 0.</summary>
    public static long Sample(double variance, INoiseSource source)
    {
        ArgumentNullException.ThrowIfNull(source);
        var bits = new RandomBits(source);
        return Sample(VarianceNumerator(variance), ref bits);
    }

    /// <summary>
    /// Fills <paramref name="destination"/> with independent draws of N_Z(0, σ²): for σ² ≤ <see cref="MaxTableVariance"/> by
    /// inversion of a 128-bit cumulative table (each draw within <see cref="TableTotalVariationBound"/> = 2^-110 in total
    /// variation of the exact distribution, and about ten times faster), above it by the exact rejection sampler.
    /// </summary>
    public static void Fill(Span<long> destination, double variance, INoiseSource source)
    {
        ArgumentNullException.ThrowIfNull(source);
        ulong a = VarianceNumerator(variance);
        var bits = new RandomBits(source);
        if (a == 0)
        {
            destination.Clear();
            return;
        }
        if (a <= MaxTableVariance * (1UL << VarianceFractionBits))
        {
            var table = TableFor(a);
            for (int i = 0; i < destination.Length; i++) destination[i] = table.Sample(ref bits);
            return;
        }
        for (int i = 0; i < destination.Length; i++) destination[i] = Sample(a, ref bits);
    }

    /// <summary>Fills <paramref name="destination"/> with exact draws of N_Z(0, σ²) by rejection (CKS 2020 Algorithm 3), whatever σ².</summary>
    public static void FillExact(Span<long> destination, double variance, INoiseSource source)
    {
        ArgumentNullException.ThrowIfNull(source);
        ulong a = VarianceNumerator(variance);
        var bits = new RandomBits(source);
        for (int i = 0; i < destination.Length; i++) destination[i] = Sample(a, ref bits);
    }

    /// <summary>
    /// One draw of the discrete Laplace distribution with P(x) ∝ exp(−|x|·<paramref name="epsilonNumerator"/>/<paramref name="epsilonDenominator"/>)
    /// (the two-sided geometric mechanism for a count of sensitivity 1 at ε = num/den).
    /// </summary>
    public static long SampleDiscreteLaplace(ulong epsilonNumerator, ulong epsilonDenominator, INoiseSource source)
    {
        ArgumentNullException.ThrowIfNull(source);
        if (epsilonNumerator == 0 || epsilonDenominator == 0) throw new ArgumentOutOfRangeException(nameof(epsilonNumerator), "ε = num/den must be positive and finite.");
        var bits = new RandomBits(source);
        // Scale s/t = 1/ε: CKS 2020 Algorithm 2 with s = ε numerator, t = ε denominator.
        return DiscreteLaplace(epsilonNumerator, epsilonDenominator, ref bits);
    }

    /// <summary>
    /// Central DP on floats without floating-point noise: each value is rounded at random to the grid γ·Z (unbiased), then
    /// gets γ·N_Z(0, (σ/γ)²). The rounding adds at most γ√d to the L2 sensitivity (account Δ₂ = S + γ√d for sensitivity S);
    /// pick γ ≪ σ (e.g. σ/64) so both the inflation and the grid are negligible.
    /// </summary>
    public static void AddOnGrid(Span<float> values, double stdDev, double granularity, INoiseSource source)
    {
        ArgumentNullException.ThrowIfNull(source);
        if (!(granularity > 0) || !double.IsFinite(granularity)) throw new ArgumentOutOfRangeException(nameof(granularity), granularity, "The grid step must be positive and finite.");
        if (!(stdDev >= 0) || !double.IsFinite(stdDev)) throw new ArgumentOutOfRangeException(nameof(stdDev), stdDev, "The noise standard deviation must be finite and ≥ 0.");
        ulong a = VarianceNumerator(stdDev * stdDev / (granularity * granularity));
        var bits = new RandomBits(source);
        for (int i = 0; i < values.Length; i++)
        {
            double t = values[i] / granularity;
            if (!double.IsFinite(t)) throw new ArgumentException($"Value {i} is not finite.", nameof(values));
            double floor = Math.Floor(t);
            double z = floor + (t > floor && source.NextUniform() < t - floor ? 1 : 0);
            values[i] = (float)((z + Sample(a, ref bits)) * granularity);
        }
    }

    // ---- CKS 2020 Algorithm 3: discrete Gaussian by rejection from the discrete Laplace of scale t = ⌊σ⌋ + 1 -----

    private static long Sample(ulong a, ref RandomBits bits)
    {
        if (a == 0) return 0;
        const ulong b = 1UL << VarianceFractionBits;   // σ² = a/b
        ulong t = ISqrt(a / b) + 1;
        while (true)
        {
            long y = DiscreteLaplace(1, t, ref bits);
            // Accept with probability exp(−(|y| − σ²/t)²/(2σ²)) = exp(−(|y|·b·t − a)² / (2·a·b·t²)).
            UInt128 absY = (ulong)Math.Abs(y);
            UInt128 bt = (UInt128)b * t;
            UInt128 den = (UInt128)2 * a * b * t * t;
            UInt128 num = 0;
            BigInteger? big = null;
            if (absY <= UInt128.MaxValue / bt)
            {
                UInt128 left = absY * bt;
                UInt128 diff = left >= a ? left - a : a - left;
                if (diff <= ulong.MaxValue) num = diff * diff;
                else big = (BigInteger)diff * (BigInteger)diff;
            }
            else
            {
                var diff = (BigInteger)absY * (BigInteger)bt - a;
                big = diff * diff;
            }
            // Far in the tail the square needs more than 128 bits; the exact test then runs on BigInteger.
            if (big is null ? BernoulliExp(num, den, ref bits) : BernoulliExpBig(big.Value, den, ref bits)) return y;
        }
    }

    // ---- CKS 2020 Algorithm 2: discrete Laplace with scale t/s, i.e. P(x) ∝ exp(−|x|·s/t) ---------------------------

    private static long DiscreteLaplace(ulong s, ulong t, ref RandomBits bits)
    {
        while (true)
        {
            bool negative = bits.NextBit();
            ulong magnitude = GeometricExp(s, t, ref bits);
            if (negative && magnitude == 0) continue;
            return negative ? -(long)magnitude : (long)magnitude;
        }
    }

    /// <summary>Geometric with success probability 1 − exp(−s/t): P(k) = (1 − e^{−s/t})·e^{−k·s/t}.</summary>
    private static ulong GeometricExp(ulong s, ulong t, ref RandomBits bits)
    {
        ulong u;
        do u = (ulong)bits.Below(t); while (!BernoulliExp(u, t, ref bits));
        ulong v = 0;
        while (BernoulliExp(1, 1, ref bits)) v++;
        return checked((v * t + u) / s);
    }

    // ---- CKS 2020 Algorithm 1: Bernoulli(exp(−γ)) for rational γ = num/den ≥ 0 --------------------------------------

    private static bool BernoulliExp(UInt128 num, UInt128 den, ref RandomBits bits)
    {
        if (num > den)
        {
            UInt128 whole = num / den;
            for (UInt128 i = 0; i < whole; i++)
                if (!BernoulliExpAtMostOne(1, 1, ref bits)) return false;
            num -= whole * den;
        }
        return BernoulliExpAtMostOne(num, den, ref bits);
    }

    private static bool BernoulliExpBig(BigInteger num, UInt128 den, ref RandomBits bits)
    {
        var whole = BigInteger.DivRem(num, (BigInteger)den, out var rest);
        // Each factor exp(−1) fails with probability 1 − 1/e; the loop ends after a few steps almost surely.
        for (BigInteger i = 0; i < whole; i++)
            if (!BernoulliExpAtMostOne(1, 1, ref bits)) return false;
        return BernoulliExpAtMostOne((UInt128)rest, den, ref bits);
    }

    private static bool BernoulliExpAtMostOne(UInt128 num, UInt128 den, ref RandomBits bits)
    {
        // The common case (σ up to a few thousand) fits 64 bits: same algorithm without 128-bit arithmetic.
        if (den <= SmallLimit) return BernoulliExpAtMostOneSmall((ulong)num, (ulong)den, ref bits);
        // exp(−γ) = P(the first k with Bernoulli(γ/k) = 0 is odd).
        ulong k = 1;
        while (true)
        {
            UInt128 kden = den * k;
            if (bits.Below(kden) >= num) return k % 2 == 1;
            k++;
        }
    }

    private const ulong SmallLimit = 1UL << 55;

    private static bool BernoulliExpAtMostOneSmall(ulong num, ulong den, ref RandomBits bits)
    {
        for (ulong k = 1; ; k++)
        {
            // k·den stays below 2^63 for k < 256; beyond (probability < 1/255!) the 128-bit path continues exactly.
            if (k >= 256) return BernoulliExpTail(num, den, k, ref bits);
            if (bits.BelowSmall(den * k) >= num) return k % 2 == 1;
        }
    }

    private static bool BernoulliExpTail(UInt128 num, UInt128 den, ulong k, ref RandomBits bits)
    {
        while (true)
        {
            if (bits.Below(den * k) >= num) return k % 2 == 1;
            k++;
        }
    }

    private static ulong ISqrt(ulong x)
    {
        ulong r = (ulong)Math.Sqrt(x);
        while (r * r > x) r--;
        while ((r + 1) * (r + 1) <= x) r++;
        return r;
    }

    /// <summary>Exact uniform bits from a noise source.</summary>
    private struct RandomBits(INoiseSource source)
    {
        private readonly INoiseSource _source = source;
        private readonly IUniformBits? _words = source as IUniformBits;
        private ulong _buffer;
        private int _available;

        public ulong NextWord()
        {
            if (_words is not null) return _words.NextUInt64();
            // A uniform on the 2^53 grid carries 53 exact bits; take 32 from each of two draws.
            ulong hi = (ulong)(_source.NextUniform() * 9007199254740992.0) >> 21;
            ulong lo = (ulong)(_source.NextUniform() * 9007199254740992.0) >> 21;
            return hi << 32 | lo;
        }

        public bool NextBit()
        {
            if (_available == 0) { _buffer = NextWord(); _available = 64; }
            bool bit = (_buffer & 1) != 0;
            _buffer >>= 1;
            _available--;
            return bit;
        }

        /// <summary>Uniform in [0, n) for n ≤ 2^63, taking only ⌈log₂ n⌉ bits per try from a reservoir (no modulo bias).</summary>
        public ulong BelowSmall(ulong n)
        {
            if (n <= 1) return 0;
            int width = 64 - BitOperations.LeadingZeroCount(n - 1);
            ulong mask = (1UL << width) - 1;
            while (true)
            {
                ulong x;
                if (_available >= width)
                {
                    x = _buffer & mask;
                    _buffer >>= width;
                    _available -= width;
                }
                else
                {
                    // Combine the reservoir's remaining bits with a fresh word's low bits; the fresh word's rest refills it.
                    ulong fresh = NextWord();
                    int need = width - _available;
                    x = (_buffer | (fresh & ((1UL << need) - 1)) << _available) & mask;
                    _buffer = need == 64 ? 0 : fresh >> need;
                    _available = 64 - need;
                }
                if (x < n) return x;
            }
        }

        /// <summary>Uniform in [0, n) by rejection on the smallest power of two ≥ n (no modulo bias).</summary>
        public UInt128 Below(UInt128 n)
        {
            if (n <= 1) return 0;
            int width = 128 - (int)UInt128.LeadingZeroCount(n - 1);
            while (true)
            {
                UInt128 x = width <= 64 ? NextWord() : (UInt128)NextWord() << 64 | NextWord();
                if (width < 128) x &= (UInt128.One << width) - 1;
                if (x < n) return x;
            }
        }
    }
}
