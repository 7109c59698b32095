using System.Numerics;
using System.Runtime.InteropServices;
using FleetLearn.Core.Random;

namespace FleetLearn.Core.Compression;

/// <summary>
/// Randomized Hadamard rotation R = H·D/√n (Suresh et al. 2017, "Distributed Mean Estimation with Limited Communication", §4):
/// D flips signs drawn from a seed that every vehicle of the round shares, H is the Walsh–Hadamard matrix, applied in place in
/// O(n log n) by the fast transform. R is orthonormal (RᵀR = I), so ‖Rx‖ = ‖x‖ and R⁻¹ = D·H/√n; being linear, the server
/// can invert the rotated <i>sum</i> once. After rotation every coordinate of x is at most ‖x‖·√(2 ln(2n/β)/n) with
/// probability ≥ 1 − β (Hoeffding over the Rademacher signs), which is what lets a public quantization range stay small.
/// </summary>
public sealed class RandomizedHadamard
{
    private readonly ulong[] _signs;

    /// <summary>Creates the rotation of length <paramref name="length"/> (a power of two) with signs from <paramref name="seed"/>.</summary>
    public RandomizedHadamard(int length, ulong seed)
    {
        if (length < 1 || !BitOperations.IsPow2(length)) throw new ArgumentOutOfRangeException(nameof(length), length, "The Hadamard length must be a power of two.");
        Length = length;
        _signs = new ulong[(length + 63) / 64];
        var rng = DeterministicRandom.Derive(seed, 0x4AD4);
        for (int i = 0; i < _signs.Length; i++) _signs[i] = rng.NextUInt64();
    }

    /// <summary>n: the (padded) length.</summary>
    public int Length { get; }

    /// <summary>The smallest power of two ≥ <paramref name="dimension"/> (zero padding is appended up to it).</summary>
    public static int PaddedLength(int dimension)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(dimension);
        if (dimension > 1 << 30) throw new ArgumentOutOfRangeException(nameof(dimension), dimension, "Dimension too large for a rotation.");
        return (int)BitOperations.RoundUpToPowerOf2((uint)dimension);
    }

    /// <summary>x ← H·D·x/√n in place.</summary>
    public void Forward(Span<float> x)
    {
        CheckLength(x);
        FlipSigns(x);
        Transform(x);
    }

    /// <summary>x ← D·H·x/√n in place (the exact inverse of <see cref="Forward"/> up to float rounding).</summary>
    public void Inverse(Span<float> x)
    {
        CheckLength(x);
        Transform(x);
        FlipSigns(x);
    }

    private void CheckLength(Span<float> x)
    {
        if (x.Length != Length) throw new ArgumentException($"The vector has {x.Length} coordinates; the rotation has {Length}.", nameof(x));
    }

    private void FlipSigns(Span<float> x)
    {
        var bits = MemoryMarshal.Cast<float, uint>(x);
        for (int i = 0; i < bits.Length; i++) bits[i] ^= (uint)((_signs[i >> 6] >> (i & 63)) & 1) << 31;
    }

    /// <summary>The normalized fast Walsh–Hadamard transform in place (length a power of two).</summary>
    public static void Transform(Span<float> x)
    {
        int n = x.Length;
        if (n < 1 || !BitOperations.IsPow2(n)) throw new ArgumentException("The length must be a power of two.", nameof(x));
        int w = Vector<float>.Count;
        for (int h = 1; h < n; h <<= 1)
        {
            if (Vector.IsHardwareAccelerated && h >= w)
            {
                for (int start = 0; start < n; start += 2 * h)
                {
                    var a = MemoryMarshal.Cast<float, Vector<float>>(x.Slice(start, h));
                    var b = MemoryMarshal.Cast<float, Vector<float>>(x.Slice(start + h, h));
                    for (int j = 0; j < a.Length; j++)
                    {
                        var u = a[j];
                        var v = b[j];
                        a[j] = u + v;
                        b[j] = u - v;
                    }
                }
            }
            else
            {
                for (int start = 0; start < n; start += 2 * h)
                    for (int j = start; j < start + h; j++)
                    {
                        float u = x[j], v = x[j + h];
                        x[j] = u + v;
                        x[j + h] = u - v;
                    }
            }
        }
        float scale = (float)(1 / Math.Sqrt(n));
        Privacy.L2Clipping.Scale(x, scale);
    }

    /// <summary>Hoeffding bound t with P(|(Rx)_i| &gt; t for some i) ≤ β: ‖x‖·√(2 ln(2n/β)/n).</summary>
    public static double CoordinateBound(double norm, int length, double failureProbability) =>
        norm * Math.Sqrt(2 * Math.Log(2.0 * length / failureProbability) / length);
}
