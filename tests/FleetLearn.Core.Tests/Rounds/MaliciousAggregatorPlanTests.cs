using FleetLearn.Core.Rounds;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Core.Tests.Rounds;

/// <summary>The plan's malicious-aggregator mode turns into SecAgg parameters and a certified key registry the same way on both sides.</summary>
public sealed class MaliciousAggregatorPlanTests
{
    private static readonly string[] Cohort = ["car-0", "car-1", "car-2", "car-3", "car-4"];

    private static RoundProtection Plan(bool malicious, IReadOnlyList<string>? certificates) => new()
    {
        Codec = "q8", SecureAggregation = "full", ClipNorm = 1, SecAggRoundSeed = Convert.ToBase64String(new byte[32]),
        DeviceKeys = [.. Cohort.Select(_ => "AA==")], DeviceCertificates = certificates, MaliciousAggregator = malicious,
    };

    [Fact]
    public void CreateSecAggParameters_MaliciousAggregatorWithSession_ConsistencyRoundAndSessionBound()
    {
        var plan = Plan(true, [.. Cohort.Select(_ => "AA==")]);
        var session = SecAggSession.Id("fleet", "plan"u8);

        var p = plan.CreateSecAggParameters(plan.CreatePipeline(8, Cohort.Length), 4, Cohort.Length, session);

        Assert.True(p.MaliciousServer);
        Assert.Equal(session, p.SessionId);
        Assert.Equal(4UL, p.Round);
    }

    [Fact]
    public void CreateSecAggParameters_MaliciousAggregatorWithoutSession_Refused()
    {
        var plan = Plan(true, [.. Cohort.Select(_ => "AA==")]);

        var e = Assert.Throws<WireFormatException>(() => plan.CreateSecAggParameters(plan.CreatePipeline(8, Cohort.Length), 4, Cohort.Length));

        Assert.Contains("no session id", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_MaliciousAggregatorWithoutCertificates_Refused()
    {
        var e = Assert.Throws<WireFormatException>(() => Plan(true, null).Validate(Cohort.Length));

        Assert.Contains("no device certificates", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void CreateDeviceKeyRegistry_VehicleHoldsTheCaButThePlanHasNoCertificates_Refused()
    {
        using var ca = EphemeralDeviceCa.Create();
        using var authority = new DeviceCertificateAuthority(ca.Certificate);

        var e = Assert.Throws<WireFormatException>(() => Plan(false, null).CreateDeviceKeyRegistry(Cohort, authority));

        Assert.Contains("certified by the fleet's device CA", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void SessionId_DiffersByFleetAndByPlan()
    {
        Assert.NotEqual(SecAggSession.Id("a", "plan"u8), SecAggSession.Id("b", "plan"u8));
        Assert.NotEqual(SecAggSession.Id("a", "plan"u8), SecAggSession.Id("a", "plan2"u8));
        Assert.NotEqual(SecAggSession.Id("ab", "c"u8), SecAggSession.Id("a", "bc"u8));
    }
}
