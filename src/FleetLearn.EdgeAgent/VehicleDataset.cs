using FleetLearn.Core.Federated;
using FleetLearn.Core.Random;
using FleetLearn.Core.Training;

namespace FleetLearn.EdgeAgent;

/// <summary>
/// The vehicle's local data (features of its own video, never sent): <paramref name="Rows"/> train,
/// <paramref name="HoldoutRows"/> (optional) are kept back to evaluate each new global model on the vehicle.
/// </summary>
public sealed record VehicleDataset(LabeledData Data, int[] Rows, int[]? HoldoutRows = null)
{
    /// <summary>
    /// Vehicle <paramref name="index"/>'s rows of <see cref="Partitioner.Split"/> on the labels of <paramref name="data"/>, with a
    /// seeded random <paramref name="holdoutFraction"/> of them kept back (random, not the last rows: a shards part is sorted by
    /// label). The stand-in for a vehicle's own feature store (<c>fleetlearn agent</c> and <c>fleetlearn-agent</c>).
    /// </summary>
    public static VehicleDataset FromPartition(LabeledData data, int vehicles, int index, PartitionScheme scheme, ulong seed, double holdoutFraction)
    {
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(scheme);
        ArgumentOutOfRangeException.ThrowIfLessThan(vehicles, 1);
        if (index < 0 || index >= vehicles) throw new ArgumentOutOfRangeException(nameof(index), index, $"Expected 0..{vehicles - 1}.");
        if (!(holdoutFraction >= 0 && holdoutFraction < 1)) throw new ArgumentOutOfRangeException(nameof(holdoutFraction), holdoutFraction, "Expected a fraction in [0, 1).");
        var rows = Partitioner.Split(data.Labels, vehicles, scheme, seed)[index];
        var shuffled = rows.ToArray();
        DeterministicRandom.Derive(seed, purpose: 0x401D, index: (ulong)index).Shuffle(shuffled.AsSpan());
        int held = (int)Math.Round(holdoutFraction * rows.Length, MidpointRounding.AwayFromZero);
        if (rows.Length - held < 1)
            throw new ArgumentException($"Vehicle {index} of {vehicles} ({scheme}) holds {rows.Length} rows: none left to train on after the hold-out.");
        var trainRows = shuffled[held..];
        var holdoutRows = shuffled[..held];
        Array.Sort(trainRows);
        Array.Sort(holdoutRows);
        return new VehicleDataset(data, trainRows, held > 0 ? holdoutRows : null);
    }
}
