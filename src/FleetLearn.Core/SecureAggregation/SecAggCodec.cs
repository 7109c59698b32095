using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Immutable;
using System.Runtime.InteropServices;

namespace FleetLearn.Core.SecureAggregation;

/// <summary>Size limits the decoder enforces before allocating anything.</summary>
public sealed record SecAggCodecLimits
{
    /// <summary>Defaults: 72 MiB per message, 2^20 vehicles, 2^24 coordinates.</summary>
    public static SecAggCodecLimits Default { get; } = new();

    /// <summary>Largest encoded message accepted.</summary>
    public int MaxMessageBytes { get; init; } = 72 << 20;

    /// <summary>Vehicle ids must be below this; lists may not be longer.</summary>
    public int MaxVehicles { get; init; } = SecAggParameters.MaxCohortSize;

    /// <summary>Largest masked-input dimension.</summary>
    public int MaxDimension { get; init; } = 1 << 24;
}

/// <summary>
/// Compact binary wire format, version 1, all integers big-endian:
/// <c>version:u8 type:u8 round:u64 vehicle:i32 body</c>. Bodies:
/// AdvertiseKeys <c>c_pk[65] s_pk[65] sig[64] holders:u16 holder:i32*</c> (the self-chosen holders C(u), version 4; 0 on the
/// seed ring and the complete graph);
/// KeyDirectory <c>count:u32 (vehicle:i32 c_pk[65] s_pk[65] sig[64] holders:u16 holder:i32*)*</c>;
/// ShareKeys <c>commitment[32] count:u32 (peer:i32 len:u16 ct[len])*</c>;
/// ForwardedShares <c>count:u32 (peer:i32 len:u16 ct[len])*</c>;
/// MaskedInput <c>m:u8 dim:u32 packed[⌈dim·m/8⌉]</c> (LSB-first, zero padding);
/// UnmaskRequest <c>count:u32 survivor:i32* count:u32 dropped:i32* total:u32 count:u32 (signer:i32 sig[64])*</c> (total = |U3|,
/// version 2; the survivors' signatures on U3, version 3: none unless the server may be malicious);
/// ConsistencyCheck <c>count:u32 survivor:i32*</c>; ConsistencySignature <c>sig[64]</c>;
/// and every server → vehicle message (KeyDirectory, ForwardedShares, ConsistencyCheck, UnmaskRequest) ends with
/// <c>len:u8 server_sig[len]</c>, len 0 or 64 (version 3).
/// UnmaskResponse <c>count:u32 (peer:i32 kind:u8 share[32])*</c>.
/// Decoding rejects anything malformed, trailing, oversized, of another version or of another
/// round with <see cref="SecAggFormatException"/> and nothing else.
/// </summary>
public static class SecAggCodec
{
    /// <summary>Current wire version.</summary>
    public const byte Version = 4;

    /// <summary>Header length.</summary>
    public const int HeaderBytes = 1 + 1 + 8 + 4;

    private const int AdvertiseBodyBytes = 2 * SecAggCrypto.PointBytes + SecAggCrypto.SignatureBytes + 2;

    /// <summary>Exact encoded length of <paramref name="message"/>.</summary>
    public static long EncodedLength(SecAggMessage message) => EncodedLength(message, true);

    private static long EncodedLength(SecAggMessage message, bool withServerSignature) => HeaderBytes
        + (SecAggDownlink.IsDownlink(message) ? 1 + (withServerSignature ? message.ServerSignature.Length : 0) : 0) + message switch
    {
        AdvertiseKeysMessage a => AdvertiseBodyBytes + 4L * a.Holders.Length,
        KeyDirectoryMessage k => 4 + (long)k.Entries.Length * (4 + AdvertiseBodyBytes) + 4L * k.Entries.Sum(e => (long)e.Holders.Length),
        ShareKeysMessage s => 32 + SharesLength(s.Shares),
        ForwardedSharesMessage f => SharesLength(f.Shares),
        MaskedInputMessage m => 1 + 4 + BitPacking.PackedLength(m.Count, m.BitWidth),
        UnmaskRequestMessage r => 16 + 4L * (r.Survivors.Length + r.Dropped.Length) + (long)r.Signatures.Length * (4 + SecAggCrypto.SignatureBytes),
        ConsistencyCheckRequestMessage c => 4 + 4L * c.Survivors.Length,
        ConsistencySignatureMessage => SecAggCrypto.SignatureBytes,
        UnmaskResponseMessage r => 4 + (long)r.Shares.Length * (4 + 1 + Shamir.ElementBytes),
        _ => throw new ArgumentException($"Unknown message type {message.GetType().Name}.", nameof(message)),
    };

    private static long SharesLength(ImmutableArray<EncryptedShare> shares)
    {
        long n = 4;
        foreach (var s in shares) n += 4 + 2 + s.Ciphertext.Length;
        return n;
    }

    /// <summary>Encodes a message.</summary>
    public static byte[] Encode(SecAggMessage message) => Encode(message, withServerSignature: true);

    /// <summary>Encodes a message; without its server signature (an empty one) for the bytes that signature covers.</summary>
    internal static byte[] Encode(SecAggMessage message, bool withServerSignature)
    {
        long length = EncodedLength(message, withServerSignature);
        if (length > SecAggCodecLimits.Default.MaxMessageBytes)
            throw new ArgumentException($"Message of {length} bytes exceeds the {SecAggCodecLimits.Default.MaxMessageBytes}-byte limit.", nameof(message));
        var buffer = new byte[length];
        var w = new Writer(buffer);
        w.U8(Version);
        w.U8((byte)message.Type);
        w.U64(message.Round);
        w.I32(message.VehicleId);
        switch (message)
        {
            case AdvertiseKeysMessage a:
                WriteAdvertiseBody(ref w, a);
                break;
            case KeyDirectoryMessage k:
                w.U32((uint)k.Entries.Length);
                foreach (var e in k.Entries)
                {
                    if (e.Round != k.Round) throw new ArgumentException("Directory entries must belong to the directory's round.", nameof(message));
                    w.I32(e.VehicleId);
                    WriteAdvertiseBody(ref w, e);
                }
                break;
            case ShareKeysMessage s:
                w.Bytes(s.SelfMaskCommitment.AsSpan());
                WriteShares(ref w, s.Shares);
                break;
            case ForwardedSharesMessage f:
                WriteShares(ref w, f.Shares);
                break;
            case MaskedInputMessage m:
                w.U8((byte)m.BitWidth);
                w.U32((uint)m.Count);
                if (m.Packed is { } packed) packed.Bytes.CopyTo(w.Take((int)packed.Bytes.Length));
                else BitPacking.Pack(m.Values.AsSpan(), m.BitWidth, w.Take((int)BitPacking.PackedLength(m.Count, m.BitWidth)));
                break;
            case UnmaskRequestMessage r:
                w.U32((uint)r.Survivors.Length);
                foreach (int v in r.Survivors) w.I32(v);
                w.U32((uint)r.Dropped.Length);
                foreach (int v in r.Dropped) w.I32(v);
                w.U32((uint)r.SurvivorCount);
                w.U32((uint)r.Signatures.Length);
                foreach (var sig in r.Signatures)
                {
                    w.I32(sig.Signer);
                    w.Bytes(sig.Signature.AsSpan());
                }
                break;
            case ConsistencyCheckRequestMessage c:
                w.U32((uint)c.Survivors.Length);
                foreach (int v in c.Survivors) w.I32(v);
                break;
            case ConsistencySignatureMessage c:
                w.Bytes(c.Signature.AsSpan());
                break;
            case UnmaskResponseMessage r:
                w.U32((uint)r.Shares.Length);
                foreach (var s in r.Shares)
                {
                    w.I32(s.Peer);
                    w.U8((byte)s.Kind);
                    w.Bytes(s.Share.AsSpan());
                }
                break;
        }
        if (SecAggDownlink.IsDownlink(message))
        {
            var signature = withServerSignature ? message.ServerSignature.AsSpan() : [];
            w.U8((byte)signature.Length);
            w.Bytes(signature);
        }
        return buffer;
    }

    private static void WriteAdvertiseBody(ref Writer w, AdvertiseKeysMessage a)
    {
        w.Bytes(a.EncryptionKey.AsSpan());
        w.Bytes(a.MaskingKey.AsSpan());
        w.Bytes(a.Signature.AsSpan());
        w.U16((ushort)a.Holders.Length);
        foreach (int v in a.Holders) w.I32(v);
    }

    private static void WriteShares(ref Writer w, ImmutableArray<EncryptedShare> shares)
    {
        w.U32((uint)shares.Length);
        foreach (var s in shares)
        {
            if (s.Ciphertext.Length > ushort.MaxValue) throw new ArgumentException("Ciphertext longer than 65535 bytes.");
            w.I32(s.Peer);
            w.U16((ushort)s.Ciphertext.Length);
            w.Bytes(s.Ciphertext.AsSpan());
        }
    }

    /// <summary>Decodes and type-checks a message.</summary>
    public static T Decode<T>(ReadOnlySpan<byte> data, ulong? expectedRound = null, SecAggCodecLimits? limits = null) where T : SecAggMessage
        => Decode(data, expectedRound, limits) as T
           ?? throw new SecAggFormatException($"Expected a {typeof(T).Name} but got a {(SecAggMessageType)data[1]} message.");

    /// <summary>
    /// <see cref="Decode(ReadOnlySpan{byte}, ulong?, SecAggCodecLimits?)"/> of a message in segments (as reassembled from
    /// chunks). A masked input keeps its values packed where they arrived (<see cref="MaskedInputMessage.Packed"/>), checked
    /// as the span decoder checks them; any other message is decoded from one span as before.
    /// </summary>
    public static SecAggMessage Decode(in ReadOnlySequence<byte> data, ulong? expectedRound = null, SecAggCodecLimits? limits = null)
    {
        const int maskedHeader = HeaderBytes + 1 + 4;
        Span<byte> start = stackalloc byte[2]; // version and type, wherever the segments are cut (a first segment may hold one byte)
        if (data.Length >= 2) data.Slice(0, 2).CopyTo(start);
        if (data.Length < maskedHeader || start[1] != (byte)SecAggMessageType.MaskedInput)
            return Decode(data.IsSingleSegment ? data.FirstSpan : data.ToArray(), expectedRound, limits);
        limits ??= SecAggCodecLimits.Default;
        if (data.Length > limits.MaxMessageBytes)
            throw new SecAggFormatException($"Message of {data.Length} bytes exceeds the {limits.MaxMessageBytes}-byte limit.");
        Span<byte> head = stackalloc byte[maskedHeader];
        data.Slice(0, maskedHeader).CopyTo(head);
        var r = new Reader(head, limits);
        byte version = r.U8();
        if (version != Version) throw new SecAggFormatException($"Unsupported wire version {version} (expected {Version}).");
        r.U8();
        ulong round = r.U64();
        if (expectedRound is { } er && round != er) throw new SecAggFormatException($"Message is for round {round}, expected round {er}.");
        int vehicle = r.VehicleId("vehicle");
        var (bits, dim) = ReadMaskedInputHeader(ref r, data.Length - HeaderBytes);
        try
        {
            return new MaskedInputMessage(round, vehicle, new PackedSegments(data.Slice(maskedHeader), dim, bits));
        }
        catch (ArgumentException)
        {
            throw new SecAggFormatException("Masked input has non-zero padding bits.");
        }
    }

    /// <summary>Decodes a message; throws <see cref="SecAggFormatException"/> on any defect.</summary>
    public static SecAggMessage Decode(ReadOnlySpan<byte> data, ulong? expectedRound = null, SecAggCodecLimits? limits = null)
    {
        limits ??= SecAggCodecLimits.Default;
        if (data.Length > limits.MaxMessageBytes)
            throw new SecAggFormatException($"Message of {data.Length} bytes exceeds the {limits.MaxMessageBytes}-byte limit.");
        if (data.Length < HeaderBytes)
            throw new SecAggFormatException($"Message of {data.Length} bytes is shorter than the {HeaderBytes}-byte header.");
        var r = new Reader(data, limits);
        byte version = r.U8();
        if (version != Version) throw new SecAggFormatException($"Unsupported wire version {version} (expected {Version}).");
        byte tag = r.U8();
        ulong round = r.U64();
        if (expectedRound is { } er && round != er) throw new SecAggFormatException($"Message is for round {round}, expected round {er}.");
        int vehicle = r.VehicleId("vehicle");
        SecAggMessage message;
        try
        {
            message = (SecAggMessageType)tag switch
            {
            SecAggMessageType.AdvertiseKeys => ReadAdvertiseBody(ref r, round, vehicle),
            SecAggMessageType.KeyDirectory => ReadDirectory(ref r, round, vehicle),
            SecAggMessageType.ShareKeys => new ShareKeysMessage(round, vehicle, r.Bytes(32), ReadShares(ref r)),
            SecAggMessageType.ForwardedShares => new ForwardedSharesMessage(round, vehicle, ReadShares(ref r)),
            SecAggMessageType.MaskedInput => ReadMaskedInput(ref r, round, vehicle),
            SecAggMessageType.UnmaskRequest => ReadUnmaskRequest(ref r, round, vehicle),
            SecAggMessageType.UnmaskResponse => ReadResponse(ref r, round, vehicle),
            SecAggMessageType.ConsistencyCheck => new ConsistencyCheckRequestMessage(round, vehicle, ReadIds(ref r, "survivor")),
            SecAggMessageType.ConsistencySignature => new ConsistencySignatureMessage(round, vehicle, r.Bytes(SecAggCrypto.SignatureBytes)),
            _ => throw new SecAggFormatException($"Unknown message type {tag}."),
            };
        }
        catch (ArgumentException e)
        {
            throw new SecAggFormatException($"Invalid {(SecAggMessageType)tag} message: {e.Message}");
        }
        if (SecAggDownlink.IsDownlink(message))
        {
            int length = r.U8();
            if (length is not (0 or SecAggCrypto.SignatureBytes)) throw new SecAggFormatException($"A server signature of {length} bytes is neither absent nor {SecAggCrypto.SignatureBytes} bytes.");
            message.ServerSignature = r.Bytes(length);
        }
        if (r.Remaining != 0) throw new SecAggFormatException($"{r.Remaining} trailing bytes after a {message.Type} message.");
        return message;
    }

    private static AdvertiseKeysMessage ReadAdvertiseBody(ref Reader r, ulong round, int vehicle)
    {
        var c = r.Bytes(SecAggCrypto.PointBytes);
        var s = r.Bytes(SecAggCrypto.PointBytes);
        if (c[0] != 0x04 || s[0] != 0x04) throw new SecAggFormatException("Public keys must be uncompressed P-256 points (prefix 0x04).");
        var sig = r.Bytes(SecAggCrypto.SignatureBytes);
        int count = r.U16();
        var holders = ImmutableArray.CreateBuilder<int>(count);
        for (int i = 0; i < count; i++) holders.Add(r.VehicleId("holder"));
        return new AdvertiseKeysMessage(round, vehicle, c, s, sig, holders.MoveToImmutable());
    }

    private static KeyDirectoryMessage ReadDirectory(ref Reader r, ulong round, int recipient)
    {
        int count = r.Count(4 + AdvertiseBodyBytes, "directory entry");
        var entries = ImmutableArray.CreateBuilder<AdvertiseKeysMessage>(count);
        for (int i = 0; i < count; i++)
        {
            int v = r.VehicleId("directory entry");
            entries.Add(ReadAdvertiseBody(ref r, round, v));
        }
        return new KeyDirectoryMessage(round, recipient, entries.MoveToImmutable());
    }

    private static ImmutableArray<EncryptedShare> ReadShares(ref Reader r)
    {
        int count = r.Count(4 + 2, "encrypted share");
        var shares = ImmutableArray.CreateBuilder<EncryptedShare>(count);
        for (int i = 0; i < count; i++)
        {
            int peer = r.VehicleId("share peer");
            int len = r.U16();
            shares.Add(new EncryptedShare(peer, r.Bytes(len)));
        }
        return shares.MoveToImmutable();
    }

    /// <summary>Reads m and dim of a masked input and checks them against the limits and the <paramref name="remaining"/> bytes.</summary>
    private static (int Bits, int Dimension) ReadMaskedInputHeader(ref Reader r, long remaining)
    {
        int bits = r.U8();
        if (bits is < 1 or > 32) throw new SecAggFormatException($"Bit width {bits} is outside [1, 32].");
        uint dim = r.U32();
        if (dim == 0 || dim > (uint)r.Limits.MaxDimension) throw new SecAggFormatException($"Dimension {dim} is outside [1, {r.Limits.MaxDimension}].");
        long packed = BitPacking.PackedLength(dim, bits);
        if (packed != remaining - 5) throw new SecAggFormatException($"Masked input of {dim} × {bits} bits needs {packed} bytes, got {remaining - 5}.");
        return (bits, (int)dim);
    }

    private static MaskedInputMessage ReadMaskedInput(ref Reader r, ulong round, int sender)
    {
        var (bits, dim) = ReadMaskedInputHeader(ref r, r.Remaining);
        long packed = BitPacking.PackedLength(dim, bits);
        var values = GC.AllocateUninitializedArray<uint>((int)dim); // TryUnpack writes every value (or the array is dropped): no zeroing pass
        if (!BitPacking.TryUnpack(r.Span((int)packed), bits, values))
            throw new SecAggFormatException("Masked input has non-zero padding bits.");
        return new MaskedInputMessage(round, sender, bits, ImmutableCollectionsMarshal.AsImmutableArray(values));
    }

    private static UnmaskRequestMessage ReadUnmaskRequest(ref Reader r, ulong round, int vehicle)
    {
        var survivors = ReadIds(ref r, "survivor");
        var dropped = ReadIds(ref r, "dropped");
        uint total = r.U32();
        if (total > r.Limits.MaxVehicles || total < survivors.Length) throw new SecAggFormatException($"Survivor count {total} is outside [{survivors.Length}, {r.Limits.MaxVehicles}].");
        int count = r.Count(4 + SecAggCrypto.SignatureBytes, "survivor-set signature");
        var signatures = ImmutableArray.CreateBuilder<SurvivorSetSignature>(count);
        for (int i = 0; i < count; i++)
        {
            int signer = r.VehicleId("survivor-set signature");
            signatures.Add(new SurvivorSetSignature(signer, r.Bytes(SecAggCrypto.SignatureBytes)));
        }
        return new UnmaskRequestMessage(round, vehicle, survivors, dropped, (int)total, signatures.MoveToImmutable());
    }

    private static ImmutableArray<int> ReadIds(ref Reader r, string what)
    {
        int count = r.Count(4, what);
        var ids = new int[count];
        for (int i = 0; i < count; i++) ids[i] = r.VehicleId(what);
        return ImmutableCollectionsMarshal.AsImmutableArray(ids);
    }

    private static UnmaskResponseMessage ReadResponse(ref Reader r, ulong round, int sender)
    {
        int count = r.Count(4 + 1 + Shamir.ElementBytes, "revealed share");
        var shares = ImmutableArray.CreateBuilder<RevealedShare>(count);
        for (int i = 0; i < count; i++)
        {
            int peer = r.VehicleId("revealed share");
            byte kind = r.U8();
            if (kind is not ((byte)ShareKind.SelfMaskSeed or (byte)ShareKind.MaskingKey)) throw new SecAggFormatException($"Unknown share kind {kind}.");
            shares.Add(new RevealedShare(peer, (ShareKind)kind, r.Bytes(Shamir.ElementBytes)));
        }
        return new UnmaskResponseMessage(round, sender, shares.MoveToImmutable());
    }

    private ref struct Writer(Span<byte> buffer)
    {
        private readonly Span<byte> _buffer = buffer;
        private int _pos;

        public Span<byte> Take(int n) { var s = _buffer.Slice(_pos, n); _pos += n; return s; }
        public void U8(byte v) => _buffer[_pos++] = v;
        public void U16(ushort v) => BinaryPrimitives.WriteUInt16BigEndian(Take(2), v);
        public void U32(uint v) => BinaryPrimitives.WriteUInt32BigEndian(Take(4), v);
        public void I32(int v) => BinaryPrimitives.WriteInt32BigEndian(Take(4), v);
        public void U64(ulong v) => BinaryPrimitives.WriteUInt64BigEndian(Take(8), v);
        public void Bytes(ReadOnlySpan<byte> v) => v.CopyTo(Take(v.Length));
    }

    private ref struct Reader(ReadOnlySpan<byte> data, SecAggCodecLimits limits)
    {
        private readonly ReadOnlySpan<byte> _data = data;
        private int _pos;

        public readonly SecAggCodecLimits Limits = limits;
        public readonly int Remaining => _data.Length - _pos;

        public ReadOnlySpan<byte> Span(int n)
        {
            if (n < 0 || n > Remaining) throw new SecAggFormatException($"Truncated message: needed {n} more bytes at offset {_pos}, {Remaining} left.");
            var s = _data.Slice(_pos, n);
            _pos += n;
            return s;
        }

        public byte U8() => Span(1)[0];
        public ushort U16() => BinaryPrimitives.ReadUInt16BigEndian(Span(2));
        public uint U32() => BinaryPrimitives.ReadUInt32BigEndian(Span(4));
        public ulong U64() => BinaryPrimitives.ReadUInt64BigEndian(Span(8));
        public ImmutableArray<byte> Bytes(int n) => ImmutableArray.Create(Span(n).ToArray());

        public int VehicleId(string what)
        {
            int v = BinaryPrimitives.ReadInt32BigEndian(Span(4));
            if (v < 0 || v >= Limits.MaxVehicles) throw new SecAggFormatException($"Vehicle id {v} in {what} is outside [0, {Limits.MaxVehicles}).");
            return v;
        }

        /// <summary>Reads a list length and checks it against the limit and the bytes left, before anything is allocated.</summary>
        public int Count(int minEntryBytes, string what)
        {
            uint n = U32();
            if (n > (uint)Limits.MaxVehicles) throw new SecAggFormatException($"{n} {what} entries exceed the limit of {Limits.MaxVehicles}.");
            if ((long)n * minEntryBytes > Remaining) throw new SecAggFormatException($"{n} {what} entries cannot fit in the {Remaining} bytes left.");
            return (int)n;
        }
    }
}
