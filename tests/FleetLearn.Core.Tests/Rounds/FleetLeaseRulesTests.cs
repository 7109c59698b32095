using FleetLearn.Core.Rounds;

namespace FleetLearn.Core.Tests.Rounds;

/// <summary>One fleet, one writer: which retained claim stops an instance from starting, and which of two claims wins.</summary>
public sealed class FleetLeaseRulesTests
{
    private static readonly DateTimeOffset Now = DateTimeOffset.FromUnixTimeMilliseconds(1_000_000);

    private static LeaseClaim Claim(string instance, long acquired, long expires) => new(LeaseClaim.Claim, instance, "host pid 1", acquired, expires, 0);

    [Fact]
    public void Blocking_OnlyAnotherInstancesUnexpiredClaim()
    {
        Assert.Null(FleetLeaseRules.Blocking(null, "a", Now));                                       // nobody holds the fleet
        Assert.Null(FleetLeaseRules.Blocking(Claim("a", 1, 2_000_000), "a", Now));                   // our own claim: a restart after a crash
        Assert.Null(FleetLeaseRules.Blocking(Claim("b", 1, 1_000_000), "a", Now));                   // lapsed exactly now
        Assert.Null(FleetLeaseRules.Blocking(new LeaseClaim(LeaseClaim.Probe, "b", "x", 0, 2_000_000, 0), "a", Now)); // a probe claims nothing
        Assert.Equal("b", FleetLeaseRules.Blocking(Claim("b", 1, 1_000_001), "a", Now)?.Instance);
    }

    [Fact]
    public void Outranks_EarlierAcquisitionWinsTiesByInstanceSameVerdictOnBothSides()
    {
        var early = Claim("z", 10, 99);
        var late = Claim("a", 11, 99);
        Assert.True(FleetLeaseRules.Outranks(early, late));
        Assert.False(FleetLeaseRules.Outranks(late, early));
        var tieA = Claim("a", 10, 99);
        var tieB = Claim("b", 10, 99);
        Assert.True(FleetLeaseRules.Outranks(tieA, tieB));
        Assert.False(FleetLeaseRules.Outranks(tieB, tieA));
        Assert.False(FleetLeaseRules.Outranks(early, early with { ExpiresUnixMs = 5 })); // a renewal of our own claim
    }
}
