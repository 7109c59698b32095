using FleetLearn.Core.Compression;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Random;

namespace FleetLearn.Core.Tests.Attacks;

/// <summary>Issue 13 item 1: one vehicle forges the masked weight coordinate so that the released mean is L·Σx.</summary>
public sealed class WeightCoordinateAttackTests
{
    private const int Dim = 64;
    private const int N = 5;

    private static UpdatePipeline CentralDpPipeline() => new(new UpdatePipelineOptions
    {
        Codec = CodecSpec.Parse("rot+q8"), Dimension = Dim, ClipNorm = 1.0, SecureAggregation = SecureAggregationMode.Full,
        CohortSize = N, Noise = NoiseMode.Central,
    });

    /// <summary>The cohort's sum mod 2^m with vehicle 0's weight coordinate replaced by 1 − (n−1)L mod 2^m.</summary>
    internal static uint[] ForgedSum(UpdatePipelineRound round)
    {
        var p = round.Pipeline;
        var sum = new uint[p.SecAggDimension];
        uint mask = p.ModulusBits == 32 ? uint.MaxValue : (1u << p.ModulusBits) - 1;
        for (int v = 0; v < N; v++)
        {
            var rng = new DeterministicRandom((ulong)v + 1);
            var x = new float[Dim];
            for (int i = 0; i < Dim; i++) x[i] = (float)(0.02 * rng.NextGaussian());
            var input = round.EncodeSecure(x, 1, new SeededNoiseSource(1), new SeededNoiseSource((ulong)v), out _);
            if (v == 0) input[p.KeptCount] = (uint)((1 - (long)(N - 1) * (long)p.MaxInputValue) & mask);
            for (int i = 0; i < sum.Length; i++) sum[i] = (sum[i] + input[i]) & mask;
        }
        return sum;
    }

    [Fact]
    public void OneVehicleCancelsCentralDp_ForgedWeightCoordinate_SumRejected()
    {
        var round = CentralDpPipeline().ForRound(3, 17);
        var sum = ForgedSum(round);
        var e = Assert.Throws<SecureSumRejectedException>(() => round.DecodeSum(sum, N));
        Assert.Contains("weight coordinate", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void DecodeSum_HonestUniformCohort_DividesByPublicSurvivorCount()
    {
        var round = CentralDpPipeline().ForRound(3, 17);
        Assert.True(round.Pipeline.UniformWeights);
        var p = round.Pipeline;
        var sum = new uint[p.SecAggDimension];
        for (int v = 0; v < N; v++)
        {
            // A uniform-weight vehicle sends L whatever weight its caller passes.
            var input = round.EncodeSecure(new float[Dim], v + 0.5, new SeededNoiseSource(1), new SeededNoiseSource((ulong)v), out _);
            Assert.Equal(p.MaxInputValue, input[p.KeptCount]);
            for (int i = 0; i < sum.Length; i++) sum[i] += input[i];
        }
        Assert.Equal(N, round.DecodeSum(sum, N).WeightSum);
    }

    [Fact]
    public void DecodeSum_SampleWeightsBelowPublicFloor_SumRejected()
    {
        const int n = 4;
        var pipeline = new UpdatePipeline(new UpdatePipelineOptions
        {
            Codec = CodecSpec.Parse("q8"), Dimension = 8, ClipNorm = 1.0, SecureAggregation = SecureAggregationMode.Full,
            CohortSize = n, MaxWeight = 100, MinWeight = 10, UniformWeights = false,
        });
        var round = pipeline.ForRound(1, 1);
        var sum = new uint[pipeline.SecAggDimension];
        var inputs = new List<uint[]>();
        for (int v = 0; v < n; v++)
        {
            // Weight 1 is clamped up to the public floor 10, i.e. ⌊25.5⌋ or ⌈25.5⌉ levels.
            var input = round.EncodeSecure(new float[8], 1, new SeededNoiseSource(1), new SeededNoiseSource((ulong)v), out _);
            Assert.InRange(input[pipeline.KeptCount], 25u, 26u);
            for (int i = 0; i < sum.Length; i++) sum[i] += input[i];
        }
        Assert.InRange(round.DecodeSum(sum, n).WeightSum, 0.39, 0.41);
        // One vehicle sends weight 1 − (honest rest) mod 2^m: the sum drops below n·⌊L·MinWeight/W⌋.
        uint mask = (1u << pipeline.ModulusBits) - 1;
        sum[pipeline.KeptCount] = 1;
        var e = Assert.Throws<SecureSumRejectedException>(() => round.DecodeSum(sum, n));
        Assert.Contains("outside [100, 1020]", e.Message, StringComparison.Ordinal);
        sum[pipeline.KeptCount] = mask;
        Assert.Throws<SecureSumRejectedException>(() => round.DecodeSum(sum, n));
    }

    [Fact]
    public void DecodeSum_DataCoordinateAboveHonestRange_SumRejected()
    {
        var round = CentralDpPipeline().ForRound(3, 17);
        var sum = new uint[round.Pipeline.SecAggDimension];
        sum[round.Pipeline.KeptCount] = (uint)(N * round.Pipeline.MaxInputValue);
        sum[0] = (uint)(N * round.Pipeline.MaxInputValue) + 1;
        Assert.Contains("Coordinate 0", Assert.Throws<SecureSumRejectedException>(() => round.DecodeSum(sum, N)).Message, StringComparison.Ordinal);
    }
}
