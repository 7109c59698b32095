using FleetLearn.Core.Model;

namespace FleetLearn.Core.Rounds;

/// <summary>
/// What the aggregator announces for one round: the global model (version, architecture, SHA-256 of its checkpoint
/// bytes — the model's authenticity follows from the plan's signature), the cohort, the local hyper-parameters and
/// the phase deadline. Published retained on <c>round/current</c>, signed with ECDSA P-256.
/// </summary>
public sealed record RoundPlan
{
    /// <summary>Fleet the plan is for (a plan replayed into another fleet is rejected).</summary>
    public required string Fleet { get; init; }

    /// <summary>Round number, from 1; increasing across epochs too (a new epoch continues past every round the fleet saw).</summary>
    public required long Round { get; init; }

    /// <summary>The fleet epoch (0 to 65535): raised when the aggregator finds its database older than the fleet (a restored backup).</summary>
    public long Epoch { get; init; }

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

    /// <summary>
    /// Sharded rounds: which aggregator shard owns which cohort positions, each with its own SecAgg seed and k (null: one
    /// aggregator). A vehicle runs its shard's secure sum, never the whole cohort's (<see cref="PlanShards"/>).
    /// </summary>
    public IReadOnlyList<PlanShard>? Shards { get; init; }

    /// <summary>Updates must arrive before this instant (Unix milliseconds); it is also the updates' message expiry.</summary>
    public required long DeadlineUnixMs { get; init; }

    /// <summary>When the plan was issued (Unix milliseconds).</summary>
    public required long IssuedUnixMs { get; init; }

    /// <summary>Throws <see cref="WireFormatException"/> when a field is out of range.</summary>
    public void Validate()
    {
        if (!VehicleId.IsValid(Fleet)) throw new WireFormatException($"Round plan fleet '{Fleet}' is invalid.");
        if (Epoch is < 0 or > ushort.MaxValue) throw new WireFormatException($"Round plan epoch {Epoch} out of range.");
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
        PlanShards.Validate(this);
    }
}
