using FleetLearn.Core.Training;

namespace FleetLearn.EdgeAgent;

/// <summary>
/// The vehicle's local data (features of its own video, never sent): <paramref name="Rows"/> train,
/// <paramref name="HoldoutRows"/> (optional) are kept back to evaluate each new global model on the vehicle.
/// </summary>
public sealed record VehicleDataset(LabeledData Data, int[] Rows, int[]? HoldoutRows = null);
