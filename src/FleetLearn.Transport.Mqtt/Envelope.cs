using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using FleetLearn.Core.Rounds;

namespace FleetLearn.Transport.Mqtt;

/// <summary>What an <see cref="Envelope"/> carries.</summary>
public enum EnvelopeKind : byte
{
    /// <summary>Vehicle → aggregator: eligible for the next round (payload: sample count).</summary>
    Checkin = 1,

    /// <summary>Vehicle → aggregator: a plaintext model update (<see cref="PlainUpdate"/>).</summary>
    Update = 2,

    /// <summary>Aggregator → vehicle: application-level acknowledgement of an update (<see cref="UpdateAck"/>).</summary>
    Ack = 3,

    /// <summary>Either way: a secure-aggregation message (<c>SecAggCodec</c>).</summary>
    SecAgg = 4,
}

/// <summary>
/// The versioned binary wrapper around everything a vehicle and the aggregator exchange. Every message names
/// (vehicle, round, update id) so a resend is recognised and harmless.
/// </summary>
/// <remarks>
/// Layout (integers little-endian):
/// <code>
/// offset size field
/// 0      4    magic "FLEV"
/// 4      1    format version: 1, or 2 when a plan tag follows the vehicle id
/// 5      1    kind (EnvelopeKind)
/// 6      2    fleet epoch (0..65535; version-1 readers required 0 here)
/// 8      8    round (≥ 0)
/// 16     16   update id (GUID, RFC 4122 byte order)
/// 32     1    n = vehicle id length (1..64, see VehicleId)
/// 33     n    vehicle id (ASCII)
/// …      8    plan tag (version 2 only): the first 8 bytes of SHA-256 of the signed plan the message answers
/// …      4    P = payload length
/// …      P    payload
/// </code>
/// The epoch and the plan tag (issue 14 item 2, issue 15 item 5) let the aggregator refuse what was produced under another
/// epoch's or another instance's plan for the same round number; 0 means "not stated" (senders that predate them).
/// Nothing may follow the payload. Integrity of large payloads comes from the chunk layer's SHA-256, authenticity
/// from the broker's per-vehicle ACL (a vehicle can only publish under its own topic; the decoder's caller checks
/// that the topic's vehicle equals the envelope's).
/// </remarks>
public sealed record Envelope(EnvelopeKind Kind, string Vehicle, long Round, Guid UpdateId, ReadOnlyMemory<byte> Payload)
{
    /// <summary>Current format version.</summary>
    public const byte FormatVersion = 1;

    /// <summary>The format version of envelopes that carry a <see cref="PlanTag"/>.</summary>
    public const byte TaggedFormatVersion = 2;

    private ReadOnlySequence<byte> _body = new(Payload);
    private ReadOnlyMemory<byte>? _joined;

    /// <summary>The payload as one block of memory (a payload decoded in segments by <see cref="DecodeInPlace(in ReadOnlySequence{byte}, int, long?)"/> is joined on first use).</summary>
    public ReadOnlyMemory<byte> Payload
    {
        get => _body.IsSingleSegment ? _body.First : _joined ??= _body.ToArray();
        init => (_body, _joined) = (new ReadOnlySequence<byte>(value), null);
    }

    /// <summary>The payload as it arrived: the segments of a reassembled transfer, or <see cref="Payload"/> as one segment.</summary>
    public ReadOnlySequence<byte> Body
    {
        get => _body;
        init => (_body, _joined) = (value, null);
    }

    /// <summary>Fleet epoch the sender runs (0: not stated).</summary>
    public ushort Epoch { get; init; }

    /// <summary>First 8 bytes (big-endian) of the SHA-256 of the signed plan this message answers (0: not stated); see <see cref="TagOf"/>.</summary>
    public ulong PlanTag { get; init; }

    /// <summary>The plan tag of a signed plan's bytes.</summary>
    public static ulong TagOf(ReadOnlySpan<byte> signedPlan) => BinaryPrimitives.ReadUInt64BigEndian(System.Security.Cryptography.SHA256.HashData(signedPlan));

    /// <summary>Default largest payload: 64 MiB (a 16M-parameter float32 update).</summary>
    public const int DefaultMaxPayload = 64 << 20;

    private const int FixedHeader = 33;

    private static ReadOnlySpan<byte> Magic => "FLEV"u8;

    /// <summary>Serializes the envelope.</summary>
    public byte[] Encode(int maxPayload = DefaultMaxPayload)
    {
        VehicleId.Validate(Vehicle);
        if (!Enum.IsDefined(Kind)) throw new ArgumentException($"Unknown envelope kind {(byte)Kind}.");
        ArgumentOutOfRangeException.ThrowIfNegative(Round);
        if (Payload.Length > maxPayload)
            throw new ArgumentException($"Envelope payload of {Payload.Length} bytes exceeds the limit of {maxPayload}.");
        int n = Vehicle.Length;
        int tag = PlanTag == 0 ? 0 : 8;
        var bytes = new byte[FixedHeader + n + tag + 4 + Payload.Length];
        var span = bytes.AsSpan();
        Magic.CopyTo(span);
        span[4] = tag == 0 ? FormatVersion : TaggedFormatVersion;
        span[5] = (byte)Kind;
        BinaryPrimitives.WriteUInt16LittleEndian(span[6..], Epoch);
        BinaryPrimitives.WriteInt64LittleEndian(span[8..], Round);
        UpdateId.TryWriteBytes(span.Slice(16, 16), bigEndian: true, out _);
        span[32] = (byte)n;
        Encoding.ASCII.GetBytes(Vehicle, span.Slice(33, n));
        if (tag != 0) BinaryPrimitives.WriteUInt64BigEndian(span[(33 + n)..], PlanTag);
        BinaryPrimitives.WriteInt32LittleEndian(span[(33 + n + tag)..], Payload.Length);
        Payload.Span.CopyTo(span[(37 + n + tag)..]);
        return bytes;
    }

    /// <summary>
    /// Parses an envelope. Rejects, with a <see cref="WireFormatException"/> that says why: truncated or trailing bytes,
    /// another magic or version, an unknown kind, an invalid vehicle id, a payload over <paramref name="maxPayload"/>,
    /// and — when <paramref name="expectedRound"/> is given — any other round.
    /// </summary>
    public static Envelope Decode(ReadOnlySpan<byte> bytes, int maxPayload = DefaultMaxPayload, long? expectedRound = null)
    {
        var (envelope, start, length) = Parse(bytes, maxPayload, expectedRound);
        return envelope with { Payload = bytes.Slice(start, length).ToArray() };
    }

    /// <summary>
    /// <see cref="Decode(ReadOnlySpan{byte}, int, long?)"/> without copying the payload: the envelope's
    /// <see cref="Payload"/> is a slice of <paramref name="bytes"/>, which the caller must then leave unchanged (the
    /// aggregator's receive path: a reassembled update is decoded once and never written to).
    /// </summary>
    public static Envelope DecodeInPlace(ReadOnlyMemory<byte> bytes, int maxPayload = DefaultMaxPayload, long? expectedRound = null)
    {
        var (envelope, start, length) = Parse(bytes.Span, maxPayload, expectedRound);
        return envelope with { Payload = bytes.Slice(start, length) };
    }

    /// <summary>
    /// <see cref="DecodeInPlace(ReadOnlyMemory{byte}, int, long?)"/> of a payload in segments (a reassembled chunked
    /// transfer): the header is read from the start and <see cref="Body"/> is the rest of <paramref name="bytes"/>, not copied.
    /// </summary>
    public static Envelope DecodeInPlace(in ReadOnlySequence<byte> bytes, int maxPayload = DefaultMaxPayload, long? expectedRound = null)
    {
        if (bytes.IsSingleSegment) return DecodeInPlace(bytes.First, maxPayload, expectedRound);
        // The header is at most 33 + 64 + 8 + 4 bytes; a chunk holds at least 1 KiB, so it is nearly always in the first segment.
        Span<byte> head = stackalloc byte[FixedHeader + VehicleId.MaxLength + 8 + 4];
        scoped ReadOnlySpan<byte> first = bytes.FirstSpan;
        if (first.Length < head.Length)
        {
            head = head[..(int)Math.Min(head.Length, bytes.Length)];
            bytes.Slice(0, head.Length).CopyTo(head);
            first = head;
        }
        var (envelope, start, length) = Parse(first, maxPayload, expectedRound, bytes.Length);
        return envelope with { Body = bytes.Slice(start, length) };
    }

    private static (Envelope Envelope, int PayloadStart, int PayloadLength) Parse(ReadOnlySpan<byte> bytes, int maxPayload, long? expectedRound) =>
        Parse(bytes, maxPayload, expectedRound, bytes.Length);

    /// <summary>Parses the header at the start of <paramref name="bytes"/>, of an envelope <paramref name="total"/> bytes long.</summary>
    private static (Envelope Envelope, int PayloadStart, int PayloadLength) Parse(ReadOnlySpan<byte> bytes, int maxPayload, long? expectedRound, long total)
    {
        if (total < FixedHeader + 1 + 4)
            throw new WireFormatException($"Envelope truncated: {total} bytes is less than the {FixedHeader + 5}-byte minimum.", RejectReasons.Truncated);
        if (!bytes[..4].SequenceEqual(Magic)) throw new WireFormatException("Not a FleetLearn envelope (magic is not 'FLEV').", RejectReasons.Version);
        if (bytes[4] is not (FormatVersion or TaggedFormatVersion))
            throw new WireFormatException($"Envelope format version {bytes[4]} is not supported (this build reads versions {FormatVersion} and {TaggedFormatVersion}).", RejectReasons.Version);
        int tag = bytes[4] == TaggedFormatVersion ? 8 : 0;
        var kind = (EnvelopeKind)bytes[5];
        if (!Enum.IsDefined(kind)) throw new WireFormatException($"Unknown envelope kind {bytes[5]}.");
        ushort epoch = BinaryPrimitives.ReadUInt16LittleEndian(bytes[6..]);
        long round = BinaryPrimitives.ReadInt64LittleEndian(bytes[8..]);
        if (round < 0) throw new WireFormatException($"Envelope round {round} is negative.");
        if (expectedRound is { } expected && round != expected)
            throw new WireFormatException($"Envelope is for round {round}, not the current round {expected}.", RejectReasons.WrongRound);
        var updateId = new Guid(bytes.Slice(16, 16), bigEndian: true);
        int n = bytes[32];
        if (n is 0 or > VehicleId.MaxLength) throw new WireFormatException($"Envelope vehicle id length {n} is outside 1..{VehicleId.MaxLength}.");
        if (Math.Min(bytes.Length, total) < FixedHeader + n + tag + 4) throw new WireFormatException("Envelope truncated inside the vehicle id or plan tag.", RejectReasons.Truncated);
        string vehicle = Encoding.ASCII.GetString(bytes.Slice(33, n));
        if (!VehicleId.IsValid(vehicle)) throw new WireFormatException("Envelope vehicle id contains characters outside [A-Za-z0-9_.-].");
        ulong planTag = tag == 0 ? 0 : BinaryPrimitives.ReadUInt64BigEndian(bytes[(33 + n)..]);
        if (tag != 0 && planTag == 0) throw new WireFormatException("Envelope of version 2 carries a zero plan tag.");
        n += tag;
        int length = BinaryPrimitives.ReadInt32LittleEndian(bytes[(33 + n)..]);
        if (length < 0 || length > maxPayload)
            throw new WireFormatException($"Envelope payload length {length} is outside 0..{maxPayload}.", RejectReasons.Oversized);
        int expectedTotal = FixedHeader + n + 4 + length;
        if (total < expectedTotal) throw new WireFormatException($"Envelope truncated: the payload needs {length} bytes, {total - (expectedTotal - length)} are present.", RejectReasons.Truncated);
        if (total > expectedTotal) throw new WireFormatException($"Envelope has {total - expectedTotal} trailing bytes.");
        return (new Envelope(kind, vehicle, round, updateId, ReadOnlyMemory<byte>.Empty) { Epoch = epoch, PlanTag = planTag }, 37 + n, length);
    }
}
