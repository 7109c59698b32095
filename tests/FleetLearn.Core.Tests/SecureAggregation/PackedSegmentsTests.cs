using System.Buffers;
using CsCheck;
using FleetLearn.Core.SecureAggregation;
using FleetLearn.Testing;

namespace FleetLearn.Core.Tests.SecureAggregation;

public sealed class PackedSegmentsTests
{
    [Fact]
    public void AddTo_AnyWidthAnyCut_AddsExactlyTheUnpackedValues()
    {
        Gen.Select(Gen.Int[1, 32], Gen.Int[1, 9000], Gen.Int[0, 40_000].Array[0, 10], Gen.UInt).Sample((m, n, cuts, seed) =>
        {
            uint mask = m == 32 ? uint.MaxValue : (1u << m) - 1;
            var rng = new System.Random((int)seed);
            var values = Enumerable.Range(0, n).Select(_ => (uint)rng.NextInt64() & mask).ToArray();
            var sum = Enumerable.Range(0, n).Select(_ => (uint)rng.NextInt64()).ToArray();
            var bytes = new byte[BitPacking.PackedLength(n, m)];
            BitPacking.Pack(values, m, bytes);
            var expected = sum.Select((s, i) => unchecked(s + values[i])).ToArray();
            var packed = new PackedSegments(Segments.Cut(bytes, cuts), n, m);
            packed.AddTo(sum);
            Assert.Equal(expected, sum);
            var unpacked = new uint[n];
            packed.CopyTo(unpacked);
            Assert.Equal(values, unpacked);
        }, iter: 300);
    }

    [Fact]
    public void AddTo16BitLanes_AnyCut_AddsModulo2To16()
    {
        Gen.Select(Gen.UShort.Array[1, 5000], Gen.UShort.Array[1, 5000], Gen.Int[0, 12_000].Array[0, 10]).Sample((values, start, cuts) =>
        {
            int n = Math.Min(values.Length, start.Length);
            var bytes = new byte[2 * n];
            BitPacking.Pack([.. values[..n].Select(v => (uint)v)], 16, bytes);
            var sum = start[..n].ToArray();
            new PackedSegments(Segments.Cut(bytes, cuts), n, 16).AddTo(sum.AsSpan());
            Assert.Equal(start[..n].Select((s, i) => (ushort)(s + values[i])).ToArray(), sum);
        });
        var e = Assert.Throws<InvalidOperationException>(() => new PackedSegments(new ReadOnlySequence<byte>(new byte[3]), 3, 8).AddTo(new ushort[3].AsSpan()));
        Assert.Equal("16-bit lanes take 16-bit values (little-endian hosts); these have 8 bits.", e.Message);
    }

    [Fact]
    public void Constructor_NonZeroPaddingOrWrongLength_Throws()
    {
        // 3 values of 3 bits: 9 bits in 2 bytes, the top 7 bits of the second byte are padding.
        var e = Assert.Throws<ArgumentException>(() => new PackedSegments(new ReadOnlySequence<byte>(new byte[] { 0xFF, 0x03 }), 3, 3));
        Assert.StartsWith("Packed values have non-zero padding bits.", e.Message, StringComparison.Ordinal);
        var f = Assert.Throws<ArgumentException>(() => new PackedSegments(new ReadOnlySequence<byte>(new byte[3]), 3, 3));
        Assert.StartsWith("3 values of 3 bits take 2 bytes, not 3.", f.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void SecAggDecode_MaskedInputInSegments_KeepsItPackedWithTheSameValues()
    {
        Gen.Select(Gen.Int[1, 32], Gen.UInt.Array[1, 3000], Gen.Int[0, 14_000].Array[0, 8]).Sample((m, raw, cuts) =>
        {
            uint mask = m == 32 ? uint.MaxValue : (1u << m) - 1;
            var message = new MaskedInputMessage(7, 3, m, [.. raw.Select(x => x & mask)]);
            var bytes = SecAggCodec.Encode(message);
            var decoded = Assert.IsType<MaskedInputMessage>(SecAggCodec.Decode(Segments.Cut(bytes, cuts), 7));
            Assert.NotNull(decoded.Packed);
            Assert.Equal((3, m, raw.Length), (decoded.VehicleId, decoded.BitWidth, decoded.Count));
            Assert.Equal(message.Values.ToArray(), decoded.Values.ToArray());
            Assert.Equal(bytes, SecAggCodec.Encode(decoded)); // re-encoded from the packed bytes as they are
        }, iter: 200);
    }

    [Fact]
    public void SecAggDecode_FirstSegmentOfOneByte_StillKeepsItPacked()
    {
        // Found by the property above in a CI rehearsal (m = 20, cuts at 1, 39, 86): the message type, the second byte, was
        // looked for in the first segment only, so such a cut decoded into an array instead.
        var message = new MaskedInputMessage(7, 3, 20, [.. Enumerable.Range(0, 1062).Select(i => (uint)(i * 977) & 0xFFFFF)]);
        var bytes = SecAggCodec.Encode(message);
        var decoded = Assert.IsType<MaskedInputMessage>(SecAggCodec.Decode(Segments.Cut(bytes, [1, 39, 86]), 7));
        Assert.NotNull(decoded.Packed);
        Assert.Equal(message.Values.ToArray(), decoded.Values.ToArray());
    }

    [Fact]
    public void SecAggDecode_MaskedInputInSegmentsWithPaddingBitsSet_IsRefusedAsTheSpanDecoderRefusesIt()
    {
        var bytes = SecAggCodec.Encode(new MaskedInputMessage(1, 0, 3, [7, 7, 7])); // 9 bits in 2 bytes
        bytes[^1] |= 0x80;
        var e = Assert.Throws<SecAggFormatException>(() => SecAggCodec.Decode(Segments.Cut(bytes, [5, 18]), 1));
        Assert.Equal("Masked input has non-zero padding bits.", e.Message);
        Assert.Equal(e.Message, Assert.Throws<SecAggFormatException>(() => SecAggCodec.Decode(bytes, 1)).Message);
        var truncated = SecAggCodec.Encode(new MaskedInputMessage(1, 0, 16, [1, 2, 3]))[..^1];
        Assert.Equal("Masked input of 3 × 16 bits needs 6 bytes, got 5.", Assert.Throws<SecAggFormatException>(() => SecAggCodec.Decode(Segments.Cut(truncated, [4]), 1)).Message);
    }
}
