using CsCheck;
using FleetLearn.Core.Privacy;

namespace FleetLearn.Core.Tests.Privacy;

public sealed class RandomizedResponseTests
{
    private static readonly double[] Truth = [0.4, 0.3, 0.15, 0.1, 0.05];

    private static int[] Population(int n)
    {
        // Exact population with the Truth frequencies (n multiple of 20).
        var values = new int[n];
        int i = 0;
        for (int v = 0; v < Truth.Length; v++)
            for (int c = 0; c < (int)Math.Round(Truth[v] * n); c++) values[i++] = v;
        return values;
    }

    private static double[] SimulateRr(RandomizedResponse rr, int[] population, INoiseSource source)
    {
        var counts = new long[rr.Categories];
        foreach (var v in population) counts[rr.Perturb(v, source)]++;
        return rr.EstimateFrequencies(counts);
    }

    private static double[] SimulateUe(UnaryEncoding ue, int[] population, INoiseSource source)
    {
        var counts = new long[ue.Categories];
        Span<bool> bits = stackalloc bool[ue.Categories];
        foreach (var v in population)
        {
            ue.Perturb(v, bits, source);
            for (int i = 0; i < bits.Length; i++) if (bits[i]) counts[i]++;
        }
        return ue.EstimateFrequencies(counts, population.Length);
    }

    [Fact]
    public void RandomizedResponse_Probabilities_RatioIsExpEpsilon()
    {
        var rr = new RandomizedResponse(5, 1.3);
        Assert.Equal(Math.Exp(1.3), rr.KeepProbability / rr.OtherProbability, 12);
        Assert.Equal(1.0, rr.KeepProbability + 4 * rr.OtherProbability, 14);
    }

    [Theory]
    [InlineData(UnaryEncodingVariant.Optimized)]
    [InlineData(UnaryEncodingVariant.Symmetric)]
    public void UnaryEncoding_Probabilities_OddsRatioIsExpEpsilon(UnaryEncodingVariant variant)
    {
        var ue = new UnaryEncoding(8, 2.0, variant);
        double p = ue.OneProbability, q = ue.ZeroProbability;
        Assert.Equal(Math.Exp(2.0), p * (1 - q) / ((1 - p) * q), 12);
    }

    [Fact]
    public void RandomizedResponseEstimate_ExpectedCounts_InvertsExactly()
    {
        // Property: feeding the expected report distribution returns the true frequencies.
        Gen.Select(Gen.Int[2, 30], Gen.Double[0.05, 6.0], Gen.Int[0, 1000]).Sample((k, eps, seed) =>
        {
            var rr = new RandomizedResponse(k, eps);
            var random = new Core.Random.DeterministicRandom((ulong)seed);
            var f = new double[k];
            for (int v = 0; v < k; v++) f[v] = random.NextDouble();
            double total = f.Sum();
            const long n = 1L << 40;
            var counts = new long[k];
            for (int v = 0; v < k; v++)
            {
                f[v] /= total;
                counts[v] = (long)Math.Round(n * (f[v] * rr.KeepProbability + (1 - f[v]) * rr.OtherProbability));
            }
            var estimate = rr.EstimateFrequencies(counts);
            for (int v = 0; v < k; v++) Assert.Equal(f[v], estimate[v], 6);
        });
    }

    [Fact]
    public void RandomizedResponse_PerturbAnyValue_StaysInRange()
    {
        Gen.Select(Gen.Int[2, 50], Gen.Double[0.01, 8.0], Gen.Int[0, 49]).Sample((k, eps, value) =>
        {
            int v = value % k;
            int report = new RandomizedResponse(k, eps).Perturb(v, new SeededNoiseSource((ulong)(k * 100 + value)));
            Assert.InRange(report, 0, k - 1);
        });
    }

    [Fact]
    public void RandomizedResponseEstimator_ManyPopulations_IsUnbiased()
    {
        var rr = new RandomizedResponse(5, 1.0);
        var population = Population(2000);
        var source = new SeededNoiseSource(1);
        const int trials = 400;
        var mean = new double[5];
        for (int t = 0; t < trials; t++)
        {
            var e = SimulateRr(rr, population, source);
            for (int v = 0; v < 5; v++) mean[v] += e[v] / trials;
        }
        for (int v = 0; v < 5; v++)
        {
            double se = Math.Sqrt(rr.EstimateVariance(Truth[v], population.Length) / trials);
            Assert.True(Math.Abs(mean[v] - Truth[v]) <= 4.5 * se, $"category {v}: mean {mean[v]} vs {Truth[v]} (SE {se})");
        }
    }

    [Theory]
    [InlineData(UnaryEncodingVariant.Optimized)]
    [InlineData(UnaryEncodingVariant.Symmetric)]
    public void UnaryEncodingEstimator_ManyPopulations_IsUnbiased(UnaryEncodingVariant variant)
    {
        var ue = new UnaryEncoding(5, 1.0, variant);
        var population = Population(2000);
        var source = new SeededNoiseSource(2);
        const int trials = 300;
        var mean = new double[5];
        for (int t = 0; t < trials; t++)
        {
            var e = SimulateUe(ue, population, source);
            for (int v = 0; v < 5; v++) mean[v] += e[v] / trials;
        }
        double p = ue.OneProbability, q = ue.ZeroProbability;
        for (int v = 0; v < 5; v++)
        {
            double pv = Truth[v] * p + (1 - Truth[v]) * q;
            double se = Math.Sqrt(pv * (1 - pv) / (population.Length * (p - q) * (p - q)) / trials);
            Assert.True(Math.Abs(mean[v] - Truth[v]) <= 4.5 * se, $"category {v}: mean {mean[v]} vs {Truth[v]} (SE {se})");
        }
    }

    [Fact]
    public void RandomizedResponseEstimator_SixteenTimesMoreReports_RmseFourTimesSmaller()
    {
        var rr = new RandomizedResponse(5, 1.0);
        double Rmse(int n, ulong seed)
        {
            var population = Population(n);
            var source = new SeededNoiseSource(seed);
            double sq = 0;
            const int trials = 200;
            for (int t = 0; t < trials; t++)
            {
                var e = SimulateRr(rr, population, source);
                for (int v = 0; v < 5; v++) sq += (e[v] - Truth[v]) * (e[v] - Truth[v]);
            }
            return Math.Sqrt(sq / (trials * 5));
        }
        double ratio = Rmse(500, 3) / Rmse(8000, 4);
        Assert.InRange(ratio, 3.4, 4.6);
    }

    [Fact]
    public void UnaryEncodingEstimator_SixteenTimesMoreReports_RmseFourTimesSmaller()
    {
        var ue = new UnaryEncoding(5, 1.0);
        double Rmse(int n, ulong seed)
        {
            var population = Population(n);
            var source = new SeededNoiseSource(seed);
            double sq = 0;
            const int trials = 150;
            for (int t = 0; t < trials; t++)
            {
                var e = SimulateUe(ue, population, source);
                for (int v = 0; v < 5; v++) sq += (e[v] - Truth[v]) * (e[v] - Truth[v]);
            }
            return Math.Sqrt(sq / (trials * 5));
        }
        double ratio = Rmse(500, 5) / Rmse(8000, 6);
        Assert.InRange(ratio, 3.4, 4.6);
    }

    [Fact]
    public void OptimizedUnaryEncoding_SameEpsilon_LowerVarianceThanSymmetric()
    {
        // Wang et al. 2017: OUE's variance 4e^ε/(n(e^ε−1)²) is below SUE's e^(ε/2)/(n(e^(ε/2)−1)²) for ε > 0 (f → 0).
        double Var(UnaryEncoding ue) => ue.ZeroProbability * (1 - ue.ZeroProbability) / Math.Pow(ue.OneProbability - ue.ZeroProbability, 2);
        foreach (double eps in new[] { 0.5, 1.0, 2.0, 4.0 })
            Assert.True(Var(new UnaryEncoding(10, eps)) < Var(new UnaryEncoding(10, eps, UnaryEncodingVariant.Symmetric)));
    }
}
