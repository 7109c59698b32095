using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace FleetLearn.Core.Numerics;

/// <summary>SIMD helpers over float spans (Vector&lt;float&gt;: AVX-512/AVX2 on x64, NEON on arm64).</summary>
public static class VectorMath
{
    /// <summary><c>y += a·x</c>.</summary>
    public static void Axpy(float a, ReadOnlySpan<float> x, Span<float> y)
    {
        if (x.Length != y.Length) throw new ArgumentException($"Length mismatch: {x.Length} vs {y.Length}.");
        ref float rx = ref MemoryMarshal.GetReference(x);
        ref float ry = ref MemoryMarshal.GetReference(y);
        int n = x.Length, i = 0, w = Vector<float>.Count;
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

    /// <summary>Sum of squares, each square widened to double before it is added, so million-coordinate updates keep full precision.</summary>
    public static double SumOfSquares(ReadOnlySpan<float> x)
    {
        double sum = 0;
        int i = 0;
        if (Vector.IsHardwareAccelerated && x.Length >= Vector<float>.Count)
        {
            var acc0 = Vector<double>.Zero;
            var acc1 = Vector<double>.Zero;
            var vectors = MemoryMarshal.Cast<float, Vector<float>>(x);
            foreach (var v in vectors)
            {
                Vector.Widen(v, out Vector<double> lo, out Vector<double> hi);
                acc0 += lo * lo;
                acc1 += hi * hi;
            }
            sum = Vector.Sum(acc0 + acc1);
            i = vectors.Length * Vector<float>.Count;
        }
        for (; i < x.Length; i++) sum += (double)x[i] * x[i];
        return sum;
    }

    /// <summary>Euclidean norm.</summary>
    public static double Norm(ReadOnlySpan<float> x) => Math.Sqrt(SumOfSquares(x));

    /// <summary>True when every value is finite (no NaN, no ±∞).</summary>
    public static bool AllFinite(ReadOnlySpan<float> x)
    {
        // A float is NaN or ±∞ exactly when its 8 exponent bits are all set: checked a vector at a time (the receive path runs
        // this over every plaintext update).
        var bits = System.Runtime.InteropServices.MemoryMarshal.Cast<float, int>(x);
        var exponent = new System.Numerics.Vector<int>(0x7F800000);
        int i = 0;
        for (; i <= bits.Length - System.Numerics.Vector<int>.Count; i += System.Numerics.Vector<int>.Count)
            if (System.Numerics.Vector.EqualsAny(new System.Numerics.Vector<int>(bits[i..]) & exponent, exponent)) return false;
        for (; i < x.Length; i++)
            if (!float.IsFinite(x[i])) return false;
        return true;
    }
}
