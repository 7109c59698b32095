namespace FleetLearn.Simulation;

/// <summary>What one simulated round did and how the global model scored after it.</summary>
public sealed record RoundReport
{
    public int Round { get; init; }

    /// <summary>Test accuracy of the global model after this round (NaN when not evaluated this round).</summary>
    public double TestAccuracy { get; init; }

    /// <summary>Mean test cross-entropy after this round (NaN when not evaluated).</summary>
    public double TestLoss { get; init; }

    /// <summary>Mean local training loss of the accepted vehicles' last epoch.</summary>
    public double TrainLoss { get; init; }

    /// <summary>Vehicles eligible this round.</summary>
    public int Available { get; init; }

    /// <summary>Vehicles asked to train.</summary>
    public int Selected { get; init; }

    /// <summary>Updates aggregated.</summary>
    public int Participants { get; init; }

    /// <summary>Selected vehicles that vanished before uploading.</summary>
    public int Dropped { get; init; }

    /// <summary>Selected vehicles that missed the deadline.</summary>
    public int Stragglers { get; init; }

    /// <summary>False when fewer than the minimum participants reported: the model did not change.</summary>
    public bool Applied { get; init; }

    /// <summary>Exact bytes the vehicles uploaded this round: the sum of the encoded envelopes, or under secure aggregation of every protocol message sent (dropped vehicles' keys and shares included).</summary>
    public long BytesUp { get; init; }

    /// <summary>Exact mean bytes one accepted vehicle uploaded: its update envelope, or under secure aggregation every protocol message it sent (keys, shares, masked input, unmask answer). 0 when none was accepted.</summary>
    public long BytesUpPerVehicle { get; init; }

    /// <summary>Why the round was not applied (null when it was).</summary>
    public string? AbortReason { get; init; }

    /// <summary>Coordinates clamped to the quantization range this round, over all accepted vehicles.</summary>
    public long Clamped { get; init; }

    /// <summary>Bytes the selected vehicles downloaded this round.</summary>
    public long BytesDown { get; init; }

    /// <summary>
    /// Fleet-level ε (at the run's δ) after this round for the sampled Gaussian mechanism with q = K/N:
    /// the simulator selects uniformly, so amplification by sampling holds here. NaN when DP is off.
    /// </summary>
    public double Epsilon { get; init; } = double.NaN;

    /// <summary>Largest per-vehicle ε in the ledger, which accounts each participation with q = 1 (no amplification). NaN when DP is off.</summary>
    public double MaxVehicleEpsilon { get; init; } = double.NaN;

    /// <summary>
    /// The count of unclipped updates the aggregator learned from the round (adaptive clipping): from the secure sum's bit
    /// coordinate under secure aggregation, else from the updates' headers; null without adaptive clipping.
    /// </summary>
    public int? UnclippedCount { get; init; }

    /// <summary>Clip norm C used this round (NaN when DP is off).</summary>
    public double ClipNorm { get; init; } = double.NaN;

    /// <summary>Eligible vehicles that declined because the round would exceed their privacy budget.</summary>
    public int Declined { get; init; }

    /// <summary>Wall-clock seconds of the round on this machine.</summary>
    public double Seconds { get; init; }

    /// <summary>Round duration on the simulated fleet's clock.</summary>
    public double SimulatedSeconds { get; init; }

    /// <summary>Aggregator shards that owned a part of the round (1: unsharded).</summary>
    public int Shards { get; init; } = 1;

    /// <summary>Shards whose part was lost (died mid-round, or their secure aggregation failed); the next round reassigns their vehicles.</summary>
    public IReadOnlyList<int> LostShards { get; init; } = [];
}
