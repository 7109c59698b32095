namespace FleetLearn.Onnx.Tests;

public sealed class ProtobufTests
{
    [Fact]
    public void Writer_KnownEncodings_MatchTheProtobufSpec()
    {
        // Examples from the protobuf encoding guide: field 1 = 150 → 08 96 01; field 2 = "testing".
        Assert.Equal(new byte[] { 0x08, 0x96, 0x01 }, new ProtoWriter().Int64(1, 150).ToArray());
        Assert.Equal(new byte[] { 0x12, 0x07, 0x74, 0x65, 0x73, 0x74, 0x69, 0x6e, 0x67 }, new ProtoWriter().String(2, "testing").ToArray());
        // Negative int64 takes ten bytes.
        Assert.Equal(11, new ProtoWriter().Int64(1, -1).ToArray().Length);
        // Float is fixed32 little-endian: tag (2<<3)|5 = 0x15.
        Assert.Equal(new byte[] { 0x15, 0x00, 0x00, 0x80, 0x3f }, new ProtoWriter().Float(2, 1f).ToArray());
    }

    [Fact]
    public void Reader_WhatTheWriterWrote_RoundTrips()
    {
        var bytes = new ProtoWriter().Int64(1, 1L << 40).String(2, "héllo").Message(3, m => m.Int64(1, 7)).Float(4, 2.5f).ToArray();
        var reader = new ProtoReader(bytes);
        Assert.True(reader.TryRead(out var a));
        Assert.Equal((1, 1UL << 40), (a.Number, a.Value));
        Assert.True(reader.TryRead(out var b));
        Assert.Equal("héllo", b.Text);
        Assert.True(reader.TryRead(out var c));
        var inner = new ProtoReader(c.Payload);
        Assert.True(inner.TryRead(out var d));
        Assert.Equal(7UL, d.Value);
        Assert.True(reader.TryRead(out var e));
        Assert.Equal(2.5f, BitConverter.UInt32BitsToSingle((uint)e.Value));
        Assert.False(reader.TryRead(out _));
    }

    [Theory]
    [InlineData(new byte[] { 0x12, 0x05, 0x61 }, "claims 5 bytes")]
    [InlineData(new byte[] { 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01 }, "longer than 10 bytes")]
    [InlineData(new byte[] { 0x0b }, "groups are not used")]
    [InlineData(new byte[] { 0x08 }, "truncated varint")]
    public void Reader_Malformed_ClearError(byte[] bytes, string expected)
    {
        var e = Assert.Throws<InvalidDataException>(() =>
        {
            var reader = new ProtoReader(bytes);
            while (reader.TryRead(out _)) { }
        });
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
    }
}
