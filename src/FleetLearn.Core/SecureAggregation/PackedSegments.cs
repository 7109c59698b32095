using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace FleetLearn.Core.SecureAggregation;

/// <summary>m-bit values packed as <see cref="BitPacking"/> packs them, across the segments of a byte sequence: a received masked input, folded where it arrived.</summary>
/// <remarks>
/// The aggregator adds each masked input into its ring sum once; unpacking it into a <c>uint[dim]</c> first would write and
/// read 4 bytes a coordinate more than the wire carries. Whole-byte widths (m = 8, 16, 32; the default is 16) widen and add
/// a vector at a time straight from each segment, a value straddling two segments put together in a small buffer; any other
/// width unpacks a block of 4,096 values (a multiple of 8, so every block starts on a byte) into a pooled buffer and adds it.
/// </remarks>
public readonly struct PackedSegments
{
    private const int Block = 4096;

    /// <summary>
    /// <paramref name="count"/> values of <paramref name="bitWidth"/> bits in <paramref name="bytes"/>; throws
    /// <see cref="ArgumentException"/> unless it is exactly ⌈count·m / 8⌉ bytes with zero padding bits.
    /// </summary>
    public PackedSegments(ReadOnlySequence<byte> bytes, int count, int bitWidth)
    {
        if (bitWidth is < 1 or > 32) throw new ArgumentOutOfRangeException(nameof(bitWidth), bitWidth, "Bit width must be in [1, 32].");
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        long length = BitPacking.PackedLength(count, bitWidth);
        if (bytes.Length != length) throw new ArgumentException($"{count} values of {bitWidth} bits take {length} bytes, not {bytes.Length}.", nameof(bytes));
        int used = (int)((long)count * bitWidth % 8);
        if (used != 0 && bytes.Slice(length - 1).FirstSpan[0] >> used != 0) throw new ArgumentException("Packed values have non-zero padding bits.", nameof(bytes));
        Bytes = bytes;
        Count = count;
        BitWidth = bitWidth;
    }

    /// <summary>The packed bytes.</summary>
    public ReadOnlySequence<byte> Bytes { get; }

    /// <summary>Number of values.</summary>
    public int Count { get; }

    /// <summary>m.</summary>
    public int BitWidth { get; }

    /// <summary><c>sum[i] += value[i]</c> mod 2^32 for every value (the ring sum; reduced mod 2^m by whoever reads it).</summary>
    public void AddTo(Span<uint> sum)
    {
        if (sum.Length != Count) throw new ArgumentException($"The sum has {sum.Length} coordinates; {Count} values are packed.", nameof(sum));
        if (BitWidth is 8 or 16 or 32 && BitConverter.IsLittleEndian) AddWholeBytes(sum);
        else AddBlocks(sum);
    }

    /// <summary>
    /// <c>sum[i] += value[i]</c> mod 2^16, for 16-bit values: a sum in Z_2^16 (exact whenever only the sum mod 2^m, m ≤ 16,
    /// is read), added a vector of 16-bit lanes at a time with no widening.
    /// </summary>
    public void AddTo(Span<ushort> sum)
    {
        if (BitWidth != 16 || !BitConverter.IsLittleEndian) throw new InvalidOperationException($"16-bit lanes take 16-bit values (little-endian hosts); these have {BitWidth} bits.");
        if (sum.Length != Count) throw new ArgumentException($"The sum has {sum.Length} coordinates; {Count} values are packed.", nameof(sum));
        int index = 0;
        byte low = 0;
        bool carried = false;
        foreach (var memory in Bytes)
        {
            var span = memory.Span;
            if (span.IsEmpty) continue;
            if (carried)
            {
                sum[index++] += (ushort)(low | span[0] << 8);
                span = span[1..];
                carried = false;
            }
            int whole = span.Length / 2;
            AddLanes(MemoryMarshal.Cast<byte, ushort>(span[..(whole * 2)]), sum.Slice(index, whole));
            index += whole;
            if ((span.Length & 1) != 0) (low, carried) = (span[^1], true);
        }
    }

    /// <summary>Unpacks every value into <paramref name="values"/>.</summary>
    public void CopyTo(Span<uint> values)
    {
        values[..Count].Clear();
        AddTo(values[..Count]);
    }

    private void AddWholeBytes(Span<uint> sum)
    {
        int width = BitWidth / 8, index = 0, carried = 0;
        Span<byte> carry = stackalloc byte[4];
        foreach (var memory in Bytes)
        {
            var span = memory.Span;
            if (carried > 0)
            {
                int take = Math.Min(width - carried, span.Length);
                span[..take].CopyTo(carry[carried..]);
                carried += take;
                span = span[take..];
                if (carried < width) continue;
                sum[index++] += width switch { 1 => carry[0], 2 => BinaryPrimitives.ReadUInt16LittleEndian(carry), _ => BinaryPrimitives.ReadUInt32LittleEndian(carry) };
                carried = 0;
            }
            int whole = span.Length / width;
            var run = span[..(whole * width)];
            var target = sum.Slice(index, whole);
            switch (width)
            {
                case 1: AddWidened(run, target); break;
                case 2: AddWidened(MemoryMarshal.Cast<byte, ushort>(run), target); break;
                default: MaskPrg.AddInPlace(target, MemoryMarshal.Cast<byte, uint>(run)); break;
            }
            index += whole;
            carried = span.Length - whole * width;
            span[(whole * width)..].CopyTo(carry);
        }
    }

    private void AddBlocks(Span<uint> sum)
    {
        var packed = ArrayPool<byte>.Shared.Rent(Block * 4);
        var values = ArrayPool<uint>.Shared.Rent(Block);
        try
        {
            for (int start = 0; start < Count; start += Block)
            {
                int n = Math.Min(Block, Count - start);
                int length = (int)BitPacking.PackedLength(n, BitWidth);
                Bytes.Slice((long)start * BitWidth / 8, length).CopyTo(packed);
                if (!BitPacking.TryUnpack(packed.AsSpan(0, length), BitWidth, values.AsSpan(0, n)))
                    throw new InvalidOperationException("Packed values changed after they were checked."); // the constructor checked length and padding
                MaskPrg.AddInPlace(sum.Slice(start, n), values.AsSpan(0, n));
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(packed);
            ArrayPool<uint>.Shared.Return(values);
        }
    }

    /// <summary><c>sum[i] += source[i]</c> mod 2^16, a vector at a time.</summary>
    private static void AddLanes(ReadOnlySpan<ushort> source, Span<ushort> sum)
    {
        ref ushort s = ref MemoryMarshal.GetReference(source);
        ref ushort d = ref MemoryMarshal.GetReference(sum);
        int n = source.Length, i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i <= n - Vector512<ushort>.Count; i += Vector512<ushort>.Count)
                (Vector512.LoadUnsafe(ref d, (nuint)i) + Vector512.LoadUnsafe(ref s, (nuint)i)).StoreUnsafe(ref d, (nuint)i);
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            for (; i <= n - Vector256<ushort>.Count; i += Vector256<ushort>.Count)
                (Vector256.LoadUnsafe(ref d, (nuint)i) + Vector256.LoadUnsafe(ref s, (nuint)i)).StoreUnsafe(ref d, (nuint)i);
        }
        for (; i < n; i++) sum[i] += source[i];
    }

    /// <summary><c>sum[i] += source[i]</c>, 16-bit values widened a vector at a time.</summary>
    private static void AddWidened(ReadOnlySpan<ushort> source, Span<uint> sum)
    {
        ref ushort s = ref MemoryMarshal.GetReference(source);
        ref uint d = ref MemoryMarshal.GetReference(sum);
        int n = source.Length, i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i <= n - Vector512<ushort>.Count; i += Vector512<ushort>.Count)
            {
                var (lo, hi) = Vector512.Widen(Vector512.LoadUnsafe(ref s, (nuint)i));
                (Vector512.LoadUnsafe(ref d, (nuint)i) + lo).StoreUnsafe(ref d, (nuint)i);
                (Vector512.LoadUnsafe(ref d, (nuint)(i + Vector512<uint>.Count)) + hi).StoreUnsafe(ref d, (nuint)(i + Vector512<uint>.Count));
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            for (; i <= n - Vector256<ushort>.Count; i += Vector256<ushort>.Count)
            {
                var (lo, hi) = Vector256.Widen(Vector256.LoadUnsafe(ref s, (nuint)i));
                (Vector256.LoadUnsafe(ref d, (nuint)i) + lo).StoreUnsafe(ref d, (nuint)i);
                (Vector256.LoadUnsafe(ref d, (nuint)(i + Vector256<uint>.Count)) + hi).StoreUnsafe(ref d, (nuint)(i + Vector256<uint>.Count));
            }
        }
        for (; i < n; i++) sum[i] += source[i];
    }

    /// <summary><c>sum[i] += source[i]</c>, 8-bit values widened a vector at a time.</summary>
    private static void AddWidened(ReadOnlySpan<byte> source, Span<uint> sum)
    {
        ref byte s = ref MemoryMarshal.GetReference(source);
        ref uint d = ref MemoryMarshal.GetReference(sum);
        int n = source.Length, i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; i <= n - Vector256<byte>.Count; i += Vector256<byte>.Count)
            {
                var (lo, hi) = Vector256.Widen(Vector256.LoadUnsafe(ref s, (nuint)i));
                var (a, b) = Vector256.Widen(lo);
                var (c, e) = Vector256.Widen(hi);
                int w = Vector256<uint>.Count;
                (Vector256.LoadUnsafe(ref d, (nuint)i) + a).StoreUnsafe(ref d, (nuint)i);
                (Vector256.LoadUnsafe(ref d, (nuint)(i + w)) + b).StoreUnsafe(ref d, (nuint)(i + w));
                (Vector256.LoadUnsafe(ref d, (nuint)(i + 2 * w)) + c).StoreUnsafe(ref d, (nuint)(i + 2 * w));
                (Vector256.LoadUnsafe(ref d, (nuint)(i + 3 * w)) + e).StoreUnsafe(ref d, (nuint)(i + 3 * w));
            }
        }
        for (; i < n; i++) sum[i] += source[i];
    }
}
