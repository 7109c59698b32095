using FleetLearn.Core.Compression;
using FleetLearn.Core.Privacy;

namespace FleetLearn.Core.Tests.Attacks;

/// <summary>
/// Issue 13 item 4: distributed DP noise must be discrete Gaussian added to the integers actually released (after
/// rounding), not floating-point noise that quantization then rounds (Kairouz, Liu &amp; Steinke 2021).
/// </summary>
public sealed class NoiseBeforeQuantizationTests
{
    [Fact]
    public void NoiseAddedBeforeQuantization_ZeroUpdate_InputIsIntegerNoiseIndependentOfRounding()
    {
        const int dim = 1024;
        var pipeline = new UpdatePipeline(new UpdatePipelineOptions
        {
            Codec = CodecSpec.Parse("rot+q8"), Dimension = dim, ClipNorm = 1.0, SecureAggregation = SecureAggregationMode.Full,
            CohortSize = 10, Noise = NoiseMode.Distributed,
        });
        var round = pipeline.ForRound(1, 5, vehicleNoiseStdDev: 0.05);
        double gamma = round.StepFor(round.SharedRangeValue);

        // A zero update rounds to zero whatever the rounding coins: the input is the noise alone, on the integer grid.
        var a = round.EncodeSecure(new float[dim], 1, new SeededNoiseSource(42), new SeededNoiseSource(1), out _);
        var b = round.EncodeSecure(new float[dim], 1, new SeededNoiseSource(42), new SeededNoiseSource(2), out _);
        Assert.Equal(a, b);

        // Read as signed integers mod 2^m, the noise is centred on 0 with variance (σ/γ)².
        long modulus = 1L << pipeline.ModulusBits;
        var z = a.Take(pipeline.KeptCount).Select(v => v >= modulus / 2 ? v - modulus : (long)v).ToArray();
        double mean = z.Average(), variance = z.Select(v => (v - mean) * (v - mean)).Average();
        double expected = Math.Pow(0.05 / gamma, 2);
        Assert.InRange(mean, -6 * Math.Sqrt(expected / z.Length), 6 * Math.Sqrt(expected / z.Length));
        Assert.InRange(variance, 0.8 * expected, 1.2 * expected);
    }

    [Fact]
    public void DiscreteGaussianCohort_DecodeSum_MeanWithinNoiseOfTrueMean()
    {
        const int dim = 256, n = 8;
        var pipeline = new UpdatePipeline(new UpdatePipelineOptions
        {
            Codec = CodecSpec.Parse("rot+q12"), Dimension = dim, ClipNorm = 1.0, SecureAggregation = SecureAggregationMode.Plus,
            CohortSize = n, Noise = NoiseMode.Distributed,
        });
        Assert.True(pipeline.IsDiscreteGaussian);
        const double sigmaLocal = 0.01;
        var round = pipeline.ForRound(2, 9, vehicleNoiseStdDev: sigmaLocal);
        var sum = new uint[pipeline.SecAggDimension];
        var expected = new double[dim];
        uint mask = (1u << pipeline.ModulusBits) - 1;
        for (int v = 0; v < n; v++)
        {
            var rng = new FleetLearn.Core.Random.DeterministicRandom((ulong)v + 3);
            var x = new float[dim];
            for (int i = 0; i < dim; i++) x[i] = (float)(0.03 * rng.NextGaussian());
            for (int i = 0; i < dim; i++) expected[i] += x[i] / (double)n;
            var input = round.EncodeSecure(x, 1, new SeededNoiseSource((ulong)v + 100), new SeededNoiseSource((ulong)v), out _);
            for (int i = 0; i < sum.Length; i++) sum[i] = (sum[i] + input[i]) & mask;
        }
        var decoded = round.DecodeSum(sum, n);
        Assert.Equal(n, decoded.WeightSum);
        // Per coordinate of the mean: noise √n·σ/n plus rounding √n·γ/2/n; 6 standard deviations in L2 over √dim coordinates.
        double perCoordinate = Math.Sqrt(n) * (sigmaLocal + round.Granularity / 2) / n;
        double err = Math.Sqrt(expected.Zip(decoded.Mean).Sum(p => (p.First - p.Second) * (p.First - p.Second)));
        Assert.True(err < 1.5 * perCoordinate * Math.Sqrt(dim), $"error {err}, expected about {perCoordinate * Math.Sqrt(dim)}");
        var accounting = round.DiscreteGaussianAccounting!;
        Assert.True(accounting.Sensitivity > 1.0);
        Assert.True(accounting.EquivalentNoiseMultiplier(n) < Math.Sqrt(n) * sigmaLocal);
    }

    [Fact]
    public void DiscreteGaussian_ForgedWeightCoordinate_StillRejected()
    {
        var pipeline = new UpdatePipeline(new UpdatePipelineOptions
        {
            Codec = CodecSpec.Parse("q8"), Dimension = 16, ClipNorm = 1.0, SecureAggregation = SecureAggregationMode.Full,
            CohortSize = 4, Noise = NoiseMode.Distributed,
        });
        var round = pipeline.ForRound(1, 1, vehicleNoiseStdDev: 0.1);
        var sum = new uint[pipeline.SecAggDimension];
        sum[pipeline.KeptCount] = 1;
        Assert.Throws<SecureSumRejectedException>(() => round.DecodeSum(sum, 4));
    }

    [Fact]
    public void UnclippedBitSummedWithoutNoise_DistributedShares_CountCarriesNoise()
    {
        const int n = 200, dim = 8;
        var pipeline = new UpdatePipeline(new UpdatePipelineOptions
        {
            Codec = CodecSpec.Parse("q8"), Dimension = dim, ClipNorm = 1.0, SecureAggregation = SecureAggregationMode.Full,
            CohortSize = n, Noise = NoiseMode.Distributed, SendUnclippedBit = true,
        });
        // σ_b = 10 on the count, m_min = 100: each vehicle adds N_Z(0, 1).
        var round = pipeline.ForRound(1, 1, vehicleNoiseStdDev: 0.01, unclippedBitNoiseStdDev: 1.0);
        var deviations = new List<double>();
        for (int trial = 0; trial < 40; trial++)
        {
            var sum = new uint[pipeline.SecAggDimension];
            uint mask = (1u << pipeline.ModulusBits) - 1;
            for (int v = 0; v < n; v++)
            {
                var input = round.EncodeSecure(new float[dim], 1, new SeededNoiseSource((ulong)(trial * n + v)), new SeededNoiseSource(1), out _);
                for (int i = 0; i < sum.Length; i++) sum[i] = (sum[i] + input[i]) & mask;
            }
            deviations.Add(round.DecodeSum(sum, n).UnclippedCount - n); // every zero update is unclipped
        }
        double sd = Math.Sqrt(deviations.Select(d => d * d).Average());
        Assert.InRange(sd, 0.6 * Math.Sqrt(n), 1.5 * Math.Sqrt(n));
        Assert.Throws<CodecConfigurationException>(() => pipeline.ForRound(1, 1, unclippedBitNoiseStdDev: -1));
    }
}
