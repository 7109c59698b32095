using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using FleetLearn.Core.Rounds;

namespace FleetLearn.Transport.Mqtt;

/// <summary>
/// The aggregator's answer to a FedBuff check-in, sent to <c>vehicles/{id}/inbox/assignment</c>: accepted with the signed plan
/// of the model version to train on (the vehicle its only member, the lease end as its deadline), the slot the update's
/// envelope names and the buffer size K; or refused (<see cref="RejectReasons.Busy"/>, <see cref="RejectReasons.ParticipationCap"/>)
/// with the reason. Secure FedBuff (docs/async.md, "Secure groups over MQTT"): an accepted assignment with an empty plan says the
/// vehicle joined secure group <see cref="Slot"/>, still forming (<see cref="IsWaiting"/>); when the group forms, a second one carries
/// the group's signed plan (a secure round whose cohort is the group). Signed layout: magic <c>FLAS</c>, u8 status, 3 reserved bytes, u64 slot, i32 K, u16 n + n bytes of UTF-8
/// reason, u32 m + m bytes of signed plan (<see cref="RoundPlanCodec"/>; empty when refused), u16 signature length, ECDSA
/// P-256 / SHA-256 signature (IEEE P1363) over every byte before it — so the slot and K are the aggregator's too.
/// </summary>
public sealed record Assignment(AckStatus Status, string Reason, ulong Slot, int BufferSize, byte[] SignedPlan)
{
    /// <summary>Largest encoded assignment accepted.</summary>
    public const int MaxBytes = RoundPlanCodec.MaxBytes + 4096;

    private static ReadOnlySpan<byte> Magic => "FLAS"u8;

    /// <summary>Accepted without a plan: the vehicle joined a secure group still forming (group number in <see cref="Slot"/>); its plan follows.</summary>
    public bool IsWaiting => Status == AckStatus.Accepted && SignedPlan.Length == 0;

    /// <summary>Encodes and signs the assignment.</summary>
    public byte[] Sign(ECDsa key)
    {
        ArgumentNullException.ThrowIfNull(key);
        var reason = Encoding.UTF8.GetBytes(Reason);
        if (reason.Length > UpdateAck.MaxReasonBytes) reason = reason[..UpdateAck.MaxReasonBytes];
        int signed = 4 + 4 + 8 + 4 + 2 + reason.Length + 4 + SignedPlan.Length;
        var body = new byte[signed];
        Magic.CopyTo(body);
        body[4] = (byte)Status;
        BinaryPrimitives.WriteUInt64LittleEndian(body.AsSpan(8), Slot);
        BinaryPrimitives.WriteInt32LittleEndian(body.AsSpan(16), BufferSize);
        BinaryPrimitives.WriteUInt16LittleEndian(body.AsSpan(20), (ushort)reason.Length);
        reason.CopyTo(body, 22);
        BinaryPrimitives.WriteUInt32LittleEndian(body.AsSpan(22 + reason.Length), (uint)SignedPlan.Length);
        SignedPlan.CopyTo(body, 26 + reason.Length);
        return SignedFrame.Seal(body, key);
    }

    /// <summary>Checks the signature with the pinned aggregator key and decodes; every failure is a <see cref="WireFormatException"/>.</summary>
    public static Assignment Verify(ReadOnlySpan<byte> bytes, ECDsa publicKey)
    {
        ArgumentNullException.ThrowIfNull(publicKey);
        if (bytes.Length > MaxBytes) throw new WireFormatException($"Assignment of {bytes.Length} bytes exceeds {MaxBytes}.", RejectReasons.Oversized);
        if (bytes.Length < 26 + 2) throw new WireFormatException($"Assignment truncated ({bytes.Length} bytes).", RejectReasons.Truncated);
        if (!bytes[..4].SequenceEqual(Magic)) throw new WireFormatException("Not a FleetLearn assignment (magic is not 'FLAS').", RejectReasons.Version);
        var status = (AckStatus)bytes[4];
        if (!Enum.IsDefined(status)) throw new WireFormatException($"Unknown assignment status {bytes[4]}.");
        ulong slot = BinaryPrimitives.ReadUInt64LittleEndian(bytes[8..]);
        int k = BinaryPrimitives.ReadInt32LittleEndian(bytes[16..]);
        int n = BinaryPrimitives.ReadUInt16LittleEndian(bytes[20..]);
        if (n > UpdateAck.MaxReasonBytes || bytes.Length < 26 + n + 2) throw new WireFormatException("Assignment reason length is invalid.", RejectReasons.Truncated);
        uint m = BinaryPrimitives.ReadUInt32LittleEndian(bytes[(22 + n)..]);
        if (m > (uint)(bytes.Length - 26 - n - 2)) throw new WireFormatException("Assignment truncated inside its plan.", RejectReasons.Truncated);
        int signed = 26 + n + (int)m;
        SignedFrame.Open(bytes, signed, publicKey, "Assignment");
        if (status == AckStatus.Accepted && k < 1) throw new WireFormatException("An accepted assignment carries no buffer size.");
        return new Assignment(status, Encoding.UTF8.GetString(bytes.Slice(22, n)), slot, k, bytes.Slice(26 + n, (int)m).ToArray());
    }
}
