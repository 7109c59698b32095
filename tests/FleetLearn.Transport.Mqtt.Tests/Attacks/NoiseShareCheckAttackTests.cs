using FleetLearn.Core.Rounds;
using FleetLearn.Transport.Mqtt;

namespace FleetLearn.Transport.Mqtt.Tests.Attacks;

/// <summary>Issue 13 item 3: a plan that promises distributed σ = 10 but tells each vehicle to add no noise.</summary>
public sealed class NoiseShareCheckAttackTests
{
    private static RoundProtection Plan(double vehicleNoise) => new()
    {
        Codec = "q8", SecureAggregation = "full", ClipNorm = 1.0, Noise = "distributed", NoiseMultiplier = 10,
        VehicleNoiseStdDev = vehicleNoise, MinNoiseShares = 4, UniformWeights = true,
        SecAggRoundSeed = Convert.ToBase64String(new byte[32]), DeviceKeys = ["a", "b", "c", "d", "e"],
    };

    [Fact]
    public void VehiclesCannotCheckTheirNoise_PlanWithZeroNoiseShare_Rejected()
    {
        var e = Assert.Throws<WireFormatException>(() => Plan(vehicleNoise: 0).Validate(5));
        Assert.Contains("noise", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void VehiclesCannotCheckTheirNoise_PlanWithHonestNoiseShare_Accepted()
        => Plan(vehicleNoise: 10 * 1.0 / Math.Sqrt(4)).Validate(5);

    [Fact]
    public void PrivacyRefusal_VehicleFloorAboveThePlansThreshold_Refused()
    {
        var plan = Plan(vehicleNoise: 5);
        Assert.Null(plan.PrivacyRefusal(new FleetLearn.Core.Privacy.VehiclePrivacyFloors(), 5));
        Assert.Contains("t = 3 is below", plan.PrivacyRefusal(new FleetLearn.Core.Privacy.VehiclePrivacyFloors { MinSecAggThreshold = 4 }, 5), StringComparison.Ordinal);
    }

    [Fact]
    public void ForRound_UsesTheRecomputedShareNotThePlansField()
    {
        var plan = Plan(vehicleNoise: 5);
        var round = plan.ForRound(plan.CreatePipeline(8, 5), 1);
        Assert.Equal(5, round.NoiseStdDev);
    }
}
