using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text.Json.Serialization;
using System.Text.Json;
using FleetLearn.Core.Model;
using FleetLearn.Core.Rounds;

namespace FleetLearn.Transport.Mqtt;

/// <summary>
/// Signs and verifies round plans. Signed layout: magic <c>FLRP</c>, version 1, 3 reserved bytes, u32 JSON length,
/// UTF-8 JSON of the plan, u16 signature length, ECDSA P-256 / SHA-256 signature (IEEE P1363) over every byte before it.
/// </summary>
public static class RoundPlanCodec
{
    /// <summary>Current format version (2 added <see cref="RoundPlan.Protection"/>: a version-1 reader would ignore it and send unprotected updates, so it must refuse the plan instead).</summary>
    public const byte FormatVersion = 2;

    /// <summary>
    /// The version of a plan with <see cref="RoundPlan.Shards"/>: a version-2 reader would ignore the shard table and join the
    /// whole cohort's secure sum, so a sharded plan carries 3 and older readers refuse it. Unsharded plans stay version 2.
    /// </summary>
    public const byte ShardedFormatVersion = 3;

    /// <summary>Largest signed plan accepted (a cohort of ~20k vehicle ids).</summary>
    public const int MaxBytes = 1 << 20;

    private static ReadOnlySpan<byte> Magic => "FLRP"u8;

    private static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    };

    /// <summary>Serializes and signs <paramref name="plan"/>.</summary>
    public static byte[] Sign(RoundPlan plan, ECDsa key)
    {
        ArgumentNullException.ThrowIfNull(plan);
        ArgumentNullException.ThrowIfNull(key);
        plan.Validate();
        var json = JsonSerializer.SerializeToUtf8Bytes(plan, Json);
        int signedLength = 12 + json.Length;
        var body = new byte[signedLength];
        Magic.CopyTo(body);
        body[4] = plan.Shards is null ? FormatVersion : ShardedFormatVersion;
        BinaryPrimitives.WriteUInt32LittleEndian(body.AsSpan(8), (uint)json.Length);
        json.CopyTo(body, 12);
        var bytes = SignedFrame.Seal(body, key);
        if (bytes.Length > MaxBytes) throw new ArgumentException($"The signed plan is {bytes.Length} bytes; the limit is {MaxBytes}.");
        return bytes;
    }

    /// <summary>
    /// Verifies the signature with <paramref name="publicKey"/>, parses and validates the plan and checks that it is for
    /// <paramref name="fleet"/>. Every failure is a <see cref="WireFormatException"/>.
    /// </summary>
    public static RoundPlan Verify(ReadOnlySpan<byte> bytes, ECDsa publicKey, string fleet)
    {
        ArgumentNullException.ThrowIfNull(publicKey);
        if (bytes.Length > MaxBytes) throw new WireFormatException($"Round plan of {bytes.Length} bytes exceeds the limit of {MaxBytes}.", RejectReasons.Oversized);
        if (bytes.Length < 12 + 2 + 2) throw new WireFormatException($"Round plan truncated ({bytes.Length} bytes).", RejectReasons.Truncated);
        if (!bytes[..4].SequenceEqual(Magic)) throw new WireFormatException("Not a FleetLearn round plan (magic is not 'FLRP').", RejectReasons.Version);
        if (bytes[4] is not (FormatVersion or ShardedFormatVersion)) throw new WireFormatException($"Round plan format version {bytes[4]} is not supported (this build reads versions {FormatVersion} and {ShardedFormatVersion}).", RejectReasons.Version);
        uint jsonLength = BinaryPrimitives.ReadUInt32LittleEndian(bytes[8..]);
        if (jsonLength > (uint)(bytes.Length - 14)) throw new WireFormatException("Round plan truncated inside its JSON.", RejectReasons.Truncated);
        int signedLength = 12 + (int)jsonLength;
        SignedFrame.Open(bytes, signedLength, publicKey, "Round plan");
        RoundPlan? plan;
        try
        {
            plan = JsonSerializer.Deserialize<RoundPlan>(bytes.Slice(12, (int)jsonLength), Json);
        }
        catch (JsonException e)
        {
            throw new WireFormatException($"Round plan JSON is invalid: {e.Message}", e);
        }
        if (plan is null) throw new WireFormatException("Round plan JSON is null.");
        plan.Validate();
        if ((plan.Shards is null) != (bytes[4] == FormatVersion))
            throw new WireFormatException($"Round plan format version {bytes[4]} does not match its shard table ({(plan.Shards is null ? "none" : "present")}).", RejectReasons.Version);
        if (plan.Fleet != fleet) throw new WireFormatException($"Round plan is for fleet '{plan.Fleet}', not '{fleet}'.");
        return plan;
    }

    /// <summary>Hex SHA-256 of model checkpoint bytes, as the plan carries it.</summary>
    public static string HashModel(ReadOnlySpan<byte> checkpointBytes) => Convert.ToHexStringLower(SHA256.HashData(checkpointBytes));
}
