namespace FleetLearn.Core.Privacy;

/// <summary>The privacy floors a vehicle keeps in its own settings (never in the plan): what it refuses to take part below.</summary>
public sealed record VehiclePrivacyFloors
{
    /// <summary>Smallest noise multiplier σ accepted (0 = plans without DP are accepted).</summary>
    public double MinNoiseMultiplier { get; init; }

    /// <summary>Smallest cohort accepted, and under distributed DP the fewest noise shares the noise may be sized for.</summary>
    public int MinCohort { get; init; } = 1;

    /// <summary>Smallest secure-aggregation threshold t accepted (1 = any).</summary>
    public int MinSecAggThreshold { get; init; } = 1;

    /// <summary>Refuse plans without secure aggregation.</summary>
    public bool RequireSecureAggregation { get; init; }

    /// <summary>Refuse central DP (the aggregator, not the vehicle, adds the noise: a vehicle cannot check it).</summary>
    public bool RequireDistributedNoise { get; init; }
}

/// <summary>What a plan says about one round's privacy, in the terms a vehicle can check.</summary>
/// <param name="Noise">DP noise mode, null without DP.</param>
/// <param name="NoiseMultiplier">σ the round is accounted at.</param>
/// <param name="ClipNorm">C, null without clipping.</param>
/// <param name="VehicleNoiseStdDev">The per-vehicle standard deviation the plan tells vehicles to add.</param>
/// <param name="MinNoiseShares">m_min: the noise shares the distributed noise is sized for.</param>
/// <param name="CohortSize">n: vehicles selected.</param>
/// <param name="SecureAggregation">True under SecAgg or SecAgg+.</param>
/// <param name="Threshold">The secure-aggregation threshold t (0 without secure aggregation).</param>
public readonly record struct PlanPrivacyTerms(NoiseMode? Noise, double NoiseMultiplier, double? ClipNorm, double VehicleNoiseStdDev,
    int MinNoiseShares, int CohortSize, bool SecureAggregation, int Threshold);

/// <summary>
/// The vehicle's check of a round plan (issue 13 item 3): it recomputes its own noise share from (σ, C, m_min) and refuses
/// a plan that disagrees or that falls below the vehicle's floors. Pure: the agent calls it before joining a round.
/// </summary>
public static class VehiclePlanPolicy
{
    /// <summary>σC/√m_min under distributed DP, else 0: the only per-vehicle noise consistent with a plan's σ.</summary>
    public static double ExpectedVehicleNoiseStdDev(NoiseMode? noise, double noiseMultiplier, double? clipNorm, int minNoiseShares) =>
        noise == NoiseMode.Distributed && clipNorm is { } c && minNoiseShares >= 1 ? noiseMultiplier * c / Math.Sqrt(minNoiseShares) : 0;

    /// <summary>Why the vehicle refuses the plan, or null when it may take part.</summary>
    public static string? Refusal(PlanPrivacyTerms plan, VehiclePrivacyFloors floors)
    {
        ArgumentNullException.ThrowIfNull(floors);
        double expected = ExpectedVehicleNoiseStdDev(plan.Noise, plan.NoiseMultiplier, plan.ClipNorm, plan.MinNoiseShares);
        if (!NearlyEqual(plan.VehicleNoiseStdDev, expected))
            return $"the plan's per-vehicle noise {plan.VehicleNoiseStdDev} disagrees with σ·C/√m_min = {plan.NoiseMultiplier}·{plan.ClipNorm?.ToString() ?? "∞"}/√{plan.MinNoiseShares} = {expected} that its σ promises";
        if (floors.MinNoiseMultiplier > 0 && (plan.Noise is null || plan.NoiseMultiplier < floors.MinNoiseMultiplier))
            return $"the plan's DP noise multiplier {(plan.Noise is null ? 0 : plan.NoiseMultiplier)} is below this vehicle's minimum {floors.MinNoiseMultiplier}";
        if (floors.RequireDistributedNoise && plan.Noise != NoiseMode.Distributed)
            return "the plan's DP noise is not added by the vehicles and this vehicle requires distributed noise";
        if (floors.RequireSecureAggregation && !plan.SecureAggregation)
            return "the plan has no secure aggregation and this vehicle requires it";
        if (plan.CohortSize < floors.MinCohort)
            return $"the plan's cohort of {plan.CohortSize} is below this vehicle's minimum {floors.MinCohort}";
        if (plan.Noise == NoiseMode.Distributed && plan.MinNoiseShares < floors.MinCohort)
            return $"the plan sizes the noise for {plan.MinNoiseShares} shares, below this vehicle's minimum cohort {floors.MinCohort}";
        if (plan.SecureAggregation && plan.Threshold < floors.MinSecAggThreshold)
            return $"the plan's secure-aggregation threshold t = {plan.Threshold} is below this vehicle's minimum {floors.MinSecAggThreshold}";
        return null;
    }

    private static bool NearlyEqual(double a, double b) => Math.Abs(a - b) <= 1e-12 * Math.Max(1, Math.Max(Math.Abs(a), Math.Abs(b)));
}
