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
    /// <c>y += Σₖ aₖ·xₖ</c> over up to four inputs in one pass, so <paramref name="y"/> is read and
    /// written once for several inputs (the memory-bound part of aggregation).
    /// </summary>
    public static void AxpyMany(ReadOnlySpan<float> a, ReadOnlySpan<ReadOnlyMemory<float>> x, Span<float> y)
    {
        if (a.Length != x.Length) throw new ArgumentException("One coefficient per input is required.");
        int k = 0;
        for (; k + 4 <= x.Length; k += 4)
            Axpy4(a[k], x[k].Span, a[k + 1], x[k + 1].Span, a[k + 2], x[k + 2].Span, a[k + 3], x[k + 3].Span, y);
        for (; k < x.Length; k++) Axpy(a[k], x[k].Span, y);
    }

    private static void Axpy4(float a0, ReadOnlySpan<float> x0, float a1, ReadOnlySpan<float> x1, float a2, ReadOnlySpan<float> x2, float a3, ReadOnlySpan<float> x3, Span<float> y)
    {
        int n = y.Length;
        if (x0.Length != n || x1.Length != n || x2.Length != n || x3.Length != n) throw new ArgumentException("Length mismatch.");
        ref float r0 = ref MemoryMarshal.GetReference(x0);
        ref float r1 = ref MemoryMarshal.GetReference(x1);
        ref float r2 = ref MemoryMarshal.GetReference(x2);
        ref float r3 = ref MemoryMarshal.GetReference(x3);
        ref float ry = ref MemoryMarshal.GetReference(y);
        var v0 = new Vector<float>(a0);
        var v1 = new Vector<float>(a1);
        var v2 = new Vector<float>(a2);
        var v3 = new Vector<float>(a3);
        int i = 0, w = Vector<float>.Count;
        for (; i <= n - w; i += w)
        {
            ref float py = ref Unsafe.Add(ref ry, i);
            var acc = Vector.LoadUnsafe(ref py);
            acc = Vector.FusedMultiplyAdd(v0, Vector.LoadUnsafe(ref Unsafe.Add(ref r0, i)), acc);
            acc = Vector.FusedMultiplyAdd(v1, Vector.LoadUnsafe(ref Unsafe.Add(ref r1, i)), acc);
            acc = Vector.FusedMultiplyAdd(v2, Vector.LoadUnsafe(ref Unsafe.Add(ref r2, i)), acc);
            acc = Vector.FusedMultiplyAdd(v3, Vector.LoadUnsafe(ref Unsafe.Add(ref r3, i)), acc);
            acc.StoreUnsafe(ref py);
        }
        for (; i < n; i++)
        {
            float s = Unsafe.Add(ref ry, i);
            s = MathF.FusedMultiplyAdd(a0, Unsafe.Add(ref r0, i), s);
            s = MathF.FusedMultiplyAdd(a1, Unsafe.Add(ref r1, i), s);
            s = MathF.FusedMultiplyAdd(a2, Unsafe.Add(ref r2, i), s);
            s = MathF.FusedMultiplyAdd(a3, Unsafe.Add(ref r3, i), s);
            Unsafe.Add(ref ry, i) = s;
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

    /// <summary>Sum of squares, accumulated in double for accuracy over millions of coordinates.</summary>
    public static double SumOfSquares(ReadOnlySpan<float> x)
    {
        int n = x.Length, i = 0, w = Vector<float>.Count;
        ref float rx = ref MemoryMarshal.GetReference(x);
        double total = 0;
        // Blocks of up to 4096 floats are summed in float vectors, then folded into a double.
        while (i <= n - w)
        {
            int end = Math.Min(n - w, i + 4096);
            var acc = Vector<float>.Zero;
            for (; i <= end; i += w)
            {
                var v = Vector.LoadUnsafe(ref Unsafe.Add(ref rx, i));
                acc = Vector.FusedMultiplyAdd(v, v, acc);
            }
            total += Vector.Sum(acc);
        }
        for (; i < n; i++) total += (double)Unsafe.Add(ref rx, i) * Unsafe.Add(ref rx, i);
        return total;
    }

    /// <summary>Euclidean norm.</summary>
    public static double Norm(ReadOnlySpan<float> x) => Math.Sqrt(SumOfSquares(x));

    /// <summary>True when every value is finite (no NaN, no ±∞).</summary>
    public static bool AllFinite(ReadOnlySpan<float> x)
    {
        foreach (var v in x)
        {
            if (!float.IsFinite(v)) return false;
        }
        return true;
    }
}
