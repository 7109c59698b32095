using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text.Json.Serialization;
using System.Text.Json;
using FleetLearn.Core.Model;
using FleetLearn.Core.Rounds;

namespace FleetLearn.Transport.Mqtt;

/// <summary>
/// What the aggregator announces for one round: the global model (version, architecture, SHA-256 of its checkpoint
/// bytes — the model's authenticity follows from the plan's signature), the cohort, the local hyper-parameters and
/// the phase deadline. Published retained on <c>round/current</c>, signed with ECDSA P-256.
/// </summary>
public sealed record RoundPlan
{
    /// <summary>Fleet the plan is for (a plan replayed into another fleet is rejected).</summary>
    public required string Fleet { get; init; }

    /// <summary>Round number, from 1.</summary>
    public required long Round { get; init; }

    /// <summary>Version of the global model the round starts from.</summary>
    public required long ModelVersion { get; init; }

    /// <summary>Architecture of the model, e.g. <c>784-200-200-10</c>; vehicles pin it.</summary>
    public required string ModelSpec { get; init; }

    /// <summary>SHA-256 (hex) of the model's <see cref="Checkpoint"/> bytes.</summary>
    public required string ModelSha256 { get; init; }

    /// <summary>Length of the model's checkpoint bytes.</summary>
    public required long ModelBytes { get; init; }

    /// <summary>Vehicles selected for this round.</summary>
    public required IReadOnlyList<string> Cohort { get; init; }

    /// <summary>Local epochs E.</summary>
    public int LocalEpochs { get; init; } = 1;

    /// <summary>Local batch size B.</summary>
    public int Batch { get; init; } = 10;

    /// <summary>Client learning rate.</summary>
    public float LearningRate { get; init; } = 0.05f;

    /// <summary>Client momentum.</summary>
    public float Momentum { get; init; }

    /// <summary>FedProx μ (0 = plain FedAvg local objective).</summary>
    public float ProximalMu { get; init; }

    /// <summary>Codec, clipping, DP noise and secure aggregation of the round's updates; null = plain float32 updates without DP.</summary>
    public RoundProtection? Protection { get; init; }

    /// <summary>Updates must arrive before this instant (Unix milliseconds); it is also the updates' message expiry.</summary>
    public required long DeadlineUnixMs { get; init; }

    /// <summary>When the plan was issued (Unix milliseconds).</summary>
    public required long IssuedUnixMs { get; init; }

    /// <summary>Throws <see cref="WireFormatException"/> when a field is out of range.</summary>
    public void Validate()
    {
        if (!VehicleId.IsValid(Fleet)) throw new WireFormatException($"Round plan fleet '{Fleet}' is invalid.");
        if (Round < 1 || ModelVersion < 0) throw new WireFormatException($"Round plan round {Round} / model version {ModelVersion} out of range.");
        try
        {
            Core.Model.ModelSpec.Parse(ModelSpec);
        }
        catch (FormatException e)
        {
            throw new WireFormatException($"Round plan model spec '{ModelSpec}' is invalid: {e.Message}");
        }
        if (ModelSha256 is not { Length: 64 } || !ModelSha256.All(char.IsAsciiHexDigit)) throw new WireFormatException("Round plan model hash is not 64 hex digits.");
        if (ModelBytes < 1 || ModelBytes > int.MaxValue) throw new WireFormatException($"Round plan model size {ModelBytes} out of range.");
        if (Cohort is null || Cohort.Count is 0 or > 1_000_000 || Cohort.Any(v => !VehicleId.IsValid(v))) throw new WireFormatException("Round plan cohort is empty, too large or holds an invalid vehicle id.");
        if (LocalEpochs is < 1 or > 1000 || Batch is < 1 or > 4096) throw new WireFormatException("Round plan epochs or batch out of range.");
        if (!(LearningRate > 0) || !float.IsFinite(LearningRate) || !(Momentum >= 0 && Momentum < 1) || !(ProximalMu >= 0) || !float.IsFinite(ProximalMu))
            throw new WireFormatException("Round plan learning rate, momentum or μ out of range.");
        Protection?.Validate(Cohort.Count);
    }
}

/// <summary>
/// Signs and verifies round plans. Signed layout: magic <c>FLRP</c>, version 1, 3 reserved bytes, u32 JSON length,
/// UTF-8 JSON of the plan, u16 signature length, ECDSA P-256 / SHA-256 signature (IEEE P1363) over every byte before it.
/// </summary>
public static class RoundPlanCodec
{
    /// <summary>Current format version (2 added <see cref="RoundPlan.Protection"/>: a version-1 reader would ignore it and send unprotected updates, so it must refuse the plan instead).</summary>
    public const byte FormatVersion = 2;

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
        body[4] = FormatVersion;
        BinaryPrimitives.WriteUInt32LittleEndian(body.AsSpan(8), (uint)json.Length);
        json.CopyTo(body, 12);
        var signature = key.SignData(body, HashAlgorithmName.SHA256, DSASignatureFormat.IeeeP1363FixedFieldConcatenation);
        var bytes = new byte[signedLength + 2 + signature.Length];
        body.CopyTo(bytes, 0);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(signedLength), (ushort)signature.Length);
        signature.CopyTo(bytes, signedLength + 2);
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
        if (bytes[4] != FormatVersion) throw new WireFormatException($"Round plan format version {bytes[4]} is not supported (this build reads version {FormatVersion}).", RejectReasons.Version);
        uint jsonLength = BinaryPrimitives.ReadUInt32LittleEndian(bytes[8..]);
        if (jsonLength > (uint)(bytes.Length - 14)) throw new WireFormatException("Round plan truncated inside its JSON.", RejectReasons.Truncated);
        int signedLength = 12 + (int)jsonLength;
        int sigLength = BinaryPrimitives.ReadUInt16LittleEndian(bytes[signedLength..]);
        if (bytes.Length != signedLength + 2 + sigLength) throw new WireFormatException("Round plan signature length does not match the message length.");
        if (!publicKey.VerifyData(bytes[..signedLength], bytes[(signedLength + 2)..], HashAlgorithmName.SHA256, DSASignatureFormat.IeeeP1363FixedFieldConcatenation))
            throw new WireFormatException("Round plan signature is not valid for the pinned aggregator key.", RejectReasons.Signature);
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
        if (plan.Fleet != fleet) throw new WireFormatException($"Round plan is for fleet '{plan.Fleet}', not '{fleet}'.");
        return plan;
    }

    /// <summary>Hex SHA-256 of model checkpoint bytes, as the plan carries it.</summary>
    public static string HashModel(ReadOnlySpan<byte> checkpointBytes) => Convert.ToHexStringLower(SHA256.HashData(checkpointBytes));
}
