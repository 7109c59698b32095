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
        var e = Assert.ThrowsAny<Exception>(() => round.DecodeSum(sum, N));
        Assert.Contains("weight coordinate", e.Message, StringComparison.Ordinal);
    }
}
