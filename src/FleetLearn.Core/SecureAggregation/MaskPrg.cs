using System.Buffers;
using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace FleetLearn.Core.SecureAggregation;

/// <summary>
/// The mask PRG: AES-256 in counter mode (NIST SP 800-38A §6.5) keyed with a full 256-bit seed.
/// Counter blocks are 128-bit big-endian integers starting at 0 (incremented mod 2^128); they are
/// encrypted thousands at a time with <c>Aes.EncryptEcb</c>,
/// which runs on AES-NI. Mask word i is the little-endian uint32 at keystream bytes [4i, 4i + 4).
/// </summary>
/// <remarks>
/// Masks mod 2^m (m ≤ 32) are word &amp; (2^m − 1): every keystream bit is uniform, so the low m bits
/// are uniform on [0, 2^m) with no bias and no missing top value. Because 2^m divides 2^32, all
/// mask arithmetic is done with wrapping uint32 adds and reduced mod 2^m once at the end.
/// </remarks>
public static class MaskPrg
{
    /// <summary>Seed (AES-256 key) length in bytes.</summary>
    public const int SeedBytes = 32;

    private const int ChunkBlocks = 4096; // 64 KiB of counters and keystream per EncryptEcb call

    /// <summary>Writes AES-CTR keystream for <paramref name="key"/> (16, 24 or 32 bytes) starting at <paramref name="initialCounter"/>.</summary>
    public static void Keystream(ReadOnlySpan<byte> key, ReadOnlySpan<byte> initialCounter, Span<byte> destination)
    {
        if (initialCounter.Length != 16) throw new ArgumentException("The initial counter block must be 16 bytes.", nameof(initialCounter));
        using var aes = Aes.Create();
        aes.Key = key.ToArray();
        UInt128 start = BinaryPrimitives.ReadUInt128BigEndian(initialCounter);
        byte[] counters = ArrayPool<byte>.Shared.Rent(ChunkBlocks * 16);
        byte[] stream = ArrayPool<byte>.Shared.Rent(ChunkBlocks * 16);
        try
        {
            int blocksDone = 0;
            while (destination.Length > 0)
            {
                int blocks = Math.Min(ChunkBlocks, (destination.Length + 15) / 16);
                FillCounters(counters.AsSpan(0, blocks * 16), start + (UInt128)(uint)blocksDone);
                aes.EncryptEcb(counters.AsSpan(0, blocks * 16), stream.AsSpan(0, blocks * 16), PaddingMode.None);
                int take = Math.Min(destination.Length, blocks * 16);
                stream.AsSpan(0, take).CopyTo(destination);
                destination = destination[take..];
                blocksDone += blocks;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(counters);
            ArrayPool<byte>.Shared.Return(stream, clearArray: true);
        }
    }

    /// <summary>Adds (or subtracts) the mask expanded from <paramref name="seed"/> to <paramref name="accumulator"/>, wrapping mod 2^32.</summary>
    public static void Apply(ReadOnlySpan<byte> seed, Span<uint> accumulator, bool subtract)
    {
        if (seed.Length != SeedBytes) throw new ArgumentException($"A mask seed must be {SeedBytes} bytes.", nameof(seed));
        using var aes = Aes.Create();
        aes.Key = seed.ToArray();
        byte[] counters = ArrayPool<byte>.Shared.Rent(ChunkBlocks * 16);
        byte[] stream = ArrayPool<byte>.Shared.Rent(ChunkBlocks * 16);
        try
        {
            UInt128 block = 0;
            int offset = 0;
            while (offset < accumulator.Length)
            {
                int words = Math.Min(ChunkBlocks * 4, accumulator.Length - offset);
                int blocks = (words + 3) / 4;
                FillCounters(counters.AsSpan(0, blocks * 16), block);
                aes.EncryptEcb(counters.AsSpan(0, blocks * 16), stream.AsSpan(0, blocks * 16), PaddingMode.None);
                var mask = MemoryMarshal.Cast<byte, uint>(stream.AsSpan(0, words * 4));
                if (!BitConverter.IsLittleEndian) BinaryPrimitives.ReverseEndianness(mask, mask);
                var target = accumulator.Slice(offset, words);
                if (subtract) SubtractInPlace(target, mask); else AddInPlace(target, mask);
                offset += words;
                block += (uint)blocks;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(counters);
            ArrayPool<byte>.Shared.Return(stream, clearArray: true);
        }
    }

    /// <summary>The first <paramref name="count"/> masks mod 2^<paramref name="bitWidth"/> from <paramref name="seed"/>.</summary>
    public static uint[] Generate(ReadOnlySpan<byte> seed, int count, int bitWidth)
    {
        if (bitWidth is < 1 or > 32) throw new ArgumentOutOfRangeException(nameof(bitWidth), bitWidth, "Bit width must be in [1, 32].");
        var result = new uint[count];
        Apply(seed, result, subtract: false);
        uint m = bitWidth == 32 ? uint.MaxValue : (1u << bitWidth) - 1;
        for (int i = 0; i < result.Length; i++) result[i] &= m;
        return result;
    }

    private static void FillCounters(Span<byte> counters, UInt128 start)
    {
        int blocks = counters.Length / 16;
        ulong hi = (ulong)(start >> 64), lo = (ulong)start;
        if (lo <= ulong.MaxValue - (ulong)blocks)
        {
            // Fast path: no carry into the high half inside this chunk.
            ulong hiBe = BinaryPrimitives.ReverseEndianness(hi);
            var pairs = MemoryMarshal.Cast<byte, ulong>(counters);
            if (BitConverter.IsLittleEndian)
            {
                for (int i = 0; i < blocks; i++)
                {
                    pairs[2 * i] = hiBe;
                    pairs[2 * i + 1] = BinaryPrimitives.ReverseEndianness(lo + (ulong)i);
                }
                return;
            }
        }
        for (int i = 0; i < blocks; i++)
            BinaryPrimitives.WriteUInt128BigEndian(counters.Slice(i * 16, 16), start + (UInt128)(uint)i);
    }

    internal static void AddInPlace(Span<uint> target, ReadOnlySpan<uint> source)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated && target.Length >= Vector<uint>.Count)
        {
            var t = MemoryMarshal.Cast<uint, Vector<uint>>(target);
            var s = MemoryMarshal.Cast<uint, Vector<uint>>(source[..target.Length]);
            for (int j = 0; j < t.Length; j++) t[j] += s[j];
            i = t.Length * Vector<uint>.Count;
        }
        for (; i < target.Length; i++) target[i] += source[i];
    }

    internal static void SubtractInPlace(Span<uint> target, ReadOnlySpan<uint> source)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated && target.Length >= Vector<uint>.Count)
        {
            var t = MemoryMarshal.Cast<uint, Vector<uint>>(target);
            var s = MemoryMarshal.Cast<uint, Vector<uint>>(source[..target.Length]);
            for (int j = 0; j < t.Length; j++) t[j] -= s[j];
            i = t.Length * Vector<uint>.Count;
        }
        for (; i < target.Length; i++) target[i] -= source[i];
    }
}

/// <summary>Sequential reader over the AES-CTR keystream (public randomness such as the graph order).</summary>
internal sealed class PrgStream
{
    private readonly byte[] _key;
    private readonly byte[] _buffer = new byte[4096];
    private UInt128 _nextBlock;
    private int _pos;

    public PrgStream(byte[] key)
    {
        _key = key;
        _pos = _buffer.Length;
    }

    public uint NextUInt32()
    {
        if (_pos + 4 > _buffer.Length)
        {
            Span<byte> ctr = stackalloc byte[16];
            BinaryPrimitives.WriteUInt128BigEndian(ctr, _nextBlock);
            MaskPrg.Keystream(_key, ctr, _buffer);
            _nextBlock += (UInt128)(_buffer.Length / 16);
            _pos = 0;
        }
        uint v = BinaryPrimitives.ReadUInt32LittleEndian(_buffer.AsSpan(_pos));
        _pos += 4;
        return v;
    }

    /// <summary>Uniform in [0, n) by rejection (no modulo bias).</summary>
    public uint NextBelow(uint n)
    {
        uint limit = uint.MaxValue - uint.MaxValue % n; // accept v < limit: limit is a multiple of n
        while (true)
        {
            uint v = NextUInt32();
            if (v < limit) return v % n;
        }
    }
}
