using System.ComponentModel.DataAnnotations;

using FleetLearn.Core.Rounds;

namespace FleetLearn.EdgeAgent;

/// <summary>Settings of the edge agent (configuration section <c>Agent</c>); MQTT settings live in <c>Mqtt</c>.</summary>
public sealed class EdgeAgentOptions : IValidatableObject
{
    /// <summary>Configuration section name.</summary>
    public const string Section = "Agent";

    /// <summary>This vehicle's id (also its MQTT client id and certificate CN).</summary>
    [Required] public string VehicleId { get; set; } = "";

    /// <summary>The aggregator's plan-signing public key: PEM text or a PEM file path. Plans not signed by it are ignored.</summary>
    [Required] public string AggregatorPublicKey { get; set; } = "";

    /// <summary>The only model architecture this vehicle will run (a malicious model could leak data, REFERENCES.md).</summary>
    [Required] public string PinnedModelSpec { get; set; } = "784-200-200-10";

    /// <summary>LiteDB file of the outbox and agent state.</summary>
    [Required] public string DatabasePath { get; set; } = "agent.db";

    /// <summary>PEM file of this vehicle's ECDSA P-256 device key (created when missing); it signs the vehicle's secure-aggregation round keys. Null = next to <see cref="DatabasePath"/> (<c>{name}-device.pem</c>).</summary>
    public string? DeviceKeyPath { get; set; }

    /// <summary>LiteDB file of the vehicle's own privacy ledger (ε it has spent; persisted, never decreasing). Null = next to <see cref="DatabasePath"/> (<c>{name}-privacy.db</c>).</summary>
    public string? PrivacyLedgerPath { get; set; }

    /// <summary>The device key file actually used.</summary>
    public string EffectiveDeviceKeyPath => DeviceKeyPath ?? Sibling("-device.pem");

    /// <summary>The privacy ledger file actually used.</summary>
    public string EffectivePrivacyLedgerPath => PrivacyLedgerPath ?? Sibling("-privacy.db");

    private string Sibling(string suffix) => Path.Combine(Path.GetDirectoryName(DatabasePath) ?? "", Path.GetFileNameWithoutExtension(DatabasePath) + suffix);

    /// <summary>The vehicle's own ε budget: it declines any round whose charge would exceed it; null = no limit.</summary>
    public double? EpsilonBudget { get; set; }

    /// <summary>δ at which the vehicle's ledger reports ε.</summary>
    public double PrivacyDelta { get; set; } = 1e-5;

    /// <summary>Refuse plans without DP noise of at least this multiplier σ (0 = accept plans without DP).</summary>
    public double MinNoiseMultiplier { get; set; }

    /// <summary>Refuse plans without secure aggregation.</summary>
    public bool RequireSecureAggregation { get; set; }

    /// <summary>Refuse plans whose cohort, or (distributed DP) whose noise-share minimum, is below this many vehicles (1 = any).</summary>
    [Range(1, int.MaxValue)] public int MinCohort { get; set; } = 1;

    /// <summary>Refuse secure-aggregation plans whose threshold t is below this (1 = any).</summary>
    [Range(1, int.MaxValue)] public int MinSecAggThreshold { get; set; } = 1;

    /// <summary>Refuse central DP: only noise the vehicle adds itself can be checked by the vehicle.</summary>
    public bool RequireDistributedNoise { get; set; }

    /// <summary>
    /// Refuse plans that do not run against a malicious aggregator (secure aggregation with device keys certified by the
    /// fleet's device CA, ConsistencyCheck round, signed downlink), plaintext plans included. Needs the vehicle's mTLS
    /// identity (Mqtt:CaFile, CertFile, KeyFile).
    /// </summary>
    public bool RequireMaliciousAggregator { get; set; }

    /// <summary>This vehicle's own privacy floors, for <c>RoundProtection.PrivacyRefusal</c> (they never come from the plan).</summary>
    public Core.Privacy.VehiclePrivacyFloors PrivacyFloors => new()
    {
        MinNoiseMultiplier = MinNoiseMultiplier,
        MinCohort = MinCohort,
        MinSecAggThreshold = MinSecAggThreshold,
        RequireSecureAggregation = RequireSecureAggregation,
        RequireDistributedNoise = RequireDistributedNoise,
    };

    /// <summary>Train only while parked (vehicle state provider).</summary>
    public bool RequireParked { get; set; }

    /// <summary>Train only while charging.</summary>
    public bool RequireCharging { get; set; }

    /// <summary>Train only on an unmetered link.</summary>
    public bool RequireUnmetered { get; set; }

    /// <summary>Check in only after at least this many samples were recorded since the vehicle last trained (0 = always).</summary>
    [Range(0, int.MaxValue)] public int MinNewSamples { get; set; }

    /// <summary>JSON file with the vehicle's state (<c>{"parked":true,"charging":false,"unmetered":true}</c>), written by the vehicle's platform; null = environment variables FLEETLEARN_PARKED / _CHARGING / _UNMETERED, else "all true".</summary>
    public string? VehicleStateFile { get; set; }

    /// <summary>How often unacknowledged updates are resent and an idle vehicle checks in again.</summary>
    public TimeSpan ResendInterval { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>
    /// How often an idle vehicle whose eligibility has not changed repeats its check-in (it expires after twice this); null =
    /// <see cref="ResendInterval"/>. A check-in that changes anything (samples, its last round, a withdrawal) still goes at once.
    /// A large fleet sets it from what its aggregator reads: 10,000 vehicles every 5 s are 2,000 check-ins a second, which
    /// queued ahead of the round's own messages (docs/scale.md).
    /// </summary>
    public TimeSpan? CheckInInterval { get; set; }

    /// <summary>
    /// Subscribe to a model version only when a plan selects the vehicle for it (and drop it at the next plan), instead of to
    /// every model the aggregator publishes. The broker copies each retained model to every subscriber: 800 KB to 10,000
    /// vehicles is 8 GB a round where 1,000 train on it (docs/scale.md). A selected vehicle then fetches it after the plan.
    /// </summary>
    public bool ModelsWhenSelected { get; set; }

    /// <summary><see cref="CheckInInterval"/>, or <see cref="ResendInterval"/> when it is not set.</summary>
    public TimeSpan EffectiveCheckInInterval => CheckInInterval ?? ResendInterval;

    /// <summary>Seed of the local data order (training is reproducible per round).</summary>
    public ulong Seed { get; set; } = 1;

    /// <summary>Largest model accepted, in bytes (bad-input limit).</summary>
    [Range(1024, int.MaxValue)] public int MaxModelBytes { get; set; } = 256 << 20;

    /// <summary>
    /// ε of the discrete Laplace noise on the hold-out accuracy the vehicle reports, at vehicle level (the correct count of n
    /// examples gets noise of scale n/ε) and charged to the vehicle's own ledger before the report leaves
    /// (<see cref="Core.Rounds.EvaluationRelease"/>); null = the exact accuracy, sent only when neither the plan carries DP
    /// noise nor the vehicle has an <see cref="EpsilonBudget"/> (otherwise no report is sent).
    /// </summary>
    public double? EvaluationEpsilon { get; set; }

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (!Core.Rounds.VehicleId.IsValid(VehicleId)) yield return new ValidationResult($"Agent:VehicleId '{VehicleId}' is not a valid vehicle id.");
        if (ResendInterval <= TimeSpan.Zero) yield return new ValidationResult("Agent:ResendInterval must be positive.");
        if (CheckInInterval is { } every && every < ResendInterval) yield return new ValidationResult("Agent:CheckInInterval must be at least Agent:ResendInterval (check-ins go on resend passes).");
        if (EpsilonBudget is { } b && !(b > 0)) yield return new ValidationResult("Agent:EpsilonBudget must be positive.");
        if (!(PrivacyDelta > 0 && PrivacyDelta < 1)) yield return new ValidationResult("Agent:PrivacyDelta must be within (0, 1).");
        if (!(MinNoiseMultiplier >= 0) || double.IsInfinity(MinNoiseMultiplier)) yield return new ValidationResult("Agent:MinNoiseMultiplier must be a finite number ≥ 0.");
        string? specError = null;
        try
        {
            Core.Model.ModelSpec.Parse(PinnedModelSpec);
        }
        catch (FormatException e)
        {
            specError = e.Message;
        }
        if (specError is not null) yield return new ValidationResult($"Agent:PinnedModelSpec: {specError}");
    }
}
