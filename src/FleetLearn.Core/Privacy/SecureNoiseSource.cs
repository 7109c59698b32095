using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;

namespace FleetLearn.Core.Privacy;

/// <summary>
/// The default <see cref="INoiseSource"/>: uniform bits from the operating system's CSPRNG
/// (<see cref="RandomNumberGenerator"/>), turned into Gaussians with the Box–Muller transform on doubles.
/// </summary>
/// <remarks>
/// Uniforms carry 53 bits; the Ziggurat's tail uses u ∈ (0, 1], so draws are exact in distribution up to
/// the 53-bit grid. Floating-point sampling is not bit-exact
/// DP (Mironov 2012, "On significance of the least significant bits"); the secure-aggregation path
/// should move to the distributed discrete Gaussian (Kairouz et al. 2021) when integers are summed.
/// Not thread-safe: one instance per thread.
/// </remarks>
public sealed class SecureNoiseSource : INoiseSource, IUniformBits
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
        for (int i = 0; i < destination.Length; i++) destination[i] = ZigguratNormal.Sample(this);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    ulong IUniformBits.NextUInt64() => NextUInt64();

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
