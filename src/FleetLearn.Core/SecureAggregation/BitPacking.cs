using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.InteropServices;

namespace FleetLearn.Core.SecureAggregation;

/// <summary>Packs m-bit values LSB-first into bytes (value i occupies bits [i·m, (i+1)·m)); the last byte's unused high bits are zero.</summary>
public static class BitPacking
{
    /// <summary>⌈count·m / 8⌉.</summary>
    public static long PackedLength(long count, int bits) => (count * bits + 7) / 8;

    /// <summary>Packs <paramref name="values"/> (each &lt; 2^bits) into <paramref name="destination"/>.</summary>
    public static void Pack(ReadOnlySpan<uint> values, int bits, Span<byte> destination)
    {
        if (bits == 32 && BitConverter.IsLittleEndian)
        {
            MemoryMarshal.AsBytes(values).CopyTo(destination);
            return;
        }
        ulong buffer = 0;
        int filled = 0, o = 0;
        ulong mask = bits == 32 ? uint.MaxValue : (1UL << bits) - 1;
        foreach (uint v in values)
        {
            buffer |= (v & mask) << filled;
            filled += bits;
            while (filled >= 8)
            {
                destination[o++] = (byte)buffer;
                buffer >>= 8;
                filled -= 8;
            }
        }
        if (filled > 0) destination[o] = (byte)buffer;
    }

    /// <summary>Unpacks; returns false when the source has the wrong length or non-zero padding bits.</summary>
    public static bool TryUnpack(ReadOnlySpan<byte> source, int bits, Span<uint> values)
    {
        if (source.Length != PackedLength(values.Length, bits)) return false;
        if (bits == 32)
        {
            if (BitConverter.IsLittleEndian) source.CopyTo(MemoryMarshal.AsBytes(values));
            else for (int i = 0; i < values.Length; i++) values[i] = BinaryPrimitives.ReadUInt32LittleEndian(source[(4 * i)..]);
            return true;
        }
        // Whole-byte widths (the aggregator's common case: m = 16) widen with SIMD; they have no padding bits.
        if (bits == 16 && BitConverter.IsLittleEndian)
        {
            Widen(MemoryMarshal.Cast<byte, ushort>(source), values);
            return true;
        }
        if (bits == 8)
        {
            Widen(source, values);
            return true;
        }
        ulong buffer = 0;
        int filled = 0, s = 0;
        uint mask = (1u << bits) - 1;
        for (int i = 0; i < values.Length; i++)
        {
            while (filled < bits)
            {
                buffer |= (ulong)source[s++] << filled;
                filled += 8;
            }
            values[i] = (uint)buffer & mask;
            buffer >>= bits;
            filled -= bits;
        }
        return buffer == 0; // canonical: padding bits must be zero
    }

    private static void Widen(ReadOnlySpan<ushort> source, Span<uint> values)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            for (; i <= source.Length - Vector<ushort>.Count; i += Vector<ushort>.Count)
            {
                Vector.Widen(new Vector<ushort>(source[i..]), out var low, out var high);
                low.CopyTo(values[i..]);
                high.CopyTo(values[(i + Vector<uint>.Count)..]);
            }
        }
        for (; i < source.Length; i++) values[i] = source[i];
    }

    private static void Widen(ReadOnlySpan<byte> source, Span<uint> values)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            for (; i <= source.Length - Vector<byte>.Count; i += Vector<byte>.Count)
            {
                Vector.Widen(new Vector<byte>(source[i..]), out var low, out var high);
                Vector.Widen(low, out var a, out var b);
                Vector.Widen(high, out var c, out var d);
                a.CopyTo(values[i..]);
                b.CopyTo(values[(i + Vector<uint>.Count)..]);
                c.CopyTo(values[(i + 2 * Vector<uint>.Count)..]);
                d.CopyTo(values[(i + 3 * Vector<uint>.Count)..]);
            }
        }
        for (; i < source.Length; i++) values[i] = source[i];
    }
}
