using System.ComponentModel.DataAnnotations;

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

    /// <summary>How often unacknowledged updates are resent and an idle vehicle checks in again.</summary>
    public TimeSpan ResendInterval { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>Seed of the local data order (training is reproducible per round).</summary>
    public ulong Seed { get; set; } = 1;

    /// <summary>Largest model accepted, in bytes (bad-input limit).</summary>
    [Range(1024, int.MaxValue)] public int MaxModelBytes { get; set; } = 256 << 20;

    /// <summary>
    /// ε of the Laplace noise on the hold-out accuracy the vehicle reports (one hold-out example changes the
    /// accuracy by at most 1/n); null = report it without noise. Use it whenever training runs with DP.
    /// </summary>
    public double? EvaluationEpsilon { get; set; }

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (!Transport.Mqtt.VehicleId.IsValid(VehicleId)) yield return new ValidationResult($"Agent:VehicleId '{VehicleId}' is not a valid vehicle id.");
        if (ResendInterval <= TimeSpan.Zero) yield return new ValidationResult("Agent:ResendInterval must be positive.");
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
