using System.Runtime.InteropServices;
using CsCheck;
using FleetLearn.Core.Numerics;
using FleetLearn.Testing;

namespace FleetLearn.Core.Tests.Numerics;

public sealed class FloatSegmentsTests
{
    private static readonly Gen<(float[] Values, int[] Cuts)> Cases =
        Gen.Float[-1e3f, 1e3f].Array[0, 300].SelectMany(v => Gen.Int[0, 4 * v.Length + 1].Array[0, 12].Select(c => (v, c)));

    [Fact]
    public void Operations_AnyCutIncludingInsideAFloat_EqualTheArrayOperations()
    {
        Cases.Sample(t =>
        {
            var bytes = MemoryMarshal.AsBytes(t.Values.AsSpan()).ToArray();
            var segments = new FloatSegments(Segments.Cut(bytes, t.Cuts));
            Assert.Equal(t.Values.Length, segments.Count);
            Assert.Equal(t.Values, segments.ToArray());
            Assert.True(segments.AllFinite());
            Assert.Equal(BitConverter.DoubleToInt64Bits(VectorMath.SumOfSquares(t.Values)), BitConverter.DoubleToInt64Bits(segments.SumOfSquares()));
            var y = Enumerable.Range(0, t.Values.Length).Select(i => i * 0.25f).ToArray();
            var reference = y.ToArray();
            VectorMath.Axpy(0.75f, t.Values, reference);
            segments.Axpy(0.75f, y);
            Assert.Equal(reference, y); // the same fused multiply-add per element: bit for bit
        });
    }

    [Fact]
    public void AllFinite_OneNonFiniteValueAnywhere_IsFalse()
    {
        Gen.Select(Cases, Gen.Int[0, 1000], Gen.OneOfConst(float.NaN, float.PositiveInfinity, float.NegativeInfinity)).Sample((t, at, bad) =>
        {
            if (t.Values.Length == 0) return;
            t.Values[at % t.Values.Length] = bad;
            var segments = new FloatSegments(Segments.Cut(MemoryMarshal.AsBytes(t.Values.AsSpan()).ToArray(), t.Cuts));
            Assert.False(segments.AllFinite());
        });
    }

    [Fact]
    public void Constructor_NotAWholeNumberOfFloats_Throws()
    {
        var e = Assert.Throws<ArgumentException>(() => new FloatSegments(Segments.Cut(new byte[10], [3])));
        Assert.StartsWith("10 bytes are not a whole number of float32 values.", e.Message, StringComparison.Ordinal);
    }
}
