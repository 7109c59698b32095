using System.Buffers;
using CsCheck;
using FleetLearn.Core.Rounds;
using FleetLearn.Testing;

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
    public void DecodeInPlace_SameEnvelopeAsDecode_PayloadASliceOfTheInput()
    {
        GenEnvelope.Sample(e =>
        {
            var bytes = (e with { Epoch = 3, PlanTag = 0x0102030405060708 }).Encode();
            var copied = Envelope.Decode(bytes);
            var inPlace = Envelope.DecodeInPlace(bytes);
            Assert.Equal((copied.Kind, copied.Vehicle, copied.Round, copied.UpdateId, copied.Epoch, copied.PlanTag),
                (inPlace.Kind, inPlace.Vehicle, inPlace.Round, inPlace.UpdateId, inPlace.Epoch, inPlace.PlanTag));
            Assert.True(copied.Payload.Span.SequenceEqual(inPlace.Payload.Span));
            if (bytes.Length > 0 && inPlace.Payload.Length > 0)
                Assert.True(inPlace.Payload.Span.Overlaps(bytes), "the in-place payload must alias the input, not copy it");
        });
    }

    [Fact]
    public void DecodeInPlace_SegmentsCutAnywhere_SameEnvelopeWithTheBodyInTheSegments()
    {
        Gen.Select(GenEnvelope, Gen.Int[0, 2200].Array[1, 8], Gen.ULong).Sample((e, cuts, tag) =>
        {
            var bytes = (e with { Epoch = 3, PlanTag = tag | 1 }).Encode();
            var sequence = Segments.Cut(bytes, cuts);
            var back = Envelope.DecodeInPlace(sequence);
            var reference = Envelope.Decode(bytes);
            Assert.Equal((reference.Kind, reference.Vehicle, reference.Round, reference.UpdateId, reference.Epoch, reference.PlanTag),
                (back.Kind, back.Vehicle, back.Round, back.UpdateId, back.Epoch, back.PlanTag));
            Assert.Equal(reference.Payload.ToArray(), back.Body.ToArray());
            Assert.Equal(reference.Payload.ToArray(), back.Payload.ToArray()); // joined on demand
            Assert.Equal(bytes, back.Encode());
        });
    }

    [Fact]
    public void DecodeInPlace_SegmentsTruncatedOrWithTrailingBytes_RefusedAsTheSpanDecoderRefusesThem()
    {
        Gen.Select(GenEnvelope, Gen.Int[0, 2200].Array[1, 5], Gen.Int[-40, 3]).Sample((e, cuts, change) =>
        {
            var bytes = e.Encode();
            int length = Math.Max(0, bytes.Length + change);
            var changed = new byte[length];
            bytes.AsSpan(0, Math.Min(length, bytes.Length)).CopyTo(changed);
            if (change == 0) return;
            var expected = Assert.Throws<WireFormatException>(() => Envelope.Decode(changed));
            var actual = Assert.Throws<WireFormatException>(() => Envelope.DecodeInPlace(Segments.Cut(changed, cuts)));
            Assert.Equal(expected.Message, actual.Message);
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
        bytes[4] = 3;
        var e = Assert.Throws<WireFormatException>(() => Envelope.Decode(bytes));
        Assert.Contains("version 3", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void EpochAndPlanTag_RoundTrip_UntaggedStaysVersionOneByteForByte()
    {
        var id = Guid.NewGuid();
        var untagged = new Envelope(EnvelopeKind.Update, "v1", 3, id, new byte[] { 1, 2 }).Encode();
        Assert.Equal(1, untagged[4]);
        Assert.Equal(33 + 2 + 4 + 2, untagged.Length);
        byte[] plan = [9, 9, 9];
        var tagged = new Envelope(EnvelopeKind.Update, "v1", 3, id, new byte[] { 1, 2 }) { Epoch = 7, PlanTag = Envelope.TagOf(plan) };
        var bytes = tagged.Encode();
        Assert.Equal(2, bytes[4]);
        Assert.Equal(untagged.Length + 8, bytes.Length);
        var back = Envelope.Decode(bytes);
        Assert.Equal((7, Envelope.TagOf(plan), 3L, id, "v1"), (back.Epoch, back.PlanTag, back.Round, back.UpdateId, back.Vehicle));
        Assert.Equal([1, 2], back.Payload.ToArray());
        Assert.Equal(0UL, Envelope.Decode(untagged).PlanTag);
        Assert.NotEqual(Envelope.TagOf(plan), Envelope.TagOf([9, 9, 8]));
        // Every cut of a tagged envelope is refused as such, never misread as an untagged one.
        for (int cut = 0; cut < bytes.Length; cut++) Assert.Throws<WireFormatException>(() => Envelope.Decode(bytes.AsSpan(0, cut)));
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
    public void PlainUpdate_TruncatedOrNegative_IsRejectedWithReason()
    {
        var e = Assert.Throws<WireFormatException>(() => PlainUpdate.Decode(new byte[12]));
        Assert.Equal(RejectReasons.Truncated, e.Reason);
        var bytes = new PlainUpdate(0.5, -1, new byte[3]).Encode();
        Assert.Contains("negative", Assert.Throws<WireFormatException>(() => PlainUpdate.Decode(bytes)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void PlainUpdate_RoundTrips()
    {
        Gen.Select(Gen.Byte.Array[1, 500], Gen.Double[0, 10], Gen.Int[0, 100_000]).Sample((body, loss, samples) =>
        {
            var back = PlainUpdate.Decode(new PlainUpdate(loss, samples, body).Encode());
            Assert.Equal(loss, back.TrainLoss);
            Assert.Equal(samples, back.Samples);
            Assert.Equal(body, back.Body.ToArray());
        });
    }

    [Fact]
    public void Checkin_RoundTripsAndRejectsBadLengths()
    {
        Gen.Select(Gen.Int[0, 1_000_000], Gen.Byte.Array[0, Checkin.MaxKeyBytes]).Sample((samples, key) =>
        {
            var bytes = new Checkin(samples, key).Encode();
            var back = Checkin.Decode(bytes);
            Assert.Equal(samples, back.Samples);
            Assert.Equal(key, back.DeviceKey);
            Assert.Throws<WireFormatException>(() => Checkin.Decode(bytes.AsSpan(0, bytes.Length - 1)));
            Assert.Throws<WireFormatException>(() => Checkin.Decode([.. bytes, 0]));
        });
    }

    [Fact]
    public void Checkin_WithDeviceCertificate_RoundTripsAndRejectsBadLengths()
    {
        // A certificate of 0 bytes is written as "none" (the section is then only there for the eligibility after it).
        Gen.Select(Gen.Int[1, 1_000_000], Gen.Byte.Array[0, 100], Gen.Byte.Array[1, Checkin.MaxCertificateBytes]).Sample((samples, key, certificate) =>
        {
            var bytes = new Checkin(samples, key, certificate).Encode();
            var back = Checkin.Decode(bytes);
            Assert.Equal(key, back.DeviceKey);
            Assert.Equal(certificate, back.DeviceCertificate);
            Assert.Throws<WireFormatException>(() => Checkin.Decode(bytes.AsSpan(0, bytes.Length - 1)));
            Assert.Throws<WireFormatException>(() => Checkin.Decode([.. bytes, 0]));
        });
    }
}
