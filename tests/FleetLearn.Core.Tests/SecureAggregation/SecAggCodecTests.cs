using System.Buffers.Binary;
using System.Collections.Immutable;
using CsCheck;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Core.Tests.SecureAggregation;

public sealed class SecAggCodecTests
{
    private static readonly Gen<int> GenId = Gen.Int[0, 5000];
    private static readonly Gen<ulong> GenRound = Gen.ULong;
    private static Gen<ImmutableArray<byte>> Bytes(int n) => Gen.Byte.Array[n].Select(b => ImmutableArray.Create(b));
    private static readonly Gen<ImmutableArray<byte>> Point = Bytes(64).Select(b => ImmutableArray.Create<byte>(0x04).AddRange(b));

    private static Gen<AdvertiseKeysMessage> Advert(ulong round) =>
        Gen.Select(GenId, Point, Point, Bytes(64), GenId.Array[0, 9]).Select((v, c, s, sig, holders) => new AdvertiseKeysMessage(round, v, c, s, sig, [.. holders]));

    private static readonly Gen<EncryptedShare> Share =
        Gen.Select(GenId, Gen.Byte.Array[0, 120]).Select((p, ct) => new EncryptedShare(p, [.. ct]));

    private static readonly Gen<SecAggMessage> AnyMessage = Gen.OneOf<SecAggMessage>(
        GenRound.SelectMany(r => Advert(r).Select(a => (SecAggMessage)a)),
        Gen.Select(GenRound, GenId).SelectMany((r, v) => Advert(r).Array[0, 6].Select(e => (SecAggMessage)new KeyDirectoryMessage(r, v, [.. e]))),
        Gen.Select(GenRound, GenId, Bytes(32), Share.Array[0, 6]).Select((r, v, c, s) => (SecAggMessage)new ShareKeysMessage(r, v, c, [.. s])),
        Gen.Select(GenRound, GenId, Share.Array[0, 6]).Select((r, v, s) => (SecAggMessage)new ForwardedSharesMessage(r, v, [.. s])),
        Gen.Select(GenRound, GenId, Gen.Int[1, 32]).SelectMany((r, v, m) =>
            Gen.UInt.Array[1, 70].Select(vals => (SecAggMessage)new MaskedInputMessage(r, v, m,
                [.. vals.Select(x => m == 32 ? x : x & ((1u << m) - 1))]))),
        Gen.Select(GenRound, GenId, GenId.Array[0, 8], GenId.Array[0, 8]).Select((r, v, s, d) => (SecAggMessage)new UnmaskRequestMessage(r, v, [.. s], [.. d])),
        Gen.Select(GenRound, GenId, Gen.Select(GenId, Gen.Int[1, 2], Bytes(32)).Select((p, k, b) => new RevealedShare(p, (ShareKind)k, b)).Array[0, 6])
            .Select((r, v, s) => (SecAggMessage)new UnmaskResponseMessage(r, v, [.. s])));

    [Fact]
    public void EncodeDecode_AnyMessage_RoundTripsExactly()
    {
        AnyMessage.Sample(m =>
        {
            var bytes = SecAggCodec.Encode(m);
            var decoded = SecAggCodec.Decode(bytes, m.Round);
            Assert.Equal(m.GetType(), decoded.GetType());
            Assert.Equal(m.Round, decoded.Round);
            Assert.Equal(m.VehicleId, decoded.VehicleId);
            Assert.Equal(bytes.Length, SecAggCodec.EncodedLength(m));
            Assert.Equal(bytes, SecAggCodec.Encode(decoded));
        }, iter: 500);
    }

    [Fact]
    public void Decode_MaskedInput_ValuesSurviveBitPacking()
    {
        Gen.Select(Gen.Int[1, 32], Gen.UInt.Array[1, 300]).Sample((m, raw) =>
        {
            uint[] vals = [.. raw.Select(x => m == 32 ? x : x & ((1u << m) - 1))];
            var decoded = SecAggCodec.Decode<MaskedInputMessage>(SecAggCodec.Encode(new MaskedInputMessage(3, 1, m, [.. vals])));
            Assert.Equal(vals, decoded.Values.ToArray());
            Assert.Equal(m, decoded.BitWidth);
        });
    }

    private static void DecodeOrFormatError(byte[] data)
    {
        try
        {
            SecAggCodec.Decode(data, limits: new SecAggCodecLimits { MaxVehicles = 10_000, MaxDimension = 4096, MaxMessageBytes = 1 << 16 });
        }
        catch (SecAggFormatException)
        {
        }
    }

    [Fact]
    public void Decode_RandomBytes_ThrowsNothingButFormatException()
    {
        Gen.Byte.Array[0, 400].Sample(DecodeOrFormatError, iter: 5000);
    }

    [Fact]
    public void Decode_RandomBodyAfterPlausibleHeader_ThrowsNothingButFormatException()
    {
        Gen.Select(Gen.Byte[1, 8], GenId, Gen.Byte.Array[0, 300]).Sample((type, vehicle, body) =>
        {
            var data = new byte[SecAggCodec.HeaderBytes + body.Length];
            data[0] = SecAggCodec.Version;
            data[1] = type;
            BinaryPrimitives.WriteInt32BigEndian(data.AsSpan(10), vehicle);
            body.CopyTo(data, SecAggCodec.HeaderBytes);
            DecodeOrFormatError(data);
        }, iter: 5000);
    }

    [Fact]
    public void Decode_MutatedValidMessage_ThrowsNothingButFormatException()
    {
        Gen.Select(AnyMessage, Gen.Int[0, 3], Gen.Int, Gen.Byte).Sample((m, how, where, value) =>
        {
            var bytes = SecAggCodec.Encode(m);
            int at = (int)((uint)where % (uint)bytes.Length);
            byte[] mutated = how switch
            {
                0 => bytes.Select((b, i) => i == at ? (byte)(b ^ (value | 1)) : b).ToArray(),
                1 => bytes[..at],
                2 => [.. bytes, value],
                _ => [.. bytes[..at], value, .. bytes[at..]],
            };
            DecodeOrFormatError(mutated);
        }, iter: 3000);
    }

    [Fact]
    public void Decode_WrongRound_ThrowsNamingBothRounds()
    {
        var bytes = SecAggCodec.Encode(new UnmaskRequestMessage(5, 1, [1], []));

        var e = Assert.Throws<SecAggFormatException>(() => SecAggCodec.Decode(bytes, expectedRound: 6));

        Assert.Equal("Message is for round 5, expected round 6.", e.Message);
    }

    [Fact]
    public void Decode_WrongVersion_Throws()
    {
        var bytes = SecAggCodec.Encode(new UnmaskRequestMessage(5, 1, [1], []));
        bytes[0] = 1; // version 1 had no survivor count in UnmaskRequest

        Assert.Equal("Unsupported wire version 1 (expected 4).", Assert.Throws<SecAggFormatException>(() => SecAggCodec.Decode(bytes)).Message);
    }

    [Fact]
    public void Decode_OverSizeLimit_ThrowsBeforeParsing()
    {
        var bytes = SecAggCodec.Encode(new MaskedInputMessage(1, 0, 32, [.. new uint[100]]));

        var e = Assert.Throws<SecAggFormatException>(() => SecAggCodec.Decode(bytes, limits: new SecAggCodecLimits { MaxMessageBytes = 256 }));

        Assert.Equal("Message of 419 bytes exceeds the 256-byte limit.", e.Message);
    }

    [Fact]
    public void Decode_HugeListCount_ThrowsWithoutAllocating()
    {
        var bytes = SecAggCodec.Encode(new UnmaskRequestMessage(1, 0, [], [])); // version 3: dropped, total, signature count and server-signature length follow (13 bytes)
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(SecAggCodec.HeaderBytes), 1_000_000);

        var e = Assert.Throws<SecAggFormatException>(() => SecAggCodec.Decode(bytes));

        Assert.Equal("1000000 survivor entries cannot fit in the 13 bytes left.", e.Message);
    }

    [Fact]
    public void Decode_DimensionAboveLimit_Throws()
    {
        var bytes = SecAggCodec.Encode(new MaskedInputMessage(1, 0, 8, [.. new uint[16]]));

        var e = Assert.Throws<SecAggFormatException>(() => SecAggCodec.Decode(bytes, limits: new SecAggCodecLimits { MaxDimension = 8 }));

        Assert.Equal("Dimension 16 is outside [1, 8].", e.Message);
    }

    [Fact]
    public void Decode_NonZeroPaddingBits_Throws()
    {
        var bytes = SecAggCodec.Encode(new MaskedInputMessage(1, 0, 3, [7, 7, 7])); // 9 bits in 2 bytes
        bytes[^1] |= 0x80;

        Assert.Equal("Masked input has non-zero padding bits.", Assert.Throws<SecAggFormatException>(() => SecAggCodec.Decode(bytes)).Message);
    }

    [Fact]
    public void Decode_TrailingBytes_Throws()
    {
        // (An UnmaskRequest may now end in a signature list, so a byte after it is a truncated list, not a trailing byte.)
        byte[] bytes = [.. SecAggCodec.Encode(new ForwardedSharesMessage(1, 0, [])), 0];

        Assert.Equal("1 trailing bytes after a ForwardedShares message.", Assert.Throws<SecAggFormatException>(() => SecAggCodec.Decode(bytes)).Message);
    }

    [Fact]
    public void ConsistencyMessages_RoundTripAndRejectDefects()
    {
        Gen.Select(Gen.Int[0, 1000].Array[0, 50], Gen.Byte.Array[64], Gen.Int[0, 1000]).Sample((ids, sig, signer) =>
        {
            var check = SecAggCodec.Decode<ConsistencyCheckRequestMessage>(SecAggCodec.Encode(new ConsistencyCheckRequestMessage(4, 1, [.. ids])), 4);
            Assert.Equal(ids, check.Survivors.ToArray());
            var signed = SecAggCodec.Decode<ConsistencySignatureMessage>(SecAggCodec.Encode(new ConsistencySignatureMessage(4, 2, [.. sig])));
            Assert.Equal(sig, signed.Signature.ToArray());
            var request = new UnmaskRequestMessage(4, 3, [.. ids], [], ids.Length, [new SurvivorSetSignature(signer, [.. sig]), new SurvivorSetSignature(signer + 1, [.. sig])]);
            var bytes = SecAggCodec.Encode(request);
            var back = SecAggCodec.Decode<UnmaskRequestMessage>(bytes);
            Assert.Equal(bytes.Length, SecAggCodec.EncodedLength(request));
            Assert.Equal([signer, signer + 1], back.Signatures.Select(s => s.Signer).ToArray());
            Assert.Equal(sig, back.Signatures[1].Signature.ToArray());
            Assert.Throws<SecAggFormatException>(() => SecAggCodec.Decode(bytes.AsSpan(0, bytes.Length - 1)));
            Assert.Throws<SecAggFormatException>(() => SecAggCodec.Decode([.. bytes, 0]));
        });
    }

    [Fact]
    public void DecodeTyped_OtherType_Throws()
    {
        var bytes = SecAggCodec.Encode(new UnmaskRequestMessage(1, 0, [2], [3]));

        var e = Assert.Throws<SecAggFormatException>(() => SecAggCodec.Decode<MaskedInputMessage>(bytes));

        Assert.Equal("Expected a MaskedInputMessage but got a UnmaskRequest message.", e.Message);
    }
}
