using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using FleetLearn.Core.Rounds;

namespace FleetLearn.Transport.Mqtt;

/// <summary>
/// A vehicle's plaintext update on the wire: its mean local training loss, its sample count, and the update itself as an
/// <see cref="Core.Compression.UpdateEnvelope"/> of the round's pipeline (codec, clipping and noise already applied).
/// Layout: f64 train loss, i32 samples, the codec envelope to the end. Under secure aggregation no such message exists:
/// the vehicle sends masked inputs instead.
/// </summary>
public sealed record PlainUpdate(double TrainLoss, int Samples, ReadOnlyMemory<byte> Body)
{
    /// <summary>Bytes before the codec envelope.</summary>
    public const int HeaderBytes = 12;

    /// <summary>Serializes the update.</summary>
    public byte[] Encode()
    {
        var bytes = new byte[HeaderBytes + Body.Length];
        BinaryPrimitives.WriteDoubleLittleEndian(bytes, TrainLoss);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(8), Samples);
        Body.Span.CopyTo(bytes.AsSpan(HeaderBytes));
        return bytes;
    }

    /// <summary>Parses the header; the body is decoded (and checked) by the round's pipeline.</summary>
    public static PlainUpdate Decode(ReadOnlyMemory<byte> bytes)
    {
        if (bytes.Length < HeaderBytes + 1) throw new WireFormatException($"Update truncated ({bytes.Length} bytes).", RejectReasons.Truncated);
        var span = bytes.Span;
        double loss = BinaryPrimitives.ReadDoubleLittleEndian(span);
        int samples = BinaryPrimitives.ReadInt32LittleEndian(span[8..]);
        if (samples < 0) throw new WireFormatException($"Update sample count {samples} is negative.");
        return new PlainUpdate(double.IsFinite(loss) ? loss : double.NaN, samples, bytes[HeaderBytes..]);
    }

    /// <summary><see cref="Decode(ReadOnlyMemory{byte})"/> of an update in segments (as reassembled from chunks): the codec envelope is the rest of <paramref name="bytes"/>, not copied.</summary>
    public static (double TrainLoss, int Samples, ReadOnlySequence<byte> Body) Decode(in ReadOnlySequence<byte> bytes)
    {
        if (bytes.Length < HeaderBytes + 1) throw new WireFormatException($"Update truncated ({bytes.Length} bytes).", RejectReasons.Truncated);
        Span<byte> head = stackalloc byte[HeaderBytes];
        bytes.Slice(0, HeaderBytes).CopyTo(head);
        double loss = BinaryPrimitives.ReadDoubleLittleEndian(head);
        int samples = BinaryPrimitives.ReadInt32LittleEndian(head[8..]);
        if (samples < 0) throw new WireFormatException($"Update sample count {samples} is negative.");
        return (double.IsFinite(loss) ? loss : double.NaN, samples, bytes.Slice(HeaderBytes));
    }
}

/// <summary>Application-level acknowledgement: the update id is the envelope's; layout: u8 status, u16 n, n bytes UTF-8 reason.</summary>
public sealed record UpdateAck(AckStatus Status, string Reason = "")
{
    /// <summary>Longest reason kept.</summary>
    public const int MaxReasonBytes = 512;

    /// <summary>Serializes the ack (the reason is cut to <see cref="MaxReasonBytes"/>).</summary>
    public byte[] Encode()
    {
        var reason = Encoding.UTF8.GetBytes(Reason);
        if (reason.Length > MaxReasonBytes) reason = reason[..MaxReasonBytes];
        var bytes = new byte[3 + reason.Length];
        bytes[0] = (byte)Status;
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(1), (ushort)reason.Length);
        reason.CopyTo(bytes, 3);
        return bytes;
    }

    /// <summary>Parses an ack.</summary>
    public static UpdateAck Decode(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length < 3) throw new WireFormatException("Ack truncated.");
        var status = (AckStatus)bytes[0];
        if (!Enum.IsDefined(status)) throw new WireFormatException($"Unknown ack status {bytes[0]}.");
        int n = BinaryPrimitives.ReadUInt16LittleEndian(bytes[1..]);
        if (n > MaxReasonBytes || bytes.Length != 3 + n) throw new WireFormatException("Ack reason length is invalid.");
        return new UpdateAck(status, Encoding.UTF8.GetString(bytes.Slice(3, n)));
    }
}

/// <summary>
/// Check-in payload: i32 number of local samples, u16 n, n bytes of the vehicle's device public key (ECDSA P-256
/// SubjectPublicKeyInfo; it signs the vehicle's secure-aggregation round keys), then optionally u16 m, m bytes of the
/// vehicle's device certificate (DER, the mTLS certificate whose key that is; issue 13 item 5; m = 0: none), then optionally
/// u8 extension version 1, f64 seconds (read to the millisecond) the vehicle expects to stay eligible from now (pace steering, docs/async.md; a duration,
/// like the plan's deadlines, so that a vehicle's clock error does not move it). Samples = 0 withdraws the check-in.
/// Each field is appended after the last, so a check-in of an older agent decodes unchanged.
/// </summary>
public sealed record Checkin(int Samples, byte[] DeviceKey, byte[]? DeviceCertificate = null, TimeSpan? EligibleFor = null)
{
    /// <summary>MQTT 5 user property of a check-in: the vehicle's wall-clock time when it sent it (Unix ms), for the aggregator's clock-skew report.</summary>
    public const string SentAtProperty = "sent-unix-ms";

    /// <summary>Longest device key accepted.</summary>
    public const int MaxKeyBytes = 512;

    /// <summary>Longest device certificate accepted.</summary>
    public const int MaxCertificateBytes = 4096;

    /// <summary>The eligibility extension's version byte.</summary>
    public const byte EligibilityExtension = 1;

    /// <summary>Longest eligibility a check-in may report (a vehicle parked for longer reports this much; more is refused).</summary>
    public static readonly TimeSpan MaxEligibleFor = TimeSpan.FromDays(7);

    /// <summary>Longest encoded check-in: sample count, the longest key and the longest certificate with their lengths, the eligibility.</summary>
    public const int MaxBytes = 6 + MaxKeyBytes + 2 + MaxCertificateBytes + 9;

    /// <summary>Encodes the check-in.</summary>
    public byte[] Encode()
    {
        if (DeviceKey.Length > MaxKeyBytes) throw new ArgumentException($"Device key of {DeviceKey.Length} bytes exceeds {MaxKeyBytes}.");
        if (DeviceCertificate is { Length: > MaxCertificateBytes }) throw new ArgumentException($"Device certificate of {DeviceCertificate.Length} bytes exceeds {MaxCertificateBytes}.");
        if (EligibleFor is { } e && EligibilityProblem(e.TotalSeconds) is { } why) throw new ArgumentException(why);
        int certificate = DeviceCertificate is null && EligibleFor is null ? 0 : 2 + (DeviceCertificate?.Length ?? 0);
        var bytes = new byte[6 + DeviceKey.Length + certificate + (EligibleFor is null ? 0 : 9)];
        BinaryPrimitives.WriteInt32LittleEndian(bytes, Samples);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(4), (ushort)DeviceKey.Length);
        DeviceKey.CopyTo(bytes, 6);
        if (certificate > 0)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(6 + DeviceKey.Length), (ushort)(DeviceCertificate?.Length ?? 0));
            DeviceCertificate?.CopyTo(bytes, 8 + DeviceKey.Length);
        }
        if (EligibleFor is { } eligible)
        {
            bytes[6 + DeviceKey.Length + certificate] = EligibilityExtension;
            BinaryPrimitives.WriteDoubleLittleEndian(bytes.AsSpan(7 + DeviceKey.Length + certificate), eligible.TotalSeconds);
        }
        return bytes;
    }

    /// <summary>Decodes a check-in.</summary>
    public static Checkin Decode(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length < 6) throw new WireFormatException("Check-in payload truncated.", RejectReasons.Truncated);
        int samples = BinaryPrimitives.ReadInt32LittleEndian(bytes);
        if (samples < 0) throw new WireFormatException("Check-in sample count is negative.");
        int n = BinaryPrimitives.ReadUInt16LittleEndian(bytes[4..]);
        if (n > MaxKeyBytes) throw new WireFormatException($"Check-in device key of {n} bytes exceeds {MaxKeyBytes}.", RejectReasons.Oversized);
        if (bytes.Length < 6 + n) throw new WireFormatException("Check-in length does not match its device key length.", RejectReasons.Truncated);
        var key = bytes.Slice(6, n).ToArray();
        var rest = bytes[(6 + n)..];
        if (rest.IsEmpty) return new Checkin(samples, key);
        if (rest.Length < 2) throw new WireFormatException("Check-in device certificate length truncated.", RejectReasons.Truncated);
        int m = BinaryPrimitives.ReadUInt16LittleEndian(rest);
        if (m > MaxCertificateBytes) throw new WireFormatException($"Check-in device certificate of {m} bytes exceeds {MaxCertificateBytes}.", RejectReasons.Oversized);
        if (rest.Length < 2 + m) throw new WireFormatException("Check-in length does not match its device certificate length.", RejectReasons.Truncated);
        var certificate = m == 0 ? null : rest.Slice(2, m).ToArray();
        var extension = rest[(2 + m)..];
        if (extension.IsEmpty) return new Checkin(samples, key, certificate);
        if (extension[0] != EligibilityExtension) throw new WireFormatException($"Check-in extension version {extension[0]} is unknown (this aggregator reads version {EligibilityExtension}).", RejectReasons.Version);
        if (extension.Length != 9) throw new WireFormatException("Check-in length does not match its eligibility extension (9 bytes).", RejectReasons.Truncated);
        double seconds = BinaryPrimitives.ReadDoubleLittleEndian(extension[1..]);
        if (EligibilityProblem(seconds) is { } why) throw new WireFormatException($"Check-in {why}", double.IsFinite(seconds) ? RejectReasons.Malformed : RejectReasons.NonFinite);
        return new Checkin(samples, key, certificate, TimeSpan.FromMilliseconds(Math.Round(seconds * 1000))); // millisecond resolution
    }

    /// <summary>Why <paramref name="seconds"/> of eligibility cannot be reported, or null.</summary>
    private static string? EligibilityProblem(double seconds) =>
        !double.IsFinite(seconds) ? FormattableString.Invariant($"eligibility of {seconds} seconds is not a finite number.")
        : seconds <= 0 ? FormattableString.Invariant($"eligibility ends {Math.Abs(seconds):0.###} seconds before the check-in (it must end after it).")
        : seconds < 0.001 ? FormattableString.Invariant($"eligibility of {seconds} seconds is under the format's millisecond.")
        : seconds > MaxEligibleFor.TotalSeconds ? FormattableString.Invariant($"eligibility of {seconds:0.###} seconds is more than {MaxEligibleFor.TotalDays:0} days ahead.")
        : null;
}
