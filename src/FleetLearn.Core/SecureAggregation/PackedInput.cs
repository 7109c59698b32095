namespace FleetLearn.Core.SecureAggregation;

/// <summary>An encoded secure-aggregation input held at the round's m bits per value (<see cref="BitPacking"/>) until it is masked.</summary>
/// <remarks>
/// A vehicle's input waits from the end of its training until the forwarded shares arrive; at 1,000 agents in one process those
/// are a thousand 2^18-value inputs at once. As <c>uint[]</c> each is 1 MB; at m = 20 bits it is 640 KiB (docs/scale.md).
/// </remarks>
public sealed class PackedInput
{
    private readonly byte[] _packed;

    private PackedInput(byte[] packed, int count, int bits) => (_packed, Count, Bits) = (packed, count, bits);

    /// <summary>Values held.</summary>
    public int Count { get; }

    /// <summary>Bits per value.</summary>
    public int Bits { get; }

    /// <summary>Bytes held.</summary>
    public int PackedBytes => _packed.Length;

    /// <summary>
    /// <paramref name="values"/> packed at <paramref name="bits"/> bits each, or null when a value does not fit (it is then kept
    /// unpacked, so that the masking step still sees it and refuses it with its own message).
    /// </summary>
    public static PackedInput? TryPack(ReadOnlySpan<uint> values, int bits)
    {
        if (bits is < 1 or > 32) throw new ArgumentOutOfRangeException(nameof(bits), bits, "Bits per value must be in [1, 32].");
        uint mask = bits == 32 ? uint.MaxValue : (1u << bits) - 1;
        foreach (uint v in values)
            if (v > mask) return null;
        var packed = new byte[BitPacking.PackedLength(values.Length, bits)];
        BitPacking.Pack(values, bits, packed);
        return new PackedInput(packed, values.Length, bits);
    }

    /// <summary>The values, unpacked into a fresh array: exactly those packed.</summary>
    public uint[] Unpack()
    {
        var values = new uint[Count];
        if (!BitPacking.TryUnpack(_packed, Bits, values)) throw new InvalidOperationException("A packed input no longer unpacks."); // cannot happen: written by TryPack
        return values;
    }
}
