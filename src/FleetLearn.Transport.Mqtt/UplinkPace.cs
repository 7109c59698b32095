using System.Buffers.Binary;
using FleetLearn.Core.Rounds;

namespace FleetLearn.Transport.Mqtt;

/// <summary>
/// The aggregator's "slow down" signal on <c>round/slowdown</c>: how long vehicles hold their resends, because what they send now
/// waits that long in the aggregator's queue before it is even read. Layout: u32 milliseconds, little-endian. It only ever
/// delays resends (never a first send), and a vehicle caps it at <see cref="MaxHold"/>, so a stale or forged signal costs at
/// most a late resend; only the aggregator may publish under <c>round/</c> (the broker's ACL).
/// </summary>
public static class UplinkPace
{
    /// <summary>Longest hold a vehicle honours.</summary>
    public static readonly TimeSpan MaxHold = TimeSpan.FromMinutes(5);

    /// <summary>Encodes a hold of <paramref name="hold"/> (clamped to [0, <see cref="MaxHold"/>]).</summary>
    public static byte[] Encode(TimeSpan hold)
    {
        var bytes = new byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(bytes, (uint)Math.Clamp(hold.TotalMilliseconds, 0, MaxHold.TotalMilliseconds));
        return bytes;
    }

    /// <summary>Decodes a hold (an empty payload, a cleared retained message, is no hold); throws <see cref="WireFormatException"/> on any other length.</summary>
    public static TimeSpan Decode(ReadOnlySpan<byte> payload)
    {
        if (payload.IsEmpty) return TimeSpan.Zero;
        if (payload.Length != 4) throw new WireFormatException($"A pace signal is 4 bytes, not {payload.Length}.");
        return TimeSpan.FromMilliseconds(Math.Min(BinaryPrimitives.ReadUInt32LittleEndian(payload), MaxHold.TotalMilliseconds));
    }
}
