using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace FleetLearn.Core.Numerics;

/// <summary>SIMD helpers over float spans (Vector&lt;float&gt;: AVX-512/AVX2 on x64, NEON on arm64).</summary>
public static class VectorMath
{
    /// <summary><c>y += a·x</c>.</summary>
    // AggressiveOptimization here and in AllFinite: the receive path calls these a few times per update, too few for the
    // tiered JIT to promote them in an aggregator's first rounds; at tier 0 their loops run several times slower.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Axpy(float a, ReadOnlySpan<float> x, Span<float> y)
    {
        if (x.Length != y.Length) throw new ArgumentException($"Length mismatch: {x.Length} vs {y.Length}.");
        ref float rx = ref MemoryMarshal.GetReference(x);
        ref float ry = ref MemoryMarshal.GetReference(y);
        int n = x.Length, i = 0, w = Vector<float>.Count;
        if (Vector512.IsHardwareAccelerated)
        {
            // 512-bit lanes where the CPU has them (Vector<float> stays 256-bit): the same fused multiply-add per element.
            var a512 = Vector512.Create(a);
            int v = Vector512<float>.Count;
            for (; i <= n - 4 * v; i += 4 * v)
            {
                for (int k = 0; k < 4; k++)
                {
                    nuint at = (nuint)(i + k * v);
                    Vector512.FusedMultiplyAdd(a512, Vector512.LoadUnsafe(ref rx, at), Vector512.LoadUnsafe(ref ry, at)).StoreUnsafe(ref ry, at);
                }
            }
        }
        var va = new Vector<float>(a);
        for (; i <= n - 4 * w; i += 4 * w)
        {
            for (int k = 0; k < 4; k++)
            {
                ref float px = ref Unsafe.Add(ref rx, i + k * w);
                ref float py = ref Unsafe.Add(ref ry, i + k * w);
                var vy = Vector.FusedMultiplyAdd(va, Vector.LoadUnsafe(ref px), Vector.LoadUnsafe(ref py));
                vy.StoreUnsafe(ref py);
            }
        }
        for (; i <= n - w; i += w)
        {
            ref float py = ref Unsafe.Add(ref ry, i);
            Vector.FusedMultiplyAdd(va, Vector.LoadUnsafe(ref Unsafe.Add(ref rx, i)), Vector.LoadUnsafe(ref py)).StoreUnsafe(ref py);
        }
        for (; i < n; i++) Unsafe.Add(ref ry, i) = MathF.FusedMultiplyAdd(a, Unsafe.Add(ref rx, i), Unsafe.Add(ref ry, i));
    }

    /// <summary>
    /// <c>y += Σₖ aₖ·xₖ</c> in cache-sized chunks: each chunk of <paramref name="y"/> stays in L1/L2
    /// while every input is added to it, so y is read and written from memory once for all inputs
    /// (the memory-bound part of aggregation). Same additions, same order per element, as calling
    /// <see cref="Axpy"/> for each input in turn.
    /// </summary>
    public static void AxpyMany(ReadOnlySpan<float> a, ReadOnlySpan<ReadOnlyMemory<float>> x, Span<float> y)
    {
        if (a.Length != x.Length) throw new ArgumentException("One coefficient per input is required.");
        for (int k = 0; k < x.Length; k++)
        {
            if (x[k].Length != y.Length) throw new ArgumentException($"Input {k} has {x[k].Length} values, expected {y.Length}.");
        }
        const int chunk = 8192; // 32 KiB of floats: fits L1 on current x64 and arm64 cores.
        for (int start = 0; start < y.Length; start += chunk)
        {
            int n = Math.Min(chunk, y.Length - start);
            var target = y.Slice(start, n);
            for (int k = 0; k < x.Length; k++) Axpy(a[k], x[k].Span.Slice(start, n), target);
        }
    }

    /// <summary><c>x *= a</c>.</summary>
    public static void Scale(Span<float> x, float a)
    {
        ref float rx = ref MemoryMarshal.GetReference(x);
        int n = x.Length, i = 0, w = Vector<float>.Count;
        var va = new Vector<float>(a);
        for (; i <= n - w; i += w)
        {
            ref float p = ref Unsafe.Add(ref rx, i);
            (Vector.LoadUnsafe(ref p) * va).StoreUnsafe(ref p);
        }
        for (; i < n; i++) Unsafe.Add(ref rx, i) *= a;
    }

    /// <summary><c>z = x − y</c>.</summary>
    public static void Subtract(ReadOnlySpan<float> x, ReadOnlySpan<float> y, Span<float> z)
    {
        if (x.Length != y.Length || x.Length != z.Length) throw new ArgumentException("Length mismatch.");
        int n = x.Length, i = 0, w = Vector<float>.Count;
        ref float rx = ref MemoryMarshal.GetReference(x);
        ref float ry = ref MemoryMarshal.GetReference(y);
        ref float rz = ref MemoryMarshal.GetReference(z);
        for (; i <= n - w; i += w)
            (Vector.LoadUnsafe(ref Unsafe.Add(ref rx, i)) - Vector.LoadUnsafe(ref Unsafe.Add(ref ry, i))).StoreUnsafe(ref Unsafe.Add(ref rz, i));
        for (; i < n; i++) Unsafe.Add(ref rz, i) = Unsafe.Add(ref rx, i) - Unsafe.Add(ref ry, i);
    }

    /// <summary>
    /// Sum of squares, each square widened to double before it is added, so million-coordinate updates keep full precision:
    /// <see cref="SquaresAccumulator"/>, whose bits do not depend on the SIMD width or on how the values are cut into runs.
    /// </summary>
    public static double SumOfSquares(ReadOnlySpan<float> x) => SquaresAccumulator.Of(x);

    /// <summary>Euclidean norm.</summary>
    public static double Norm(ReadOnlySpan<float> x) => Math.Sqrt(SumOfSquares(x));

    /// <summary>True when every value is finite (no NaN, no ±∞).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static bool AllFinite(ReadOnlySpan<float> x)
    {
        // A float is NaN or ±∞ exactly when its 8 exponent bits are all set, i.e. when its bits with the sign cleared are
        // ≥ 0x7F800000. The largest of those over the span decides: kept a vector at a time, four accumulators, no branch in
        // the loop (the receive path runs this over every plaintext update, right before the fold reads the same values).
        var bits = MemoryMarshal.Cast<float, int>(x);
        ref int r = ref MemoryMarshal.GetReference(bits);
        int n = bits.Length, i = 0;
        if (Vector512.IsHardwareAccelerated && n >= 4 * Vector512<int>.Count)
        {
            var magnitude = Vector512.Create(0x7FFFFFFF);
            Vector512<int> m0 = default, m1 = default, m2 = default, m3 = default;
            int w = Vector512<int>.Count;
            for (; i <= n - 4 * w; i += 4 * w)
            {
                m0 = Vector512.Max(m0, Vector512.LoadUnsafe(ref r, (nuint)i) & magnitude);
                m1 = Vector512.Max(m1, Vector512.LoadUnsafe(ref r, (nuint)(i + w)) & magnitude);
                m2 = Vector512.Max(m2, Vector512.LoadUnsafe(ref r, (nuint)(i + 2 * w)) & magnitude);
                m3 = Vector512.Max(m3, Vector512.LoadUnsafe(ref r, (nuint)(i + 3 * w)) & magnitude);
            }
            if (Vector512.GreaterThanOrEqualAny(Vector512.Max(Vector512.Max(m0, m1), Vector512.Max(m2, m3)), Vector512.Create(0x7F800000))) return false;
        }
        else if (Vector256.IsHardwareAccelerated && n >= 4 * Vector256<int>.Count)
        {
            var magnitude = Vector256.Create(0x7FFFFFFF);
            Vector256<int> m0 = default, m1 = default, m2 = default, m3 = default;
            int w = Vector256<int>.Count;
            for (; i <= n - 4 * w; i += 4 * w)
            {
                m0 = Vector256.Max(m0, Vector256.LoadUnsafe(ref r, (nuint)i) & magnitude);
                m1 = Vector256.Max(m1, Vector256.LoadUnsafe(ref r, (nuint)(i + w)) & magnitude);
                m2 = Vector256.Max(m2, Vector256.LoadUnsafe(ref r, (nuint)(i + 2 * w)) & magnitude);
                m3 = Vector256.Max(m3, Vector256.LoadUnsafe(ref r, (nuint)(i + 3 * w)) & magnitude);
            }
            if (Vector256.GreaterThanOrEqualAny(Vector256.Max(Vector256.Max(m0, m1), Vector256.Max(m2, m3)), Vector256.Create(0x7F800000))) return false;
        }
        for (; i < n; i++)
            if ((Unsafe.Add(ref r, i) & 0x7FFFFFFF) >= 0x7F800000) return false;
        return true;
    }
}
