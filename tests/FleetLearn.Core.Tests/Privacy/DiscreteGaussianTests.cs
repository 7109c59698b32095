using CsCheck;
using FleetLearn.Core.Privacy;

namespace FleetLearn.Core.Tests.Privacy;

public sealed class DiscreteGaussianTests
{
    /// <summary>Pearson χ² of <paramref name="draws"/> against the pmf ∝ weight(x) on [−w, w] (tails pooled into the ends).</summary>
    private static double ChiSquare(long[] draws, Func<long, double> weight, int w)
    {
        double total = 0;
        for (long x = -10 * w - 50; x <= 10 * w + 50; x++) total += weight(x);
        double chi = 0;
        for (long x = -w; x <= w; x++)
        {
            double p = weight(x) / total;
            if (x == -w) for (long y = -10 * w - 50; y < -w; y++) p += weight(y) / total;
            if (x == w) for (long y = w + 1; y <= 10 * w + 50; y++) p += weight(y) / total;
            long observed = draws.LongCount(d => x == -w ? d <= x : x == w ? d >= x : d == x);
            double expected = p * draws.Length;
            chi += (observed - expected) * (observed - expected) / expected;
        }
        return chi;
    }

    [Theory]
    [InlineData(2.25, 6)]
    [InlineData(0.3, 3)]
    [InlineData(20.0, 12)]
    public void Sample_MatchesDiscreteGaussianPmf(double variance, int w)
    {
        var draws = new long[100_000];
        DiscreteGaussian.Fill(draws, variance, new SeededNoiseSource(7));
        double s2 = DiscreteGaussian.RepresentableVariance(variance);
        double chi = ChiSquare(draws, x => Math.Exp(-x * x / (2 * s2)), w);
        // 2w + 1 cells, 2w degrees of freedom: the 99.9% quantile is below 2w + 6√w + 12 for these w.
        Assert.True(chi < 2 * w + 6 * Math.Sqrt(w) + 12, $"χ² = {chi} with {2 * w} degrees of freedom");
    }

    [Fact]
    public void Fill_LargeVarianceFromCsprng_MeanZeroVarianceSigmaSquared()
    {
        const double sigma = 5000;
        var draws = new long[40_000];
        DiscreteGaussian.Fill(draws, sigma * sigma, new SecureNoiseSource());
        double mean = draws.Average(), variance = draws.Select(d => (d - mean) * (d - mean)).Average();
        Assert.InRange(mean, -6 * sigma / 200, 6 * sigma / 200);
        Assert.InRange(variance / (sigma * sigma), 0.97, 1.03);
    }

    [Fact]
    public void Sample_ZeroVariance_IsZeroAndOutOfRangeRejected()
    {
        Assert.Equal(0, DiscreteGaussian.Sample(0, new SeededNoiseSource(1)));
        Assert.Throws<ArgumentOutOfRangeException>(() => DiscreteGaussian.Sample(-1, new SeededNoiseSource(1)));
        Assert.Throws<ArgumentOutOfRangeException>(() => DiscreteGaussian.Sample(double.NaN, new SeededNoiseSource(1)));
        Assert.Throws<ArgumentOutOfRangeException>(() => DiscreteGaussian.Sample(DiscreteGaussian.MaxVariance * 2, new SeededNoiseSource(1)));
    }

    [Fact]
    public void RepresentableVariance_IsNearestMultipleOfTwoToMinus16()
    {
        Assert.Equal(2.25, DiscreteGaussian.RepresentableVariance(2.25));
        Assert.Equal(Math.Round(0.1 * 65536) / 65536, DiscreteGaussian.RepresentableVariance(0.1));
    }

    [Theory]
    [InlineData(1UL, 2UL, 8)]
    [InlineData(3UL, 1UL, 2)]
    public void SampleDiscreteLaplace_MatchesGeometricPmf(ulong num, ulong den, int w)
    {
        var source = new SeededNoiseSource(11);
        var draws = new long[60_000];
        for (int i = 0; i < draws.Length; i++) draws[i] = DiscreteGaussian.SampleDiscreteLaplace(num, den, source);
        double eps = num / (double)den;
        double chi = ChiSquare(draws, x => Math.Exp(-eps * Math.Abs(x)), w);
        Assert.True(chi < 2 * w + 6 * Math.Sqrt(w) + 12, $"χ² = {chi}");
    }
}

public sealed class ConditionalRoundingTests
{
    [Fact]
    public void Round_EveryAttemptWithinNormBoundAndUnbiased()
    {
        const int d = 500;
        const double gamma = 0.01, clip = 1.0;
        var rng = new FleetLearn.Core.Random.DeterministicRandom(3);
        var x = new float[d];
        for (int i = 0; i < d; i++) x[i] = (float)rng.NextGaussian();
        Privacy_Clip(x, clip);
        double bound2 = ConditionalRounding.SensitivitySquared(clip, gamma, d, Math.Exp(-0.5));
        var z = new long[d];
        var mean = new double[d];
        const int trials = 400;
        var source = new SeededNoiseSource(5);
        for (int t = 0; t < trials; t++)
        {
            ConditionalRounding.Round(x, gamma, bound2, source, z);
            Assert.True(z.Sum(v => (double)v * v) * gamma * gamma <= bound2 * (1 + 1e-12));
            for (int i = 0; i < d; i++) mean[i] += z[i] * gamma / trials;
        }
        // Conditioning barely biases: the average rounded vector is within a few standard errors of x.
        double err = Math.Sqrt(mean.Select((m, i) => (m - x[i]) * (m - x[i])).Sum());
        Assert.True(err < 3 * gamma * Math.Sqrt(d / 4.0 / trials), $"bias {err}");
    }

    [Fact]
    public void Round_InputAboveTheAccountedNorm_FailsLoudly()
    {
        var x = Enumerable.Repeat(1f, 100).ToArray(); // norm 10
        var e = Assert.Throws<InvalidOperationException>(() => ConditionalRounding.Round(x, 0.5, 1.0, new SeededNoiseSource(1), new long[100], maxAttempts: 5));
        Assert.Contains("norm", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void SensitivitySquared_KlsTheorem1Values()
    {
        // min{(C + γ√d)², C² + γ²d/4 + √(2 ln(1/β))·γ·(C + γ√d/2)} with C = 1, γ = 0.01, d = 1000, β = e^{-1/2}.
        Assert.Equal(1.036581138830084, ConditionalRounding.SensitivitySquared(1, 0.01, 1000, Math.Exp(-0.5)), 12);
        Assert.Equal(Math.Pow(1 + 0.01 * Math.Sqrt(1000), 2), ConditionalRounding.SensitivitySquared(1, 0.01, 1000, 0), 12);
    }

    private static void Privacy_Clip(float[] x, double c) => L2Clipping.Clip(x, c);
}

public sealed class DistributedDiscreteGaussianAccountantTests
{
    [Fact]
    public void Tau_KlsTheorem1Values()
    {
        // n = 2, σ/γ = 1/2: τ = 10·exp(−2π²·(1/4)·(1/2)) = 10·e^{−π²/4}.
        Assert.Equal(10 * Math.Exp(-Math.PI * Math.PI / 4), DistributedDiscreteGaussianAccountant.Tau(2, 0.5, 1.0), 12);
        Assert.Equal(182.2045068693297, DistributedDiscreteGaussianAccountant.Tau(100, 0.3, 1.0), 9);
        Assert.Equal(0, DistributedDiscreteGaussianAccountant.Tau(1, 0.3, 1.0));
    }

    [Theory]
    [InlineData(2, 4.146324555320337)]
    [InlineData(8, 16.58529822128135)]
    [InlineData(32, 66.3411928851254)]
    public void ComputeRdp_Unsampled_MatchesEq17(int order, double expected)
    {
        // n = 100 shares of σ = 0.05, C = 1, γ = 0.01, d = 1000, β = e^{-1/2} (values from the formula evaluated independently).
        var rdp = DistributedDiscreteGaussianAccountant.ComputeRdp(1, 0.05, 1, 0.01, Math.Exp(-0.5), 100, 1000, 1, [order]);
        Assert.Equal(expected, rdp[0], 9);
    }

    [Theory]
    [InlineData(2, 0.00012851008160519317)]
    [InlineData(8, 0.0008009779587661978)]
    [InlineData(32, 8.504855539761994)]
    public void SubsampledRdp_MatchesZhuWangBound(int order, double expected)
    {
        double s2 = 1 / 1.21;
        Assert.Equal(expected, DistributedDiscreteGaussianAccountant.SubsampledRdp(order, 0.01, a => a * s2 / 2), 9);
    }

    [Fact]
    public void GetEpsilon_LargeNoiseOnFineGrid_ApproachesContinuousGaussian()
    {
        // With σ/γ large, τ ≈ 0 and Δ₂ ≈ C: the DDG's ε tends to the Gaussian mechanism's with z = √n·σ/C.
        const int n = 50, d = 1000;
        const double sigma = 0.2, clip = 1.0, gamma = 1e-5;
        var ddg = DistributedDiscreteGaussianAccountant.GetEpsilon(1, sigma, clip, gamma, Math.Exp(-0.5), n, d, 100, 1e-5);
        var orders = DistributedDiscreteGaussianAccountant.DefaultOrders;
        var gauss = RdpAccountant.GetPrivacySpent(orders, RdpAccountant.ComputeRdp(1, Math.Sqrt(n) * sigma / clip, 100, orders), 1e-5);
        Assert.True(ddg.Epsilon >= gauss.Epsilon);
        Assert.InRange(ddg.Epsilon / gauss.Epsilon, 1, 1.01);
    }

    [Fact]
    public void GetEpsilon_CoarseGrid_InflatesEpsilon()
    {
        const int n = 50, d = 10_000;
        double fine = DistributedDiscreteGaussianAccountant.GetEpsilon(1, 0.2, 1, 1e-4, Math.Exp(-0.5), n, d, 10, 1e-5).Epsilon;
        double coarse = DistributedDiscreteGaussianAccountant.GetEpsilon(1, 0.2, 1, 0.1, Math.Exp(-0.5), n, d, 10, 1e-5).Epsilon;
        Assert.True(coarse > 1.5 * fine, $"fine {fine}, coarse {coarse}");
    }
}

public sealed class CentralDiscreteGaussianTests
{
    [Fact]
    public void AddOnGrid_NoiseHasRequestedVarianceAndValuesStayOnGrid()
    {
        var values = new float[50_000];
        DiscreteGaussian.AddOnGrid(values, 0.5, 0.5 / 64, new SeededNoiseSource(3));
        double mean = values.Average(v => (double)v), variance = values.Select(v => (v - mean) * (v - mean)).Average();
        Assert.InRange(variance, 0.25 * 0.97, 0.25 * 1.03);
        Assert.All(values.Take(100), v => Assert.Equal(0, Math.IEEERemainder(v, 0.5 / 64), 6));
    }

    [Fact]
    public void DecodeSumWithCentralNoise_SecureSum_AddsNoiseOfSigmaOverN()
    {
        const int n = 4, dim = 4096;
        var pipeline = new FleetLearn.Core.Compression.UpdatePipeline(new FleetLearn.Core.Compression.UpdatePipelineOptions
        {
            Codec = FleetLearn.Core.Compression.CodecSpec.Parse("q16"), Dimension = dim, ClipNorm = 1.0,
            SecureAggregation = FleetLearn.Core.Compression.SecureAggregationMode.Full, CohortSize = n, Noise = NoiseMode.Central,
        });
        var round = pipeline.ForRound(1, 1);
        var sum = new uint[pipeline.SecAggDimension];
        for (int v = 0; v < n; v++)
        {
            var input = round.EncodeSecure(new float[dim], 1, new SeededNoiseSource(1), new SeededNoiseSource((ulong)v), out _);
            for (int i = 0; i < sum.Length; i++) sum[i] += input[i];
        }
        var clean = round.DecodeSum(sum, n).Mean;
        var noisy = round.DecodeSumWithCentralNoise(sum, n, 0.4, new SeededNoiseSource(8)).Mean;
        double variance = clean.Zip(noisy).Select(p => (double)(p.Second - p.First) * (p.Second - p.First)).Average();
        Assert.InRange(variance, 0.01 * 0.93, 0.01 * 1.07); // (0.4 / 4)²
    }
}

public sealed class DiscreteGaussianTableTests
{
    private const double TwoPow128 = 340282366920938463463374607431768211456.0;

    /// <summary>P(|X| ≤ k) of N_Z(0, σ²), computed independently in double (relative error ~1e-15).</summary>
    private static double[] CdfOfMagnitude(double s2, int atoms)
    {
        double z = 1;
        for (int k = 1; k < atoms + 2000; k++) z += 2 * Math.Exp(-(double)k * k / (2 * s2));
        var cdf = new double[atoms];
        double sum = 0;
        for (int k = 0; k < atoms; k++)
        {
            sum += (k == 0 ? 1 : 2) * Math.Exp(-(double)k * k / (2 * s2));
            cdf[k] = sum / z;
        }
        return cdf;
    }

    [Fact]
    public void CumulativeTable_MatchesTheDiscreteGaussianCdf()
    {
        Gen.Double[0.05, 2e5].Sample(variance =>
        {
            var table = DiscreteGaussian.CumulativeProbabilities(variance);
            double s2 = DiscreteGaussian.RepresentableVariance(variance);
            var expected = CdfOfMagnitude(s2, table.Length);
            for (int k = 0; k < table.Length; k++)
                Assert.True(Math.Abs((double)table[k] / TwoPow128 - expected[k]) < 1e-12, $"σ² = {s2}, k = {k}: {(double)table[k] / TwoPow128} against {expected[k]}");
            // The table ends where the atoms left out weigh less than 2^-150: about 15σ.
            double sigma = Math.Sqrt(s2);
            Assert.InRange(table.Length, (int)(14 * sigma) - 2, (int)(16 * sigma) + 2);
            for (int k = 1; k < table.Length; k++) Assert.True(table[k] >= table[k - 1]);
        }, iter: 40);
    }

    [Fact]
    public void Fill_TiesOfTheHighHalfAreDecidedByTheLowHalf()
    {
        const double variance = 9;
        var table = DiscreteGaussian.CumulativeProbabilities(variance);
        foreach (int k in new[] { 0, 3, 7 })
        {
            ulong high = (ulong)(table[k] >> 64), low = (ulong)table[k];
            // U = T[k] exactly: P(|X| ≤ k) does not cover it, so |X| = k + 1; the next word's bit 0 is the sign (1: negative).
            Assert.Equal(-(k + 1), Draw(high, low, 1));
            // U = T[k] − 1: |X| = k (0 takes no sign bit).
            Assert.Equal(k == 0 ? 0 : k, Draw(high, low - 1, 0));
        }

        static long Draw(params ulong[] words)
        {
            var one = new long[1];
            DiscreteGaussian.Fill(one, variance, new WordSource(words));
            return one[0];
        }
    }

    [Fact]
    public void Fill_AgreesInDistributionWithTheExactSampler()
    {
        var table = new long[200_000];
        var exact = new long[200_000];
        DiscreteGaussian.Fill(table, 6.25, new SeededNoiseSource(3));
        DiscreteGaussian.FillExact(exact, 6.25, new SeededNoiseSource(4));
        // Two-sample χ² over |x| ≤ 8 (the rest pooled): 9 cells.
        double chi = 0;
        for (int x = 0; x <= 9; x++)
        {
            long a = table.LongCount(v => x == 9 ? Math.Abs(v) >= 9 : Math.Abs(v) == x);
            long b = exact.LongCount(v => x == 9 ? Math.Abs(v) >= 9 : Math.Abs(v) == x);
            if (a + b > 0) chi += (double)(a - b) * (a - b) / (a + b);
        }
        Assert.True(chi < 30, $"two-sample χ² = {chi} with 9 degrees of freedom");
    }

    [Fact]
    public void CumulativeTable_AboveTheTableLimit_IsRefused()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => DiscreteGaussian.CumulativeProbabilities(DiscreteGaussian.MaxTableVariance * 4));
        Assert.Contains("sampled exactly", e.Message);
        Assert.Empty(DiscreteGaussian.CumulativeProbabilities(0));
    }

    /// <summary>A source whose 64-bit words are the given ones (each as two 32-bit halves of 53-bit uniforms), then zeros.</summary>
    private sealed class WordSource(ulong[] words) : INoiseSource
    {
        private int _half;

        public double NextUniform()
        {
            int i = _half / 2;
            ulong word = i < words.Length ? words[i] : 0;
            ulong half = _half++ % 2 == 0 ? word >> 32 : word & 0xFFFF_FFFF;
            return (half << 21) / 9007199254740992.0;
        }

        public void FillStandardNormal(Span<double> destination) => throw new NotSupportedException();
    }
}
