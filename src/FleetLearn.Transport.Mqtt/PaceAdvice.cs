using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using FleetLearn.Core.Rounds;

namespace FleetLearn.Transport.Mqtt;

/// <summary>
/// The aggregator's suggested check-in window for one vehicle (pace steering, docs/async.md), sent to
/// <c>vehicles/{id}/inbox/pace</c>. Signed layout: magic <c>FLPA</c>, u8 version 1, 3 reserved bytes, u16 n + n bytes UTF-8
/// fleet, u16 v + v bytes UTF-8 vehicle id, i64 issued, i64 from, i64 until (Unix ms, the aggregator's clock), u16 signature
/// length, ECDSA P-256 / SHA-256 signature (IEEE P1363) over every byte before it with the plan key — so a vehicle ignores a
/// suggestion the aggregator did not make, one made for another vehicle or fleet, and (by <see cref="Issued"/>) an older one replayed.
/// </summary>
public sealed record PaceAdvice(string Fleet, string Vehicle, DateTimeOffset Issued, DateTimeOffset From, DateTimeOffset Until)
{
    /// <summary>Largest encoded suggestion accepted.</summary>
    public const int MaxBytes = 1024;

    /// <summary>The inbox kind it travels on: <c>vehicles/{id}/inbox/pace</c>.</summary>
    public const string InboxKind = "pace";

    /// <summary>The format version written and read.</summary>
    public const byte Version = 1;

    /// <summary>Longest window accepted (a day: one hour-of-day bin is the default).</summary>
    public static readonly TimeSpan MaxWidth = TimeSpan.FromDays(1);

    private static ReadOnlySpan<byte> Magic => "FLPA"u8;

    /// <summary>The suggestion as pace steering states it.</summary>
    public PaceSuggestion Suggestion => new(From, Until);

    /// <summary>Encodes and signs the suggestion.</summary>
    public byte[] Sign(ECDsa key)
    {
        ArgumentNullException.ThrowIfNull(key);
        byte[] fleet = Encoding.UTF8.GetBytes(Fleet), vehicle = Encoding.UTF8.GetBytes(Vehicle);
        int signed = 8 + 2 + fleet.Length + 2 + vehicle.Length + 24;
        if (signed + 2 + 64 > MaxBytes) throw new ArgumentException("Fleet and vehicle names are too long for a pace suggestion.");
        var body = new byte[signed];
        Magic.CopyTo(body);
        body[4] = Version;
        int at = 8;
        foreach (var text in new[] { fleet, vehicle })
        {
            BinaryPrimitives.WriteUInt16LittleEndian(body.AsSpan(at), (ushort)text.Length);
            text.CopyTo(body, at + 2);
            at += 2 + text.Length;
        }
        foreach (var t in new[] { Issued, From, Until })
        {
            BinaryPrimitives.WriteInt64LittleEndian(body.AsSpan(at), t.ToUnixTimeMilliseconds());
            at += 8;
        }
        return SignedFrame.Seal(body, key);
    }

    /// <summary>Checks the signature with the pinned aggregator key, the fleet and the vehicle, and decodes; every failure is a <see cref="WireFormatException"/>.</summary>
    public static PaceAdvice Verify(ReadOnlySpan<byte> bytes, ECDsa publicKey, string fleet, string vehicle)
    {
        ArgumentNullException.ThrowIfNull(publicKey);
        if (bytes.Length > MaxBytes) throw new WireFormatException($"Pace suggestion of {bytes.Length} bytes exceeds {MaxBytes}.", RejectReasons.Oversized);
        if (bytes.Length < 8 + 2 + 2 + 24 + 2) throw new WireFormatException($"Pace suggestion truncated ({bytes.Length} bytes).", RejectReasons.Truncated);
        if (!bytes[..4].SequenceEqual(Magic)) throw new WireFormatException("Not a FleetLearn pace suggestion (magic is not 'FLPA').", RejectReasons.Version);
        if (bytes[4] != Version) throw new WireFormatException($"Pace suggestion version {bytes[4]} is unknown (this agent reads version {Version}).", RejectReasons.Version);
        int at = 8;
        var names = new string[2];
        for (int i = 0; i < 2; i++)
        {
            int n = BinaryPrimitives.ReadUInt16LittleEndian(bytes[at..]);
            if (bytes.Length < at + 2 + n + 2) throw new WireFormatException("Pace suggestion truncated inside a name.", RejectReasons.Truncated);
            names[i] = Encoding.UTF8.GetString(bytes.Slice(at + 2, n));
            at += 2 + n;
        }
        int signed = at + 24;
        if (bytes.Length < signed + 2) throw new WireFormatException("Pace suggestion truncated inside its times.", RejectReasons.Truncated);
        SignedFrame.Open(bytes, signed, publicKey, "Pace suggestion");
        if (names[0] != fleet || names[1] != vehicle)
            throw new WireFormatException($"Pace suggestion for {names[1]} of fleet {names[0]} reached {vehicle} of fleet {fleet}.", RejectReasons.NotInCohort);
        var times = new DateTimeOffset[3];
        for (int i = 0; i < 3; i++)
        {
            long ms = BinaryPrimitives.ReadInt64LittleEndian(bytes[(at + 8 * i)..]);
            if (ms < 0 || ms > DateTimeOffset.MaxValue.ToUnixTimeMilliseconds()) throw new WireFormatException($"Pace suggestion time {ms} ms is out of range.");
            times[i] = DateTimeOffset.FromUnixTimeMilliseconds(ms);
        }
        if (!(times[1] < times[2]) || times[2] - times[1] > MaxWidth)
            throw new WireFormatException($"Pace suggestion window {times[1]:O} – {times[2]:O} is empty or wider than {MaxWidth.TotalHours:0} hours.");
        return new PaceAdvice(names[0], names[1], times[0], times[1], times[2]);
    }
}
