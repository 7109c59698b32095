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
}
