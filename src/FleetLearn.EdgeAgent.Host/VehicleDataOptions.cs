using System.ComponentModel.DataAnnotations;
using FleetLearn.Core.Federated;

namespace FleetLearn.EdgeAgent.Host;

/// <summary>
/// Where the vehicle's local training rows come from (configuration section <c>VehicleData</c>). Until the reader of a
/// vehicle's own feature store lands, this is the same stand-in as <c>fleetlearn agent</c>: part <see cref="Index"/> of a
/// <see cref="Partition"/> of the Fashion-MNIST training set across <see cref="Vehicles"/> vehicles.
/// </summary>
public sealed class VehicleDataOptions : IValidatableObject
{
    /// <summary>Configuration section name.</summary>
    public const string Section = "VehicleData";

    /// <summary>Fashion-MNIST folder (IDX gzip); null = <c>$FLEETLEARN_DATA</c>, then /usr/share/datasets/fashion-mnist.</summary>
    public string? Folder { get; set; }

    /// <summary>Vehicles the training set is partitioned across. Default 10.</summary>
    [Range(1, 1_000_000)] public int Vehicles { get; set; } = 10;

    /// <summary>This vehicle's part, 0..<see cref="Vehicles"/>−1. Required (per vehicle: agent.env).</summary>
    [Required] public int? Index { get; set; }

    /// <summary><c>iid</c>, <c>shards</c> or <c>dirichlet:α</c>; the same for every vehicle of a fleet. Default iid.</summary>
    [Required] public string Partition { get; set; } = "iid";

    /// <summary>Seed of the partition and of the hold-out choice; the same for every vehicle of a fleet. Default 1.</summary>
    public ulong Seed { get; set; } = 1;

    /// <summary>Fraction of the vehicle's rows kept back to evaluate each global model on the vehicle. Default 0.1.</summary>
    public double HoldoutFraction { get; set; } = 0.1;

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (Index is { } i && (i < 0 || i >= Vehicles))
            yield return new ValidationResult($"VehicleData:Index {i} must be within 0..{Vehicles - 1} (VehicleData:Vehicles {Vehicles}).");
        if (!(HoldoutFraction >= 0 && HoldoutFraction < 1))
            yield return new ValidationResult($"VehicleData:HoldoutFraction {HoldoutFraction} must be a fraction in [0, 1).");
        string? partitionError = null;
        try
        {
            PartitionScheme.Parse(Partition);
        }
        catch (FormatException e)
        {
            partitionError = e.Message;
        }
        if (partitionError is not null) yield return new ValidationResult($"VehicleData:Partition: {partitionError}");
    }
}
