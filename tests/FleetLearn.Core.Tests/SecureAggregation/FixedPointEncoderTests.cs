using CsCheck;
using FleetLearn.Core.Random;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Core.Tests.SecureAggregation;

public sealed class FixedPointEncoderTests
{
    [Fact]
    public void EncodeDecode_SingleVehicleInRange_WithinOneQuantizationStep()
    {
        Gen.Select(Gen.Float[-2f, 2f].Array[1, 50], Gen.Double[0, 4], Gen.ULong).Sample((values, weight, seed) =>
        {
            var enc = new FixedPointEncoder(clipRange: 2, scale: 1000, bitWidth: 16, maxWeight: 4);
            var rng = new DeterministicRandom(seed);
            var encoded = enc.Encode(values, weight, rng.NextDouble);
            Assert.All(encoded, v => Assert.True(v <= enc.MaxEncodedValue));
            var (sum, w) = enc.DecodeSum(encoded, 1);
            for (int i = 0; i < values.Length; i++) Assert.True(Math.Abs(sum[i] - values[i]) <= 1.0 / 1000 + 1e-9, $"{sum[i]} vs {values[i]}");
            Assert.True(Math.Abs(w - weight) <= 1.0 / 1000 + 1e-9);
        });
    }

    [Fact]
    public void DecodeSum_SumOfCohortEncodings_WithinNStepsOfTrueSum()
    {
        Gen.Select(Gen.Int[1, 40], Gen.Int[1, 20], Gen.ULong).Sample((n, dim, seed) =>
        {
            var enc = FixedPointEncoder.ForCohort(clipRange: 1, bitWidth: 24, cohortSize: n);
            var rng = new DeterministicRandom(seed);
            var total = new uint[dim + 1];
            var truth = new double[dim];
            double weights = 0;
            for (int u = 0; u < n; u++)
            {
                var x = Enumerable.Range(0, dim).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
                double w = rng.NextDouble();
                for (int i = 0; i < dim; i++) truth[i] += x[i];
                weights += w;
                var e = enc.Encode(x, w, rng.NextDouble);
                for (int i = 0; i <= dim; i++) total[i] += e[i];
            }
            Assert.All(total, t => Assert.True(t < 1u << 24)); // no wrap mod 2^m
            var (sum, ws) = enc.DecodeSum(total, n);
            for (int i = 0; i < dim; i++) Assert.True(Math.Abs(sum[i] - truth[i]) <= n / enc.Scale + 1e-6);
            Assert.True(Math.Abs(ws - weights) <= n / enc.Scale + 1e-9);
        });
    }

    [Fact]
    public void Encode_StochasticRounding_IsUnbiased()
    {
        var enc = new FixedPointEncoder(clipRange: 1, scale: 10, bitWidth: 8);
        var rng = new DeterministicRandom(11);
        const int draws = 200_000;
        double acc = 0;
        for (int i = 0; i < draws; i++) acc += enc.Encode([0.037f], 0, rng.NextDouble)[0];

        // (0.037 + 1)·10 = 10.37: E = 10.37, σ of the mean ≈ sqrt(0.37·0.63 / 200000) ≈ 0.0011.
        Assert.InRange(acc / draws, 10.37 - 0.006, 10.37 + 0.006);
    }

    [Fact]
    public void Encode_OutOfRangeValues_AreClamped()
    {
        var enc = new FixedPointEncoder(clipRange: 0.5, scale: 100, bitWidth: 8, maxWeight: 1);

        var e = enc.Encode([5f, -5f, 0.25f], 7, () => 0.5);

        Assert.Equal(new uint[] { 100, 0, 75, 100 }, e);
    }

    [Fact]
    public void Encode_NaN_ThrowsNamingTheCoordinate()
    {
        var enc = new FixedPointEncoder(1, 10, 8);

        var e = Assert.Throws<ArgumentException>(() => enc.Encode([0f, float.NaN], 1, () => 0));

        Assert.StartsWith("Coordinate 1 is NaN; updates must be finite.", e.Message);
    }

    [Fact]
    public void EnsureFits_CohortTooLargeForModulus_ThrowsNamingTheNumbers()
    {
        var enc = new FixedPointEncoder(clipRange: 1, scale: 100, bitWidth: 10); // max 200 per vehicle

        var e = Assert.Throws<SecAggConfigurationException>(() => enc.EnsureFits(6));

        Assert.Equal("Modulus 2^10 = 1024 cannot hold the cohort's sum without wrapping: 6 vehicles × max input 200 = 1200 > 1023. Use a bit width of at least 11 or lower the input range.", e.Message);
    }

    [Fact]
    public void ForCohort_PicksLargestScaleThatFits()
    {
        var enc = FixedPointEncoder.ForCohort(clipRange: 1, bitWidth: 16, cohortSize: 100);

        Assert.Equal(655UL, enc.MaxEncodedValue); // ⌊65535 / 100⌋
        enc.EnsureFits(100);
        Assert.Throws<SecAggConfigurationException>(() => enc.EnsureFits(101));
    }

    [Fact]
    public void DecodeMean_WeightedUpdates_ReturnsWeightedAverage()
    {
        var enc = FixedPointEncoder.ForCohort(clipRange: 4, bitWidth: 32, cohortSize: 2, maxWeight: 4);
        // Vehicle A: Δ = 1, w = 1 → sends 1; vehicle B: Δ = −1, w = 3 → sends −3. Mean = (1 − 3) / 4 = −0.5.
        var a = enc.Encode([1f], 1, () => 0.5);
        var b = enc.Encode([-3f], 3, () => 0.5);

        var mean = enc.DecodeMean([a[0] + b[0], a[1] + b[1]], 2);

        Assert.Equal(-0.5f, mean[0], 1e-5f);
    }
}
