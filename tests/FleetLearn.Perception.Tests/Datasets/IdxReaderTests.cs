using System.Buffers.Binary;
using System.IO.Compression;
using CsCheck;
using FleetLearn.Perception.Datasets;

namespace FleetLearn.Perception.Tests.Datasets;

public sealed class IdxReaderTests
{
    private static byte[] Idx(int[] shape, byte[] data)
    {
        var bytes = new byte[4 + 4 * shape.Length + data.Length];
        bytes[2] = 0x08;
        bytes[3] = (byte)shape.Length;
        for (int d = 0; d < shape.Length; d++) BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(4 + 4 * d), shape[d]);
        data.CopyTo(bytes, 4 + 4 * shape.Length);
        return bytes;
    }

    private static byte[] Gzip(byte[] plain)
    {
        using var ms = new MemoryStream();
        using (var gz = new GZipStream(ms, CompressionLevel.Fastest)) gz.Write(plain);
        return ms.ToArray();
    }

    [Fact]
    public void ReadUBytes_PlainAndGzip_RoundTrip()
    {
        Gen.Select(Gen.Int[1, 5], Gen.Int[1, 4], Gen.Int[1, 4]).Sample((a, b, c) =>
        {
            var data = new byte[a * b * c];
            for (int i = 0; i < data.Length; i++) data[i] = (byte)(i * 7);
            foreach (var bytes in new[] { Idx([a, b, c], data), Gzip(Idx([a, b, c], data)) })
            {
                var t = IdxReader.ReadUBytes(new MemoryStream(bytes));
                Assert.Equal(new[] { a, b, c }, t.Shape);
                Assert.Equal(data, t.Data);
            }
        }, iter: 50);
    }

    [Fact]
    public void ReadUBytes_Truncated_SaysSo()
    {
        var bytes = Idx([2, 3], [1, 2, 3, 4, 5, 6]);
        var e = Assert.Throws<IdxFormatException>(() => IdxReader.ReadUBytes(new MemoryStream(bytes[..^1])));
        Assert.Contains("truncated", e.Message, StringComparison.Ordinal);
        Assert.Contains("got 5 of 6", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(new byte[] { 1, 0, 8, 1, 0, 0, 0, 1, 0 }, "bad magic")]
    [InlineData(new byte[] { 0, 0, 0x0D, 1, 0, 0, 0, 1, 0 }, "not unsigned byte")]
    [InlineData(new byte[] { 0, 0, 8, 9 }, "9 dimensions")]
    [InlineData(new byte[] { 0, 0, 8, 2, 0x7f, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff }, "exceeds the limit")]
    public void ReadUBytes_BadHeader_ClearError(byte[] bytes, string expected)
    {
        var e = Assert.Throws<IdxFormatException>(() => IdxReader.ReadUBytes(new MemoryStream(bytes)));
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ReadUBytes_GzipMagicThenGarbage_IsAFormatError()
    {
        // Found by the property test below (CsCheck seed 9enQeTz17hc1): gzip magic, then an invalid deflate block.
        byte[] bytes = [0x1f, 0x8b, 0xa5, 0x93, 0x5c, 0x84, 0x96, 0xf5, 0x15, 0xd5, 0x48, 0xa5];
        var e = Assert.Throws<IdxFormatException>(() => IdxReader.ReadUBytes(new MemoryStream(bytes)));
        Assert.Contains("gzip", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ReadUBytes_RandomBytes_OnlyEverThrowIdxFormatException()
    {
        Gen.Byte.Array[0, 64].Sample(bytes =>
        {
            try
            {
                IdxReader.ReadUBytes(new MemoryStream(bytes));
            }
            catch (IdxFormatException)
            {
            }
        });
    }
}
