using FleetLearn.Core.Compression;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Core.Rounds;

/// <summary>
/// How a round's updates are protected on their way out of the vehicle (DESIGN.md, "the update pipeline"): codec,
/// clip norm, DP noise, secure aggregation. It travels inside the signed <see cref="RoundPlan"/>, so the aggregator and
/// every vehicle build the very same <see cref="UpdatePipeline"/> from it (<see cref="CreatePipeline"/>), with the same
/// public per-round randomness (<see cref="CodecSeed"/>: rotation signs and subsample; <see cref="SecAggRoundSeed"/>:
/// the SecAgg+ graph).
/// </summary>
public sealed record RoundProtection
{
    /// <summary>Codec text (<c>none</c>, <c>q8</c>, <c>rot+q8</c>, <c>sub0.25+rot+q8</c>, …; docs/compression.md).</summary>
    public string Codec { get; init; } = "none";

    /// <summary><c>off</c>, <c>full</c> (SecAgg, Bonawitz et al. 2017) or <c>plus</c> (SecAgg+, Bell et al. 2020).</summary>
    public string SecureAggregation { get; init; } = "off";

    /// <summary>k of SecAgg+ (null: complete graph).</summary>
    public int? Neighbors { get; init; }

    /// <summary>Modulus bits m of the secure sum (null: the smallest that holds the cohort's sum).</summary>
    public int? ModulusBits { get; init; }

    /// <summary>C: the L2 clip norm (DP) or norm bound (secure aggregation, shared-range codecs); null = no clipping.</summary>
    public double? ClipNorm { get; init; }

    /// <summary><c>central</c> (the aggregator noises the sum), <c>distributed</c> (each vehicle adds its share) or null (no DP).</summary>
    public string? Noise { get; init; }

    /// <summary>σ: the released sum carries N(0, σ²C²) per coordinate; what each participation is accounted as.</summary>
    public double NoiseMultiplier { get; init; }

    /// <summary>Standard deviation of the Gaussian noise each vehicle adds (distributed DP: σC/√m_min; else 0).</summary>
    public double VehicleNoiseStdDev { get; init; }

    /// <summary>Fewest survivors whose noise shares are enough (distributed DP): with fewer, the sum is never released.</summary>
    public int MinNoiseShares { get; init; } = 1;

    /// <summary>δ of the reported (ε, δ).</summary>
    public double Delta { get; init; } = 1e-5;

    /// <summary>Public bound W on an aggregation weight (weights travel as w/W under secure aggregation).</summary>
    public double MaxWeight { get; init; } = 1;

    /// <summary>Every update weighs 1 (under DP, so that the sum's sensitivity is C); else its sample count, capped.</summary>
    public bool UniformWeights { get; init; }

    /// <summary>Cap on a sample-count weight; null = <see cref="MaxWeight"/>.</summary>
    public double? WeightCap { get; init; }

    /// <summary>Public seed of this round's rotation signs and shared subsample.</summary>
    public ulong CodecSeed { get; init; }

    /// <summary>32 public random bytes (base64) that fix the SecAgg+ graph; null without secure aggregation.</summary>
    public string? SecAggRoundSeed { get; init; }

    /// <summary>How long the aggregator collects each secure-aggregation phase.</summary>
    public long PhaseTimeoutMs { get; init; } = 60_000;

    /// <summary>Device public keys (base64 SubjectPublicKeyInfo, ECDSA P-256) of the cohort, in cohort order; they check round-key signatures.</summary>
    public IReadOnlyList<string>? DeviceKeys { get; init; }

    /// <summary>
    /// The aggregator may be malicious (issue 13 item 5; SecAgg/SecAgg+ only): the round runs Bonawitz et al.'s
    /// ConsistencyCheck, every server message is signed over the session, and vehicles need certified device keys.
    /// </summary>
    public bool MaliciousAggregator { get; init; }

    /// <summary>c: colluding vehicles tolerated among one vehicle's share holders when <see cref="MaliciousAggregator"/>; t must exceed (h + c)/2.</summary>
    public int ColludingHolders { get; init; }

    /// <summary>
    /// Device certificates (base64 DER X.509, issued by the fleet's device CA, CN = vehicle id) of the cohort, in cohort
    /// order. A vehicle configured with the device CA checks every key against them and accepts no other (issue 13 item 5).
    /// </summary>
    public IReadOnlyList<string>? DeviceCertificates { get; init; }

    /// <summary>
    /// The cohort's device keys as this party will check round-key signatures: with <paramref name="deviceCa"/>, only keys
    /// of certificates it issued to the vehicle of each slot (the plan must carry them); without, the plan's keys as listed
    /// (honest-but-curious aggregator). Throws <see cref="WireFormatException"/> when the CA is required and the plan has no certificates.
    /// </summary>
    /// <param name="cohort">The plan's cohort, or with <paramref name="shard"/> the shard's part (its ids in SecAgg index order).</param>
    /// <param name="deviceCa">The fleet's device CA, or null.</param>
    /// <param name="shard">A sharded round: the registry holds the keys of this shard's members only, indexed by their place in the part.</param>
    public IDeviceKeyRegistry CreateDeviceKeyRegistry(IReadOnlyList<string> cohort, DeviceCertificateAuthority? deviceCa, PlanShard? shard = null)
    {
        ArgumentNullException.ThrowIfNull(cohort);
        if (shard is not null && shard.Members.Count != cohort.Count)
            throw new WireFormatException($"Shard {shard.Index} has {shard.Members.Count} members, not the {cohort.Count} ids given.", RejectReasons.Malformed);
        int listed = shard is null ? cohort.Count : (DeviceKeys?.Count ?? 0);
        int Slot(int i) => shard is null ? i : shard.Members[i];
        if (deviceCa is not null)
        {
            if (DeviceCertificates is null || DeviceCertificates.Count != listed || shard is not null && shard.Members[^1] >= listed)
                throw new WireFormatException($"Round plan carries {DeviceCertificates?.Count ?? 0} device certificates for a cohort of {cohort.Count}; this party accepts only keys certified by the fleet's device CA.", RejectReasons.Signature);
            return new CertifiedDeviceKeyRegistry(deviceCa, cohort, [.. Enumerable.Range(0, cohort.Count).Select(i => Decode(DeviceCertificates[Slot(i)]))]);
        }
        if (DeviceKeys is null || DeviceKeys.Count != listed || shard is not null && shard.Members[^1] >= listed)
            throw new WireFormatException($"Round plan carries {DeviceKeys?.Count ?? 0} device keys for a cohort of {cohort.Count}.", RejectReasons.Malformed);
        var registry = new DeviceKeyRegistry();
        for (int i = 0; i < cohort.Count; i++) registry.AddDeferred(i, Decode(DeviceKeys[Slot(i)])); // checked when looked up: a vehicle needs only its neighbours'
        return registry;

        static byte[] Decode(string base64)
        {
            try
            {
                return Convert.FromBase64String(base64);
            }
            catch (FormatException)
            {
                throw new WireFormatException("Round plan device key or certificate is not base64.", RejectReasons.Malformed);
            }
        }
    }

    /// <summary>The secure-aggregation mode.</summary>
    public SecureAggregationMode SecureMode => SecureAggregation switch
    {
        "off" => SecureAggregationMode.Off,
        "full" => SecureAggregationMode.Full,
        "plus" => SecureAggregationMode.Plus,
        _ => throw new WireFormatException($"Round plan secure aggregation '{SecureAggregation}' is not off, full or plus.", RejectReasons.Malformed),
    };

    /// <summary>The DP noise mode, null when DP is off.</summary>
    public NoiseMode? NoiseMode => Noise switch
    {
        null => null,
        "central" => Core.Privacy.NoiseMode.Central,
        "distributed" => Core.Privacy.NoiseMode.Distributed,
        _ => throw new WireFormatException($"Round plan noise '{Noise}' is not central or distributed.", RejectReasons.Malformed),
    };

    /// <summary>Text of a mode for the plan.</summary>
    public static string Text(SecureAggregationMode mode) => mode switch
    {
        SecureAggregationMode.Full => "full",
        SecureAggregationMode.Plus => "plus",
        _ => "off",
    };

    /// <summary>Text of a noise mode for the plan.</summary>
    public static string? Text(NoiseMode? mode) => mode switch
    {
        Core.Privacy.NoiseMode.Central => "central",
        Core.Privacy.NoiseMode.Distributed => "distributed",
        _ => null,
    };

    /// <summary>The aggregation weight of a vehicle with <paramref name="samples"/> local samples.</summary>
    public double WeightFor(int samples) => UniformWeights ? 1 : Math.Min(Math.Max(1, samples), WeightCap ?? MaxWeight);

    /// <summary>The pipeline of a round whose cohort has <paramref name="cohortSize"/> vehicles; throws <see cref="WireFormatException"/> on a configuration no pipeline accepts.</summary>
    public UpdatePipeline CreatePipeline(int dimension, int cohortSize)
    {
        try
        {
            return new UpdatePipeline(new UpdatePipelineOptions
            {
                Codec = CodecSpec.Parse(Codec),
                Dimension = dimension,
                SecureAggregation = SecureMode,
                Neighbors = Neighbors,
                CohortSize = Math.Max(1, cohortSize),
                ModulusBits = ModulusBits,
                ClipNorm = ClipNorm,
                Noise = NoiseMode,
                MaxWeight = MaxWeight,
                // WeightFor never gives less than 1 sample, so 1 is the public floor DecodeSum checks sample weights against.
                UniformWeights = UniformWeights,
                MinWeight = UniformWeights ? 0 : Math.Min(1, MaxWeight),
            });
        }
        catch (Exception e) when (e is CodecConfigurationException or FormatException or ArgumentException)
        {
            throw new WireFormatException($"Round plan protection is not a usable pipeline: {e.Message}", RejectReasons.Malformed, e);
        }
    }

    /// <summary>The round's encoder/decoder: the plan's codec seed, clip norm and per-vehicle noise.</summary>
    public UpdatePipelineRound ForRound(UpdatePipeline pipeline, long round)
    {
        ArgumentNullException.ThrowIfNull(pipeline);
        // The noise is recomputed from (σ, C, m_min), never taken from the plan's own field (Validate checks they agree).
        return pipeline.ForRound((ulong)round, CodecSeed, ClipNorm, VehiclePlanPolicy.ExpectedVehicleNoiseStdDev(NoiseMode, NoiseMultiplier, ClipNorm, MinNoiseShares));
    }

    /// <summary>What a participation in round <paramref name="round"/> is charged at, on both sides: σ, or under the distributed discrete Gaussian the σ equivalent of the noise actually added (<see cref="RoundRules.ChargeFor"/>); null without DP.</summary>
    public PrivacyCharge? Charge(UpdatePipeline pipeline, long round) => NoiseMode is null ? null : ChargeOf(ForRound(pipeline, round), MinNoiseShares, NoiseMultiplier);

    /// <summary>What a DP participation encoded with <paramref name="codec"/> is charged at (<see cref="Charge"/>; the simulators' model of a vehicle's ledger calls it too).</summary>
    public static PrivacyCharge ChargeOf(UpdatePipelineRound codec, int minNoiseShares, double noiseMultiplier) =>
        PrivacyCharge.Participation(RoundRules.ChargeFor(codec, minNoiseShares, noiseMultiplier, noiseMultiplier) ?? noiseMultiplier);

    /// <summary>The secure-aggregation parameters of the round (cohort indices are positions in the plan's cohort).</summary>
    /// <param name="pipeline">The round's pipeline (<see cref="CreatePipeline"/>).</param>
    /// <param name="round">The plan's round.</param>
    /// <param name="cohortSize">The plan's cohort size.</param>
    /// <param name="sessionId">SHA-256 of the fleet id and the signed plan (<see cref="SecAggSession.Id"/>): required when <see cref="MaliciousAggregator"/>.</param>
    /// <param name="shard">A sharded round: this shard's own session (its seed and k; <paramref name="cohortSize"/> is its part's size). The modulus stays the whole cohort's, from <paramref name="pipeline"/>.</param>
    public SecAggParameters CreateSecAggParameters(UpdatePipeline pipeline, long round, int cohortSize, byte[]? sessionId = null, PlanShard? shard = null)
    {
        ArgumentNullException.ThrowIfNull(pipeline);
        var seed = (shard is null ? RoundSeedBytes() : SeedBytes(shard.SecAggRoundSeed)) ?? throw new WireFormatException("Round plan has secure aggregation but no round seed.", RejectReasons.Malformed);
        if (shard is not null && shard.Members.Count != cohortSize)
            throw new WireFormatException($"Shard {shard.Index} has {shard.Members.Count} members, not {cohortSize}.", RejectReasons.Malformed);
        try
        {
            int minShares = NoiseMode == Core.Privacy.NoiseMode.Distributed ? MinNoiseShares : 1;
            var parameters = pipeline.CreateSecAggParameters((ulong)round, cohortSize, seed, TimeSpan.FromMilliseconds(PhaseTimeoutMs), minShares, shard is null ? null : shard.Neighbors ?? cohortSize - 1);
            if (!MaliciousAggregator) return parameters;
            if (sessionId is null) throw new WireFormatException("Round plan runs against a malicious aggregator, but no session id (fleet and signed plan) was given.", RejectReasons.Malformed);
            return parameters.AgainstMaliciousServer(sessionId, ColludingHolders);
        }
        catch (SecAggConfigurationException e)
        {
            throw new WireFormatException($"Round plan secure aggregation is unusable: {e.Message}", RejectReasons.Malformed, e);
        }
        catch (CodecConfigurationException e)
        {
            throw new WireFormatException($"Round plan secure aggregation is unusable: {e.Message}", RejectReasons.Malformed, e);
        }
    }

    private byte[]? RoundSeedBytes() => SeedBytes(SecAggRoundSeed);

    private static byte[]? SeedBytes(string? base64)
    {
        if (base64 is null) return null;
        var bytes = new byte[33];
        return Convert.TryFromBase64String(base64, bytes, out int n) && n == 32 ? bytes[..32] : throw new WireFormatException("Round plan SecAgg seed is not 32 base64 bytes.", RejectReasons.Malformed);
    }

    /// <summary>The plan's privacy terms as the vehicle checks them (<see cref="VehiclePlanPolicy"/>).</summary>
    /// <param name="cohortSize">Vehicles in the secure sum: the cohort, or in a sharded round the vehicle's part (what its shard unmasks).</param>
    /// <param name="neighbors">k of that sum's graph; null: the plan's <see cref="Neighbors"/>.</param>
    public PlanPrivacyTerms Terms(int cohortSize, int? neighbors = null)
    {
        var mode = SecureMode;
        int threshold = 0;
        neighbors ??= Neighbors;
        if (mode != SecureAggregationMode.Off)
        {
            // The default threshold of SecAggParameters: a strict majority of each vehicle's share holders.
            bool complete = mode == SecureAggregationMode.Full || neighbors is null || neighbors.Value >= cohortSize - 1;
            int holders = complete ? cohortSize : neighbors!.Value + 1;
            threshold = holders / 2 + 1;
        }
        return new PlanPrivacyTerms(NoiseMode, NoiseMultiplier, ClipNorm, VehicleNoiseStdDev, MinNoiseShares, cohortSize, mode != SecureAggregationMode.Off, threshold);
    }

    /// <summary>Why a vehicle with <paramref name="floors"/> refuses this plan for a cohort of <paramref name="cohortSize"/>, or null.</summary>
    public string? PrivacyRefusal(VehiclePrivacyFloors floors, int cohortSize, int? neighbors = null) => VehiclePlanPolicy.Refusal(Terms(cohortSize, neighbors), floors);

    /// <summary>Throws <see cref="WireFormatException"/> when a field is out of range for a cohort of <paramref name="cohortSize"/>.</summary>
    public void Validate(int cohortSize)
    {
        var mode = SecureMode;
        _ = NoiseMode;
        if (ClipNorm is { } c && (!(c > 0) || double.IsInfinity(c))) throw new WireFormatException($"Round plan clip norm {c} is not a positive finite number.", RejectReasons.Malformed);
        if (!(NoiseMultiplier >= 0) || double.IsInfinity(NoiseMultiplier) || !(VehicleNoiseStdDev >= 0) || double.IsInfinity(VehicleNoiseStdDev))
            throw new WireFormatException("Round plan noise settings are out of range.", RejectReasons.Malformed);
        if (Noise is not null && (NoiseMultiplier <= 0 || ClipNorm is null)) throw new WireFormatException("Round plan asks for DP noise without σ > 0 and a clip norm.", RejectReasons.Malformed);
        if (!(Delta > 0 && Delta < 1)) throw new WireFormatException($"Round plan δ = {Delta} is outside (0, 1).", RejectReasons.Malformed);
        if (!(MaxWeight > 0) || double.IsInfinity(MaxWeight) || WeightCap is { } cap && !(cap > 0)) throw new WireFormatException("Round plan weight bound is out of range.", RejectReasons.Malformed);
        if (MinNoiseShares < 1 || MinNoiseShares > cohortSize) throw new WireFormatException($"Round plan minimum noise shares {MinNoiseShares} is outside 1..{cohortSize}.", RejectReasons.Malformed);
        // A plan cannot account σ while telling vehicles to add less (issue 13 item 3): the share follows from (σ, C, m_min).
        if (VehiclePlanPolicy.Refusal(Terms(cohortSize), new VehiclePrivacyFloors()) is { } inconsistent)
            throw new WireFormatException($"Round plan is inconsistent: {inconsistent}.", RejectReasons.Malformed);
        if (PhaseTimeoutMs is < 100 or > 86_400_000) throw new WireFormatException($"Round plan phase timeout {PhaseTimeoutMs} ms is out of range.", RejectReasons.Malformed);
        if (mode != SecureAggregationMode.Off)
        {
            if (DeviceKeys is null || DeviceKeys.Count != cohortSize)
                throw new WireFormatException($"Round plan has secure aggregation but {DeviceKeys?.Count ?? 0} device keys for a cohort of {cohortSize}.", RejectReasons.Malformed);
            if (MaliciousAggregator && DeviceCertificates is null)
                throw new WireFormatException("Round plan runs against a malicious aggregator but carries no device certificates.", RejectReasons.Malformed);
            if (DeviceCertificates is not null && DeviceCertificates.Count != cohortSize)
                throw new WireFormatException($"Round plan has {DeviceCertificates.Count} device certificates for a cohort of {cohortSize}.", RejectReasons.Malformed);
            _ = RoundSeedBytes() ?? throw new WireFormatException("Round plan has secure aggregation but no round seed.", RejectReasons.Malformed);
        }
    }
}
