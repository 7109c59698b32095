using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;

namespace FleetLearn.Core.Privacy;

/// <summary>
/// The default <see cref="INoiseSource"/>: uniform bits from the operating system's CSPRNG
/// (<see cref="RandomNumberGenerator"/>), turned into Gaussians with the Box–Muller transform on doubles.
/// </summary>
/// <remarks>
/// Each uniform carries 53 bits; Box–Muller's radius uses u ∈ (0, 1], so draws are bounded by
/// √(2·53·ln 2) ≈ 8.57 (tail mass beyond that is 1e-17). Floating-point sampling is not bit-exact
/// DP (Mironov 2012, "On significance of the least significant bits"); the secure-aggregation path
/// should move to the distributed discrete Gaussian (Kairouz et al. 2021) when integers are summed.
/// Not thread-safe: one instance per thread.
/// </remarks>
public sealed class SecureNoiseSource : INoiseSource
{
    private const double TwoPow53Inv = 1.0 / 9007199254740992.0;
    private readonly byte[] _buffer = new byte[8192];
    private int _position;

    /// <summary>Creates a source backed by <see cref="RandomNumberGenerator"/>.</summary>
    public SecureNoiseSource() => _position = _buffer.Length;

    /// <inheritdoc />
    public double NextUniform() => (NextUInt64() >> 11) * TwoPow53Inv;

    /// <inheritdoc />
    public void FillStandardNormal(Span<double> destination)
    {
        int i = 0;
        for (; i + 1 < destination.Length; i += 2)
        {
            (destination[i], destination[i + 1]) = BoxMuller(NextUInt64(), NextUInt64());
        }
        if (i < destination.Length) destination[i] = BoxMuller(NextUInt64(), NextUInt64()).Z0;
    }

    /// <summary>Box–Muller on two 64-bit words: u1 ∈ (0, 1] (so log is finite), u2 ∈ [0, 1).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static (double Z0, double Z1) BoxMuller(ulong a, ulong b)
    {
        double u1 = ((a >> 11) + 1) * TwoPow53Inv;
        double u2 = (b >> 11) * TwoPow53Inv;
        double r = Math.Sqrt(-2.0 * Math.Log(u1));
        (double s, double c) = Math.SinCos(2.0 * Math.PI * u2);
        return (r * c, r * s);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong NextUInt64()
    {
        if (_position > _buffer.Length - 8)
        {
            RandomNumberGenerator.Fill(_buffer);
            _position = 0;
        }
        ulong v = BinaryPrimitives.ReadUInt64LittleEndian(_buffer.AsSpan(_position));
        _position += 8;
        return v;
    }
}
