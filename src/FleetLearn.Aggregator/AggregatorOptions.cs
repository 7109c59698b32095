using System.ComponentModel.DataAnnotations;

namespace FleetLearn.Aggregator;

/// <summary>Settings of the aggregator (configuration section <c>Aggregator</c>); MQTT settings live in <c>Mqtt</c>.</summary>
public sealed class AggregatorOptions : IValidatableObject
{
    /// <summary>Configuration section name.</summary>
    public const string Section = "Aggregator";

    /// <summary>Model architecture (layer widths).</summary>
    [Required] public string Model { get; set; } = "784-200-200-10";

    /// <summary>Strategy text (<c>fedavg</c>, <c>fedprox:0.01</c>, <c>fedadam</c>, …). Streaming strategies fold updates as they arrive.</summary>
    [Required] public string Strategy { get; set; } = "fedavg";

    /// <summary>Server learning rate; null = the strategy's default.</summary>
    public float? ServerLearningRate { get; set; }

    /// <summary>Rounds to run; 0 = until stopped.</summary>
    [Range(0, int.MaxValue)] public int Rounds { get; set; }

    /// <summary>Vehicles selected per round (K).</summary>
    [Range(1, 1_000_000)] public int CohortSize { get; set; } = 10;

    /// <summary>Fewer accepted updates by the deadline and the round is aborted (model unchanged).</summary>
    [Range(1, 1_000_000)] public int MinParticipants { get; set; } = 1;

    /// <summary>How long vehicles have to send their update (the phase deadline; also the updates' message expiry).</summary>
    public TimeSpan RoundTimeout { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>After this long waiting for <see cref="CohortSize"/> check-ins, a round starts with at least <see cref="MinParticipants"/>.</summary>
    public TimeSpan CohortWait { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>Local epochs E.</summary>
    [Range(1, 1000)] public int LocalEpochs { get; set; } = 1;

    /// <summary>Local batch size B.</summary>
    [Range(1, 4096)] public int Batch { get; set; } = 10;

    /// <summary>Client learning rate.</summary>
    public float LearningRate { get; set; } = 0.05f;

    /// <summary>Seed of the initial model and cohort selection.</summary>
    public ulong Seed { get; set; } = 1;

    /// <summary>LiteDB file of models and round records.</summary>
    [Required] public string DatabasePath { get; set; } = "aggregator.db";

    /// <summary>PEM file of the ECDSA P-256 plan-signing key (created when missing; the public key goes next to it as .pub.pem).</summary>
    [Required] public string SigningKeyPath { get; set; } = "aggregator-signing.pem";

    /// <summary>Largest update envelope accepted (bad-input limit).</summary>
    [Range(1024, int.MaxValue)] public int MaxUpdateBytes { get; set; } = 64 << 20;

    /// <summary>Folder where every published global model is also written as ONNX (<c>model-v{N}.onnx</c>); empty = no export.</summary>
    public string? OnnxFolder { get; set; } = "models-onnx";

    /// <summary>Stop the host after the last round (command-line runs).</summary>
    public bool StopWhenDone { get; set; }

    /// <summary>Port of the HTTP surface (<c>/healthz</c>, <c>/metrics</c>, <c>/api/rounds</c>); 0 (the default) = off.</summary>
    [Range(0, 65535)] public int HttpPort { get; set; }

    /// <summary>Host the HTTP surface listens on: <c>127.0.0.1</c> (default, loopback only), a host name, or <c>+</c> for every interface.</summary>
    [Required] public string HttpHost { get; set; } = "127.0.0.1";

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        var errors = new List<ValidationResult>();
        try
        {
            Core.Model.ModelSpec.Parse(Model);
            Core.Federated.StrategyCatalog.Parse(Strategy, ServerLearningRate);
        }
        catch (FormatException e)
        {
            errors.Add(new ValidationResult(e.Message));
        }
        if (MinParticipants > CohortSize) errors.Add(new ValidationResult("Aggregator:MinParticipants cannot exceed Aggregator:CohortSize."));
        if (RoundTimeout <= TimeSpan.Zero || CohortWait < TimeSpan.Zero) errors.Add(new ValidationResult("Aggregator:RoundTimeout must be positive and CohortWait not negative."));
        if (!(LearningRate > 0) || !float.IsFinite(LearningRate)) errors.Add(new ValidationResult("Aggregator:LearningRate must be positive."));
        return errors;
    }
}
