using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;

namespace FleetLearn.Transport.Mqtt;

/// <summary>
/// A vehicle's plaintext update Δ = w_local − w_N with its aggregation weight. Layout: f64 weight, i32 samples,
/// f64 mean train loss, i32 P, P × float32 (little-endian).
/// </summary>
public sealed record ModelUpdate(double Weight, int Samples, double TrainLoss, float[] Delta)
{
    /// <summary>Serializes the update.</summary>
    public byte[] Encode()
    {
        var bytes = new byte[24 + 4 * Delta.Length];
        var span = bytes.AsSpan();
        BinaryPrimitives.WriteDoubleLittleEndian(span, Weight);
        BinaryPrimitives.WriteInt32LittleEndian(span[8..], Samples);
        BinaryPrimitives.WriteDoubleLittleEndian(span[12..], TrainLoss);
        BinaryPrimitives.WriteInt32LittleEndian(span[20..], Delta.Length);
        if (BitConverter.IsLittleEndian) MemoryMarshal.AsBytes(Delta.AsSpan()).CopyTo(span[24..]);
        else for (int i = 0; i < Delta.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(span[(24 + 4 * i)..], Delta[i]);
        return bytes;
    }

    /// <summary>Parses an update of exactly <paramref name="parameterCount"/> values; rejects NaN/∞ and bad weights.</summary>
    public static ModelUpdate Decode(ReadOnlySpan<byte> bytes, int parameterCount)
    {
        if (bytes.Length < 24) throw new WireFormatException($"Update truncated ({bytes.Length} bytes).");
        double weight = BinaryPrimitives.ReadDoubleLittleEndian(bytes);
        int samples = BinaryPrimitives.ReadInt32LittleEndian(bytes[8..]);
        double loss = BinaryPrimitives.ReadDoubleLittleEndian(bytes[12..]);
        int count = BinaryPrimitives.ReadInt32LittleEndian(bytes[20..]);
        if (count != parameterCount) throw new WireFormatException($"Update has {count} parameters; the model has {parameterCount}.");
        if (bytes.Length != 24 + 4L * count) throw new WireFormatException($"Update length {bytes.Length} does not match {count} parameters.");
        if (!(weight > 0) || !double.IsFinite(weight) || weight > 1e9) throw new WireFormatException($"Update weight {weight} is not a positive finite number ≤ 1e9.");
        if (samples < 0) throw new WireFormatException($"Update sample count {samples} is negative.");
        var delta = new float[count];
        if (BitConverter.IsLittleEndian) bytes[24..].CopyTo(MemoryMarshal.AsBytes(delta.AsSpan()));
        else for (int i = 0; i < count; i++) delta[i] = BinaryPrimitives.ReadSingleLittleEndian(bytes[(24 + 4 * i)..]);
        for (int i = 0; i < delta.Length; i++)
        {
            if (!float.IsFinite(delta[i])) throw new WireFormatException($"Update value {i} is {delta[i]}; NaN and ∞ are rejected.");
        }
        return new ModelUpdate(weight, samples, double.IsFinite(loss) ? loss : double.NaN, delta);
    }
}

/// <summary>The aggregator's verdict on an update.</summary>
public enum AckStatus : byte
{
    /// <summary>Folded into the round.</summary>
    Accepted = 0,

    /// <summary>Already folded earlier (a resend): nothing changed.</summary>
    Duplicate = 1,

    /// <summary>Not usable (late, wrong round, not in the cohort, malformed): the vehicle drops it from its outbox.</summary>
    Rejected = 2,
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

/// <summary>Check-in payload: i32 number of local samples.</summary>
public static class CheckinPayload
{
    /// <summary>Encodes the sample count.</summary>
    public static byte[] Encode(int samples)
    {
        var bytes = new byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(bytes, samples);
        return bytes;
    }

    /// <summary>Decodes the sample count.</summary>
    public static int Decode(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length != 4) throw new WireFormatException("Check-in payload must be 4 bytes.");
        int samples = BinaryPrimitives.ReadInt32LittleEndian(bytes);
        if (samples < 0) throw new WireFormatException("Check-in sample count is negative.");
        return samples;
    }
}
