using System.Collections.Concurrent;
using System.Numerics;

namespace FleetLearn.Core.Privacy;

public static partial class DiscreteGaussian
{
    /// <summary>Largest σ² sampled from a cumulative table by <see cref="Fill"/> (σ = 4096: at most 63,000 entries, 1 MB).</summary>
    public const double MaxTableVariance = 4096.0 * 4096.0;

    /// <summary>Fractional bits of each cumulative probability in the table: each atom is off by less than 2^-128.</summary>
    public const int TableBits = 128;

    /// <summary>
    /// An upper bound on the total-variation distance between one table draw and N_Z(0, σ²) for σ² ≤
    /// <see cref="MaxTableVariance"/>: the table's rounding (&lt; 2^-128 per atom, at most 2^16 atoms) plus the tail it
    /// omits (&lt; 2^-150). <see cref="Fill"/>'s n draws are within n times this of exact draws (at most 2^-62 for 2^48 draws,
    /// more than a vehicle makes in its life), which adds at most that much to the δ of every (ε, δ) guarantee.
    /// </summary>
    public const double TableTotalVariationBound = 1.0 / (1UL << 63) / (1UL << 47); // 2^-110

    private static readonly ConcurrentDictionary<ulong, CumulativeTable> Tables = new();

    /// <summary>
    /// The table <see cref="Fill"/> inverts for σ² = <see cref="RepresentableVariance"/>(<paramref name="variance"/>):
    /// entry k is ⌊2^128 · P(|X| ≤ k)⌋ for k = 0 … K − 1 (|X| = K takes the rest), for inspection and tests.
    /// </summary>
    public static UInt128[] CumulativeProbabilities(double variance)
    {
        ulong a = VarianceNumerator(variance);
        if (a == 0) return [];
        if (a > MaxTableVariance * (1UL << VarianceFractionBits))
            throw new ArgumentOutOfRangeException(nameof(variance), variance, $"Variances above {MaxTableVariance} are sampled exactly, without a table.");
        return TableFor(a).Entries();
    }

    /// <summary>The table of N_Z(0, a/2^16), built once per variance (a round's vehicles share one).</summary>
    private static CumulativeTable TableFor(ulong a)
    {
        if (Tables.TryGetValue(a, out var table)) return table;
        if (Tables.Count >= 32) Tables.Clear(); // a run uses a handful of variances; never grow without bound
        return Tables.GetOrAdd(a, static v => CumulativeTable.Build(v));
    }

    /// <summary>
    /// Inversion sampling of N_Z(0, σ²) from a table of P(|X| ≤ k) held to 128 bits, computed with integer arithmetic
    /// only (BigInteger fixed point, 256 working bits): no floating point touches a draw or the table. A draw takes one
    /// 64-bit word, a guide table by its top 10 bits and a binary search of the high halves within that bucket; the low halves and a second word are needed only on a tie of
    /// the high ones (probability below 2^-48), and the sign takes one more bit.
    /// </summary>
    private sealed class CumulativeTable
    {
        private const int WorkingBits = 256;
        private readonly ulong[] _high;   // T[k] = ⌊2^128 · P(|X| ≤ k)⌋ for k = 0 … K − 1; |X| = K above the last
        private readonly ulong[] _low;
        private readonly int[] _guide;    // _guide[b] = the first k with T[k].high ≥ b · 2^(64 − GuideBits); _guide[2^GuideBits] = K
        private const int GuideBits = 10;

        private CumulativeTable(ulong[] high, ulong[] low)
        {
            _high = high;
            _low = low;
            _guide = new int[(1 << GuideBits) + 1];
            for (int b = 0, k = 0; b <= 1 << GuideBits; b++)
            {
                if (b == 1 << GuideBits) k = high.Length;
                else while (k < high.Length && high[k] < (ulong)b << (64 - GuideBits)) k++;
                _guide[b] = k;
            }
        }

        /// <summary>Atoms |x| = 0 … K in the table.</summary>
        public int Atoms => _high.Length + 1;

        public static CumulativeTable Build(ulong a)
        {
            // σ² = a / 2^16; w_k = exp(−k²/(2σ²)) = r^(k²) with r = exp(−2^15 / a), built as w_{k+1} = w_k · r^(2k+1).
            BigInteger one = BigInteger.One << WorkingBits;
            BigInteger r = ExpNegative(1UL << 15, a);
            BigInteger r2 = r * r >> WorkingBits;
            BigInteger stop = BigInteger.One << (WorkingBits - 170); // atoms below 2^-170 of w_0 are left out
            var cumulative = new List<BigInteger> { one };           // w_0 = 1; then w_0 + 2Σ w_j
            BigInteger w = one, step = r, sum = one;
            while (true)
            {
                w = w * step >> WorkingBits;
                step = step * r2 >> WorkingBits;
                if (w < stop) break;
                sum += 2 * w;
                cumulative.Add(sum);
                if (cumulative.Count > 1 << 17) throw new InvalidOperationException("The discrete Gaussian table would exceed 2^17 atoms.");
            }
            // P(|X| ≤ k) = cumulative[k] / sum, rounded down to 128 bits; the last atom takes the rest.
            int k = cumulative.Count - 1;
            var high = new ulong[k];
            var low = new ulong[k];
            for (int i = 0; i < k; i++)
            {
                var t = (UInt128)((cumulative[i] << TableBits) / sum);
                high[i] = (ulong)(t >> 64);
                low[i] = (ulong)t;
            }
            return new CumulativeTable(high, low);
        }

        /// <summary>⌊2^256 · exp(−p/q)⌋ within a few units: Taylor series of exp(−y) for y = p/(q·2^j) &lt; 1/2, then j squarings.</summary>
        private static BigInteger ExpNegative(ulong p, ulong q)
        {
            const int guard = 64;
            int bits = WorkingBits + guard;
            int j = 0;
            while ((BigInteger)p * 2 >= (BigInteger)q << j) j++;      // p / (q·2^j) < 1/2
            BigInteger denominator = (BigInteger)q << j;
            BigInteger term = BigInteger.One << bits, sum = term;
            for (int n = 1; !term.IsZero; n++)
            {
                term = term * p / (denominator * n);
                sum += n % 2 == 1 ? -term : term;
            }
            for (int i = 0; i < j; i++) sum = sum * sum >> bits;        // relative error at most doubles per squaring: 2^(j−64) units
            return sum >> guard;
        }

        public UInt128[] Entries()
        {
            var entries = new UInt128[_high.Length];
            for (int k = 0; k < entries.Length; k++) entries[k] = (UInt128)_high[k] << 64 | _low[k];
            return entries;
        }

        public long Sample(ref RandomBits bits)
        {
            ulong u = bits.NextWord();
            // The first k with T[k].high ≥ u (below it every T[k] < U); the guide narrows it to u's bucket.
            int bucket = (int)(u >> (64 - GuideBits));
            int lo = _guide[bucket], hi = _guide[bucket + 1];
            while (lo < hi)
            {
                int mid = (lo + hi) >>> 1;
                if (_high[mid] < u) lo = mid + 1;
                else hi = mid;
            }
            // On a tie of the high halves the low halves decide (U's low half drawn only now).
            if (lo < _high.Length && _high[lo] == u)
            {
                ulong v = bits.NextWord();
                while (lo < _high.Length && _high[lo] == u && _low[lo] <= v) lo++;
            }
            if (lo == 0) return 0;
            return bits.NextBit() ? -(long)lo : lo;
        }
    }
}
