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
/// 4      1    format version = 1
/// 5      1    kind (EnvelopeKind)
/// 6      2    reserved, 0
/// 8      8    round (≥ 0)
/// 16     16   update id (GUID, RFC 4122 byte order)
/// 32     1    n = vehicle id length (1..64, see VehicleId)
/// 33     n    vehicle id (ASCII)
/// …      4    P = payload length
/// …      P    payload
/// </code>
/// Nothing may follow the payload. Integrity of large payloads comes from the chunk layer's SHA-256, authenticity
/// from the broker's per-vehicle ACL (a vehicle can only publish under its own topic; the decoder's caller checks
/// that the topic's vehicle equals the envelope's).
/// </remarks>
public sealed record Envelope(EnvelopeKind Kind, string Vehicle, long Round, Guid UpdateId, ReadOnlyMemory<byte> Payload)
{
    /// <summary>Current format version.</summary>
    public const byte FormatVersion = 1;

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
        var bytes = new byte[FixedHeader + n + 4 + Payload.Length];
        var span = bytes.AsSpan();
        Magic.CopyTo(span);
        span[4] = FormatVersion;
        span[5] = (byte)Kind;
        BinaryPrimitives.WriteInt64LittleEndian(span[8..], Round);
        UpdateId.TryWriteBytes(span.Slice(16, 16), bigEndian: true, out _);
        span[32] = (byte)n;
        Encoding.ASCII.GetBytes(Vehicle, span.Slice(33, n));
        BinaryPrimitives.WriteInt32LittleEndian(span[(33 + n)..], Payload.Length);
        Payload.Span.CopyTo(span[(37 + n)..]);
        return bytes;
    }

    /// <summary>
    /// Parses an envelope. Rejects, with a <see cref="WireFormatException"/> that says why: truncated or trailing bytes,
    /// another magic or version, an unknown kind, an invalid vehicle id, a payload over <paramref name="maxPayload"/>,
    /// and — when <paramref name="expectedRound"/> is given — any other round.
    /// </summary>
    public static Envelope Decode(ReadOnlySpan<byte> bytes, int maxPayload = DefaultMaxPayload, long? expectedRound = null)
    {
        if (bytes.Length < FixedHeader + 1 + 4)
            throw new WireFormatException($"Envelope truncated: {bytes.Length} bytes is less than the {FixedHeader + 5}-byte minimum.", RejectReasons.Truncated);
        if (!bytes[..4].SequenceEqual(Magic)) throw new WireFormatException("Not a FleetLearn envelope (magic is not 'FLEV').", RejectReasons.Version);
        if (bytes[4] != FormatVersion)
            throw new WireFormatException($"Envelope format version {bytes[4]} is not supported (this build reads version {FormatVersion}).", RejectReasons.Version);
        var kind = (EnvelopeKind)bytes[5];
        if (!Enum.IsDefined(kind)) throw new WireFormatException($"Unknown envelope kind {bytes[5]}.");
        if (bytes[6] != 0 || bytes[7] != 0) throw new WireFormatException("Envelope reserved bytes are not zero.");
        long round = BinaryPrimitives.ReadInt64LittleEndian(bytes[8..]);
        if (round < 0) throw new WireFormatException($"Envelope round {round} is negative.");
        if (expectedRound is { } expected && round != expected)
            throw new WireFormatException($"Envelope is for round {round}, not the current round {expected}.", RejectReasons.WrongRound);
        var updateId = new Guid(bytes.Slice(16, 16), bigEndian: true);
        int n = bytes[32];
        if (n is 0 or > VehicleId.MaxLength) throw new WireFormatException($"Envelope vehicle id length {n} is outside 1..{VehicleId.MaxLength}.");
        if (bytes.Length < FixedHeader + n + 4) throw new WireFormatException("Envelope truncated inside the vehicle id.", RejectReasons.Truncated);
        string vehicle = Encoding.ASCII.GetString(bytes.Slice(33, n));
        if (!VehicleId.IsValid(vehicle)) throw new WireFormatException("Envelope vehicle id contains characters outside [A-Za-z0-9_.-].");
        int length = BinaryPrimitives.ReadInt32LittleEndian(bytes[(33 + n)..]);
        if (length < 0 || length > maxPayload)
            throw new WireFormatException($"Envelope payload length {length} is outside 0..{maxPayload}.", RejectReasons.Oversized);
        int expectedTotal = FixedHeader + n + 4 + length;
        if (bytes.Length < expectedTotal) throw new WireFormatException($"Envelope truncated: the payload needs {length} bytes, {bytes.Length - (expectedTotal - length)} are present.", RejectReasons.Truncated);
        if (bytes.Length > expectedTotal) throw new WireFormatException($"Envelope has {bytes.Length - expectedTotal} trailing bytes.");
        return new Envelope(kind, vehicle, round, updateId, bytes.Slice(37 + n, length).ToArray());
    }
}
