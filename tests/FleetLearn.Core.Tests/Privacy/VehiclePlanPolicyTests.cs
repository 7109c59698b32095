using FleetLearn.Core.Privacy;

namespace FleetLearn.Core.Tests.Privacy;

public sealed class VehiclePlanPolicyTests
{
    private static PlanPrivacyTerms Distributed(double sigma = 1, double clip = 1, int minShares = 9, int cohort = 10, int t = 6, double? share = null) =>
        new(NoiseMode.Distributed, sigma, clip, share ?? sigma * clip / Math.Sqrt(minShares), minShares, cohort, true, t);

    [Fact]
    public void Refusal_HonestPlanNoFloors_Accepted() => Assert.Null(VehiclePlanPolicy.Refusal(Distributed(), new VehiclePrivacyFloors()));

    [Theory]
    [InlineData(0.0)]
    [InlineData(0.1)]
    [InlineData(1.0)]
    public void Refusal_NoiseShareDisagreesWithSigma_Refused(double share)
        => Assert.Contains("disagrees with σ·C/√m_min", VehiclePlanPolicy.Refusal(Distributed(share: share), new VehiclePrivacyFloors()), StringComparison.Ordinal);

    [Fact]
    public void Refusal_CentralPlanWithVehicleNoise_Refused()
    {
        var plan = new PlanPrivacyTerms(NoiseMode.Central, 1, 1, 0.5, 1, 10, true, 6);
        Assert.NotNull(VehiclePlanPolicy.Refusal(plan, new VehiclePrivacyFloors()));
    }

    [Fact]
    public void Refusal_BelowEachFloor_RefusedWithReason()
    {
        var plan = Distributed();
        Assert.Contains("noise multiplier 1 is below", VehiclePlanPolicy.Refusal(plan, new VehiclePrivacyFloors { MinNoiseMultiplier = 2 }), StringComparison.Ordinal);
        Assert.Contains("cohort of 10 is below", VehiclePlanPolicy.Refusal(plan, new VehiclePrivacyFloors { MinCohort = 20 }), StringComparison.Ordinal);
        Assert.Contains("9 shares, below", VehiclePlanPolicy.Refusal(plan, new VehiclePrivacyFloors { MinCohort = 10 }), StringComparison.Ordinal);
        Assert.Contains("t = 6 is below", VehiclePlanPolicy.Refusal(plan, new VehiclePrivacyFloors { MinSecAggThreshold = 7 }), StringComparison.Ordinal);
        var central = new PlanPrivacyTerms(NoiseMode.Central, 1, 1, 0, 1, 10, false, 0);
        Assert.Contains("requires distributed", VehiclePlanPolicy.Refusal(central, new VehiclePrivacyFloors { RequireDistributedNoise = true }), StringComparison.Ordinal);
        Assert.Contains("no secure aggregation", VehiclePlanPolicy.Refusal(central, new VehiclePrivacyFloors { RequireSecureAggregation = true }), StringComparison.Ordinal);
        var none = new PlanPrivacyTerms(null, 0, null, 0, 1, 10, false, 0);
        Assert.Contains("multiplier 0 is below", VehiclePlanPolicy.Refusal(none, new VehiclePrivacyFloors { MinNoiseMultiplier = 0.5 }), StringComparison.Ordinal);
    }
}
