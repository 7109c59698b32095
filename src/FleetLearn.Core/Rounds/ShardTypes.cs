namespace FleetLearn.Core.Rounds;

/// <summary>A <see cref="RoundCoordinator"/> that aggregates one shard's part of the cohort and hands a partial sum on instead of releasing.</summary>
/// <param name="Index">The shard's number (what the plan tells each of its vehicles).</param>
public sealed record ShardRole(int Index)
{
    /// <summary>
    /// Each part member's position in the whole cohort (the signed plan's <see cref="PlanShard.Members"/>), or null when the
    /// part's vehicles number their updates by their position in the part (the in-process simulator). A vehicle over MQTT
    /// names its position in the plan's cohort in its plaintext update's header; the shard checks that claim against it.
    /// </summary>
    public IReadOnlyList<int>? CohortPositions { get; init; }
}

/// <summary>
/// What a shard hands the combiner when its part of a round closes (Bonawitz et al. 2019, §4: aggregators own parts of the
/// cohort, the coordinator combines): a closed set — <see cref="SecurePartialSum"/>, <see cref="PlainPartialSum"/> or
/// <see cref="FailedPartialSum"/>. No noise, no strategy, no charge: those are the combiner's (one release per round).
/// </summary>
public abstract record PartialSum
{
    private protected PartialSum() { }

    /// <summary>The round.</summary>
    public required long Round { get; init; }

    /// <summary>The shard that aggregated it.</summary>
    public required int Shard { get; init; }

    /// <summary>Vehicles whose updates are in the partial sum (plaintext contributors, or SecAgg survivors).</summary>
    public required IReadOnlyList<string> Contributors { get; init; }

    /// <summary>Members of the shard's part that never answered.</summary>
    public required IReadOnlyList<string> Silent { get; init; }

    /// <summary>Plaintext contributors whose update was above the clip norm (a secure sum carries its count in the sum).</summary>
    public int UnclippedCount { get; init; }

    /// <summary>Sum of the training losses plaintext contributors reported.</summary>
    public double LossSum { get; init; }

    /// <summary>How many losses <see cref="LossSum"/> adds.</summary>
    public int LossCount { get; init; }
}

/// <summary>
/// The ring sum Σ x_u mod 2^m of the shard's survivors, still encoded: the modulus is sized for the whole cohort, so the
/// shards' sums add mod 2^m to the sum one coordinator over the whole cohort would have unmasked.
/// </summary>
public sealed record SecurePartialSum : PartialSum
{
    /// <summary>Σ x_u mod 2^m, coordinate-wise (SecAgg dimension: data, weight, unclipped bit).</summary>
    public required ReadOnlyMemory<uint> Sum { get; init; }
}

/// <summary>The weighted mean of a shard's plaintext updates and its weight (mean × weight is the shard's weighted sum).</summary>
public sealed record PlainPartialSum : PartialSum
{
    /// <summary>Σ w_u Δ_u / Σ w_u, or null when nothing was folded.</summary>
    public float[]? Mean { get; init; }

    /// <summary>Σ w_u.</summary>
    public double Weight { get; init; }
}

/// <summary>The shard's part is lost for the round (its secure aggregation aborted); <see cref="Reason"/> says why.</summary>
public sealed record FailedPartialSum : PartialSum
{
    /// <summary>Why the shard has no sum.</summary>
    public required string Reason { get; init; }
}

/// <summary>A shard's part of the round closed: send <see cref="Partial"/> to the coordinator's combiner.</summary>
public sealed record PartialSumEffect(PartialSum Partial) : RoundEffect;

/// <summary>A shard's round closed by handing its partial sum on; whether the round applies is the combiner's outcome.</summary>
public sealed record RoundHandedOn : RoundOutcome
{
    /// <summary>What was handed on.</summary>
    public required PartialSum Partial { get; init; }
}

/// <summary>The combiner waits for the shards' partial sums.</summary>
/// <param name="Received">Partial sums received (failed ones included).</param>
/// <param name="Expected">Shards that own a part of this round.</param>
public sealed record CombiningShards(int Received, int Expected) : RoundPhase;
