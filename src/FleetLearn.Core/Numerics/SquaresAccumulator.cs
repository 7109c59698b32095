using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace FleetLearn.Core.Numerics;

/// <summary>Σ x² in double over float values fed in index order, in runs cut anywhere: the same bits however they are cut.</summary>
/// <remarks>
/// Value i is added to lane i mod <see cref="Lanes"/>, each lane in index order; <see cref="Total"/> then adds the lanes
/// in a fixed pairwise order. A float's square is exact in double (24-bit significand squared fits 53 bits), so a fused
/// multiply-add and a multiply then add give the same lane sums: every SIMD width (AVX-512, AVX2, 128-bit, scalar) and
/// every cut of the runs give the same result, bit for bit. That is what lets an update checked from the chunks it
/// arrived in (<see cref="FloatSegments"/>) and the same update replayed from the journal as one array
/// (<see cref="VectorMath.SumOfSquares"/>) reach the same norm-bound verdict, even at the bound's exact edge.
/// 64 lanes are 8 independent AVX-512 accumulator chains: enough to hide the add's latency (the old two-accumulator loop
/// was latency-bound).
/// </remarks>
public struct SquaresAccumulator
{
    /// <summary>Lanes the values are spread over (value i to lane i mod 64).</summary>
    public const int Lanes = 64;

    private LaneSums _lanes;

    /// <summary>Values added so far (the index the next value has).</summary>
    public long Count { readonly get; private set; }

    /// <summary>Σ x² of every value added: finite exactly when every value is (a finite float's square is below 1.2·10^77).</summary>
    public readonly double Total
    {
        get
        {
            Span<double> l = stackalloc double[Lanes];
            ReadOnlySpan<double> lanes = _lanes;
            lanes.CopyTo(l);
            for (int width = Lanes / 2; width >= 1; width /= 2)
                for (int j = 0; j < width; j++) l[j] += l[j + width];
            return l[0];
        }
    }

    /// <summary>Adds the next <paramref name="run"/>.Length values, in index order.</summary>
    // Jitted optimized at once: the receive path calls this a few times per update, too few for the tiered JIT to promote it
    // during the first rounds, and its loop at tier 0 (or on-stack replacement from tier 0) runs several times slower.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Add(ReadOnlySpan<float> run)
    {
        Span<double> lanes = _lanes;
        ref double l = ref MemoryMarshal.GetReference(lanes);
        ref float x = ref MemoryMarshal.GetReference(run);
        int n = run.Length, i = 0, first = (int)(Count & (Lanes - 1));
        if (first != 0)
        {
            // Up to the next value of lane 0.
            for (int head = Math.Min(n, Lanes - first); i < head; i++) Unsafe.Add(ref l, first + i) += Square(Unsafe.Add(ref x, i));
        }
        int blocks = (n - i) / Lanes;
        if (blocks > 0)
        {
            ref float start = ref Unsafe.Add(ref x, i);
            if (Avx512F.IsSupported) Blocks512(ref start, blocks, ref l);
            else if (Avx.IsSupported) Blocks256(ref start, blocks, ref l);
            else Blocks128(ref start, blocks, ref l);
            i += blocks * Lanes;
        }
        // The rest starts at lane 0 again whenever a block or the head ran; otherwise it is the head itself (n < 64 − first).
        for (; i < n; i++) Unsafe.Add(ref l, (first + i) & (Lanes - 1)) += Square(Unsafe.Add(ref x, i));
        Count += n;
    }

    /// <summary>Adds every value of <paramref name="run"/> then returns <see cref="Total"/> (a span alone).</summary>
    public static double Of(ReadOnlySpan<float> run)
    {
        var sums = new SquaresAccumulator();
        sums.Add(run);
        return sums.Total;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static double Square(float value) => (double)value * value;

    /// <summary>64 values a step: eight 8-double accumulators, lane k of accumulator j is lane 8j + k.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Blocks512(ref float x, int blocks, ref double l)
    {
        var a0 = Vector512.LoadUnsafe(ref l, 0);
        var a1 = Vector512.LoadUnsafe(ref l, 8);
        var a2 = Vector512.LoadUnsafe(ref l, 16);
        var a3 = Vector512.LoadUnsafe(ref l, 24);
        var a4 = Vector512.LoadUnsafe(ref l, 32);
        var a5 = Vector512.LoadUnsafe(ref l, 40);
        var a6 = Vector512.LoadUnsafe(ref l, 48);
        var a7 = Vector512.LoadUnsafe(ref l, 56);
        for (int b = 0; b < blocks; b++)
        {
            ref float p = ref Unsafe.Add(ref x, b * Lanes);
            // vcvtps2pd zmm, [mem]: 8 floats straight from memory to 8 doubles (no 512-bit load and shuffle, as Widen does).
            var v0 = Avx512F.ConvertToVector512Double(Vector256.LoadUnsafe(ref p, 0));
            var v1 = Avx512F.ConvertToVector512Double(Vector256.LoadUnsafe(ref p, 8));
            var v2 = Avx512F.ConvertToVector512Double(Vector256.LoadUnsafe(ref p, 16));
            var v3 = Avx512F.ConvertToVector512Double(Vector256.LoadUnsafe(ref p, 24));
            var v4 = Avx512F.ConvertToVector512Double(Vector256.LoadUnsafe(ref p, 32));
            var v5 = Avx512F.ConvertToVector512Double(Vector256.LoadUnsafe(ref p, 40));
            var v6 = Avx512F.ConvertToVector512Double(Vector256.LoadUnsafe(ref p, 48));
            var v7 = Avx512F.ConvertToVector512Double(Vector256.LoadUnsafe(ref p, 56));
            a0 = Avx512F.FusedMultiplyAdd(v0, v0, a0);
            a1 = Avx512F.FusedMultiplyAdd(v1, v1, a1);
            a2 = Avx512F.FusedMultiplyAdd(v2, v2, a2);
            a3 = Avx512F.FusedMultiplyAdd(v3, v3, a3);
            a4 = Avx512F.FusedMultiplyAdd(v4, v4, a4);
            a5 = Avx512F.FusedMultiplyAdd(v5, v5, a5);
            a6 = Avx512F.FusedMultiplyAdd(v6, v6, a6);
            a7 = Avx512F.FusedMultiplyAdd(v7, v7, a7);
        }
        a0.StoreUnsafe(ref l, 0);
        a1.StoreUnsafe(ref l, 8);
        a2.StoreUnsafe(ref l, 16);
        a3.StoreUnsafe(ref l, 24);
        a4.StoreUnsafe(ref l, 32);
        a5.StoreUnsafe(ref l, 40);
        a6.StoreUnsafe(ref l, 48);
        a7.StoreUnsafe(ref l, 56);
    }

    /// <summary>AVX2: the 64 lanes in two passes of 32 (eight 4-double accumulators each; 16 would not fit the 16 registers).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Blocks256(ref float x, int blocks, ref double l)
    {
        for (int half = 0; half < Lanes; half += 32)
        {
            ref double h = ref Unsafe.Add(ref l, half);
            var a0 = Vector256.LoadUnsafe(ref h, 0);
            var a1 = Vector256.LoadUnsafe(ref h, 4);
            var a2 = Vector256.LoadUnsafe(ref h, 8);
            var a3 = Vector256.LoadUnsafe(ref h, 12);
            var a4 = Vector256.LoadUnsafe(ref h, 16);
            var a5 = Vector256.LoadUnsafe(ref h, 20);
            var a6 = Vector256.LoadUnsafe(ref h, 24);
            var a7 = Vector256.LoadUnsafe(ref h, 28);
            for (int b = 0; b < blocks; b++)
            {
                ref float p = ref Unsafe.Add(ref x, b * Lanes + half);
                var v0 = Avx.ConvertToVector256Double(Vector128.LoadUnsafe(ref p, 0));
                var v1 = Avx.ConvertToVector256Double(Vector128.LoadUnsafe(ref p, 4));
                var v2 = Avx.ConvertToVector256Double(Vector128.LoadUnsafe(ref p, 8));
                var v3 = Avx.ConvertToVector256Double(Vector128.LoadUnsafe(ref p, 12));
                var v4 = Avx.ConvertToVector256Double(Vector128.LoadUnsafe(ref p, 16));
                var v5 = Avx.ConvertToVector256Double(Vector128.LoadUnsafe(ref p, 20));
                var v6 = Avx.ConvertToVector256Double(Vector128.LoadUnsafe(ref p, 24));
                var v7 = Avx.ConvertToVector256Double(Vector128.LoadUnsafe(ref p, 28));
                a0 += v0 * v0;
                a1 += v1 * v1;
                a2 += v2 * v2;
                a3 += v3 * v3;
                a4 += v4 * v4;
                a5 += v5 * v5;
                a6 += v6 * v6;
                a7 += v7 * v7;
            }
            a0.StoreUnsafe(ref h, 0);
            a1.StoreUnsafe(ref h, 4);
            a2.StoreUnsafe(ref h, 8);
            a3.StoreUnsafe(ref h, 12);
            a4.StoreUnsafe(ref h, 16);
            a5.StoreUnsafe(ref h, 20);
            a6.StoreUnsafe(ref h, 24);
            a7.StoreUnsafe(ref h, 28);
        }
    }

    /// <summary>128-bit (NEON, SSE) or scalar: the 64 lanes in four passes of 16 (eight 2-double accumulators each).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Blocks128(ref float x, int blocks, ref double l)
    {
        for (int quarter = 0; quarter < Lanes; quarter += 16)
        {
            ref double q = ref Unsafe.Add(ref l, quarter);
            var a0 = Vector128.LoadUnsafe(ref q, 0);
            var a1 = Vector128.LoadUnsafe(ref q, 2);
            var a2 = Vector128.LoadUnsafe(ref q, 4);
            var a3 = Vector128.LoadUnsafe(ref q, 6);
            var a4 = Vector128.LoadUnsafe(ref q, 8);
            var a5 = Vector128.LoadUnsafe(ref q, 10);
            var a6 = Vector128.LoadUnsafe(ref q, 12);
            var a7 = Vector128.LoadUnsafe(ref q, 14);
            for (int b = 0; b < blocks; b++)
            {
                ref float p = ref Unsafe.Add(ref x, b * Lanes + quarter);
                var (v0, v1) = Vector128.Widen(Vector128.LoadUnsafe(ref p, 0));
                var (v2, v3) = Vector128.Widen(Vector128.LoadUnsafe(ref p, 4));
                var (v4, v5) = Vector128.Widen(Vector128.LoadUnsafe(ref p, 8));
                var (v6, v7) = Vector128.Widen(Vector128.LoadUnsafe(ref p, 12));
                a0 += v0 * v0;
                a1 += v1 * v1;
                a2 += v2 * v2;
                a3 += v3 * v3;
                a4 += v4 * v4;
                a5 += v5 * v5;
                a6 += v6 * v6;
                a7 += v7 * v7;
            }
            a0.StoreUnsafe(ref q, 0);
            a1.StoreUnsafe(ref q, 2);
            a2.StoreUnsafe(ref q, 4);
            a3.StoreUnsafe(ref q, 6);
            a4.StoreUnsafe(ref q, 8);
            a5.StoreUnsafe(ref q, 10);
            a6.StoreUnsafe(ref q, 12);
            a7.StoreUnsafe(ref q, 14);
        }
    }

    [InlineArray(Lanes)]
    private struct LaneSums
    {
        private double _element;
    }
}
