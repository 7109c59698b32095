using FleetLearn.Core.Training;

namespace FleetLearn.EdgeAgent;

/// <summary>The vehicle's local training data: rows of a dataset (features of its own video, never sent).</summary>
public sealed record VehicleDataset(LabeledData Data, int[] Rows);
