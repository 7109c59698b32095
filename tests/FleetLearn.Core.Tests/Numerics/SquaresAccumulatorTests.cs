using System.Runtime.InteropServices;
using CsCheck;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Numerics;
using FleetLearn.Testing;

namespace FleetLearn.Core.Tests.Numerics;

public sealed class SquaresAccumulatorTests
{
    // Up to 700 values: several 64-value blocks (the SIMD path), heads and tails of every length around them.
    private static readonly Gen<float> Value = Gen.Frequency((6, Gen.Float[-1e3f, 1e3f]), (1, Gen.Float[-1e30f, 1e30f]), (1, Gen.Float[-1e-30f, 1e-30f]));

    private static readonly Gen<(float[] Values, int[] Cuts)> Cases =
        Value.Array[0, 700].SelectMany(v => Gen.Int[0, 4 * v.Length + 1].Array[0, 12].Select(c => (v, c)));

    /// <summary>The definition, written out: value i into lane i mod 64 in index order, then the lanes added pairwise.</summary>
    private static double Reference(float[] values)
    {
        var lanes = new double[SquaresAccumulator.Lanes];
        for (int i = 0; i < values.Length; i++) lanes[i % lanes.Length] += (double)values[i] * values[i];
        for (int width = lanes.Length / 2; width >= 1; width /= 2)
            for (int j = 0; j < width; j++) lanes[j] += lanes[j + width];
        return lanes[0];
    }

    [Fact]
    public void SumOfSquares_SegmentsCutAnywhereIncludingInsideAFloat_SameBitsAsTheArrayAndTheDefinition()
    {
        Cases.Sample(t =>
        {
            double reference = Reference(t.Values);
            double array = VectorMath.SumOfSquares(t.Values);
            double segments = new FloatSegments(Segments.Cut(MemoryMarshal.AsBytes(t.Values.AsSpan()).ToArray(), t.Cuts)).SumOfSquares();
            Assert.Equal(BitConverter.DoubleToInt64Bits(reference), BitConverter.DoubleToInt64Bits(array));
            Assert.Equal(BitConverter.DoubleToInt64Bits(reference), BitConverter.DoubleToInt64Bits(segments));
        });
    }

    [Fact]
    public void Add_RunsOfAnyLength_SameBitsAsOneRun()
    {
        Gen.Select(Value.Array[0, 700], Gen.Int[0, 700].Array[0, 10]).Sample((values, cuts) =>
        {
            var sums = new SquaresAccumulator();
            int start = 0;
            foreach (int end in cuts.Where(c => c < values.Length).Order().Append(values.Length))
            {
                sums.Add(values.AsSpan(start, end - start));
                start = end;
            }
            Assert.Equal(values.Length, sums.Count);
            Assert.Equal(BitConverter.DoubleToInt64Bits(SquaresAccumulator.Of(values)), BitConverter.DoubleToInt64Bits(sums.Total));
        });
    }

    [Fact]
    public void SumOfSquares_NonFiniteAnywhereIncludingAStraddlingFloat_IsNotFinite()
    {
        Gen.Select(Cases, Gen.Int[0, 10_000], Gen.OneOfConst(float.NaN, float.PositiveInfinity, float.NegativeInfinity), Gen.Int[1, 3]).Sample((t, at, bad, inside) =>
        {
            if (t.Values.Length == 0) return;
            int index = at % t.Values.Length;
            t.Values[index] = bad;
            var bytes = MemoryMarshal.AsBytes(t.Values.AsSpan()).ToArray();
            // One cut inside the bad value's four bytes, so that it straddles two segments, besides the generated cuts.
            var segments = new FloatSegments(Segments.Cut(bytes, [.. t.Cuts, 4 * index + inside]));
            Assert.False(double.IsFinite(segments.SumOfSquares()));
            Assert.False(double.IsFinite(VectorMath.SumOfSquares(t.Values)));
            Assert.Equal(UpdateVerdict.NonFinite, PlaintextUpdateCheck.CheckSumOfSquares(segments.SumOfSquares(), 1000).Verdict);
        });
    }

    [Fact]
    public void NormBound_AtItsExactEdge_SameVerdictFromSegmentsAsFromTheReplayedArray()
    {
        Gen.Select(Gen.Float[-1f, 1f].Array[65, 700], Gen.Int[0, 2801].Array[1, 12]).Sample((values, cuts) =>
        {
            double norm = VectorMath.Norm(values);
            if (!(norm > 0)) return;
            var live = new FloatSegments(Segments.Cut(MemoryMarshal.AsBytes(values.AsSpan()).ToArray(), cuts)).SumOfSquares();
            foreach (double bound in new[] { norm, Math.BitDecrement(norm) })
            {
                var replayed = PlaintextUpdateCheck.Check(values, bound); // the journal's replay: one array
                Assert.Equal(replayed, PlaintextUpdateCheck.CheckSumOfSquares(live, bound));
                Assert.Equal(bound == norm ? UpdateVerdict.Accepted : UpdateVerdict.NormExceeded, replayed.Verdict);
            }
        });
    }

    [Fact]
    public void Blocks_EverySimdPathThisCpuRuns_SameLaneSumsAsTheDefinition()
    {
        // Add picks one path per CPU; here each path this CPU can run is called directly (AVX-512 and AVX2 where present,
        // the 128-bit path everywhere), from lanes that already hold sums, and must give the definition's lane sums.
        var paths = new List<(string Name, Action<float[], int, double[]> Run)> { ("128-bit", (x, b, l) => SquaresAccumulator.Blocks128(ref x[0], b, ref l[0])) };
        if (System.Runtime.Intrinsics.X86.Avx.IsSupported) paths.Add(("AVX2", (x, b, l) => SquaresAccumulator.Blocks256(ref x[0], b, ref l[0])));
        if (System.Runtime.Intrinsics.X86.Avx512F.IsSupported) paths.Add(("AVX-512", (x, b, l) => SquaresAccumulator.Blocks512(ref x[0], b, ref l[0])));
        Gen.Select(Value.Array[SquaresAccumulator.Lanes * 5], Value.Array[SquaresAccumulator.Lanes], Gen.Int[1, 5]).Sample((values, start, blocks) =>
        {
            var expected = new double[SquaresAccumulator.Lanes];
            for (int j = 0; j < expected.Length; j++) expected[j] = (double)start[j] * start[j];
            for (int i = 0; i < blocks * SquaresAccumulator.Lanes; i++) expected[i % expected.Length] += (double)values[i] * values[i];
            foreach (var (name, run) in paths)
            {
                var lanes = start.Select(v => (double)v * v).ToArray();
                run(values, blocks, lanes);
                Assert.True(expected.Select(BitConverter.DoubleToInt64Bits).SequenceEqual(lanes.Select(BitConverter.DoubleToInt64Bits)), $"{name}: lane sums differ from the definition.");
            }
        });
    }

    [Fact]
    public void SumOfSquares_KnownValues_ExactSum()
    {
        var values = Enumerable.Range(1, 200).Select(i => (float)i).ToArray(); // Σ i² for i ≤ 200, exact in double
        Assert.Equal(200.0 * 201 * 401 / 6, VectorMath.SumOfSquares(values));
        Assert.Equal(0.0, VectorMath.SumOfSquares([]));
        Assert.Equal((double)float.MaxValue * float.MaxValue * 2, VectorMath.SumOfSquares([float.MaxValue, float.MinValue]));
    }
}
