using CsCheck;

namespace FleetLearn.Transport.Mqtt.Tests;

public sealed class EnvelopeTests
{
    private static readonly Gen<string> GenVehicle =
        Gen.Char["abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"].Array[1, 64].Select(c => new string(c));

    private static readonly Gen<Envelope> GenEnvelope =
        Gen.Select(Gen.Int[1, 4], GenVehicle, Gen.Long[0, long.MaxValue], Gen.Byte.Array[16], Gen.Byte.Array[0, 2000])
            .Select((k, v, r, id, p) => new Envelope((EnvelopeKind)k, v, r, new Guid(id), p));

    [Fact]
    public void Decode_EncodedEnvelope_RoundTrips()
    {
        GenEnvelope.Sample(e =>
        {
            var back = Envelope.Decode(e.Encode());
            Assert.Equal(e.Kind, back.Kind);
            Assert.Equal(e.Vehicle, back.Vehicle);
            Assert.Equal(e.Round, back.Round);
            Assert.Equal(e.UpdateId, back.UpdateId);
            Assert.True(e.Payload.Span.SequenceEqual(back.Payload.Span));
        });
    }

    [Fact]
    public void Decode_AnyTruncation_ThrowsWireFormatException()
    {
        GenEnvelope.SelectMany(e => Gen.Int[0, e.Encode().Length - 1].Select(n => (e, n))).Sample(t =>
        {
            var bytes = t.e.Encode();
            Assert.Throws<WireFormatException>(() => Envelope.Decode(bytes.AsSpan(0, t.n)));
        });
    }

    [Fact]
    public void Decode_TrailingBytes_ThrowsWireFormatException()
    {
        var bytes = new Envelope(EnvelopeKind.Update, "v1", 3, Guid.NewGuid(), new byte[10]).Encode();
        var longer = bytes.Concat(new byte[] { 0 }).ToArray();
        var e = Assert.Throws<WireFormatException>(() => Envelope.Decode(longer));
        Assert.Contains("trailing", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Decode_WrongVersion_ThrowsWithVersionInMessage()
    {
        var bytes = new Envelope(EnvelopeKind.Update, "v1", 3, Guid.NewGuid(), new byte[10]).Encode();
        bytes[4] = 2;
        var e = Assert.Throws<WireFormatException>(() => Envelope.Decode(bytes));
        Assert.Contains("version 2", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Decode_WrongRound_ThrowsWithBothRounds()
    {
        var bytes = new Envelope(EnvelopeKind.Update, "v1", 3, Guid.NewGuid(), new byte[10]).Encode();
        var e = Assert.Throws<WireFormatException>(() => Envelope.Decode(bytes, expectedRound: 4));
        Assert.Contains("round 3", e.Message, StringComparison.Ordinal);
        Assert.Contains("4", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Decode_OversizedPayload_Throws()
    {
        var bytes = new Envelope(EnvelopeKind.Update, "v1", 3, Guid.NewGuid(), new byte[1000]).Encode();
        var e = Assert.Throws<WireFormatException>(() => Envelope.Decode(bytes, maxPayload: 999));
        Assert.Contains("999", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Decode_RandomBytes_NeverThrowsAnythingElse()
    {
        Gen.Byte.Array[0, 300].Sample(bytes =>
        {
            try
            {
                Envelope.Decode(bytes);
            }
            catch (WireFormatException)
            {
            }
        });
    }

    [Fact]
    public void Decode_BadVehicleId_Throws()
    {
        var bytes = new Envelope(EnvelopeKind.Update, "ab", 3, Guid.NewGuid(), new byte[1]).Encode();
        bytes[33] = (byte)'#';
        Assert.Throws<WireFormatException>(() => Envelope.Decode(bytes));
    }

    [Fact]
    public void ModelUpdate_NaN_IsRejected()
    {
        var bytes = new ModelUpdate(1, 10, 0.5, [1f, float.NaN]).Encode();
        var e = Assert.Throws<WireFormatException>(() => ModelUpdate.Decode(bytes, 2));
        Assert.Contains("NaN", e.Message, StringComparison.Ordinal);
        Assert.Throws<WireFormatException>(() => ModelUpdate.Decode(new ModelUpdate(1, 10, 0.5, [1f, 2f]).Encode(), 3));
    }

    [Fact]
    public void ModelUpdate_RoundTrips()
    {
        Gen.Select(Gen.Float[-100f, 100f].Array[0, 500], Gen.Double[0.001, 1e6]).Sample((delta, weight) =>
        {
            var back = ModelUpdate.Decode(new ModelUpdate(weight, 7, 0.25, delta).Encode(), delta.Length);
            Assert.Equal(weight, back.Weight);
            Assert.Equal(delta, back.Delta);
        });
    }
}
