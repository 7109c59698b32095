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

/// <summary>The fleet epoch: evidence from vehicles of rounds or epochs beyond the database's starts a new epoch numbered past them.</summary>
public sealed class FleetEpochTests
{
    [Fact]
    public void Observe_RoundsTheDatabaseKnows_NothingChanges()
    {
        var epoch = new FleetEpoch(0, 10);
        Assert.Null(epoch.Observe(10, 0, "car-1's check-in"));
        Assert.Null(epoch.Observe(3, 0, "car-2's check-in"));
        Assert.Equal((0L, 11L, (string?)null), (epoch.Epoch, epoch.NextRound, epoch.PendingRollback));
    }

    [Fact]
    public void Observe_ACheckinBeyondTheDatabase_NewEpochPastTheFleetsRoundAndTheOpenRoundToAbort()
    {
        var epoch = new FleetEpoch(2, 10); // restored from a backup taken at round 10; the fleet went on to round 15
        var why = epoch.Observe(15, 0, "car-1's check-in");
        Assert.Equal("restored older database detected: car-1's check-in reports round 15 (epoch 0), but this database knows rounds up to 10 in epoch 2; epoch 3 starts, its first round after 15", why);
        Assert.Equal((3L, 16L), (epoch.Epoch, epoch.NextRound));
        Assert.Null(epoch.Observe(15, 0, "car-2's check-in")); // the same evidence again changes nothing
        Assert.Equal(why, epoch.TakeRollback());
        Assert.Null(epoch.PendingRollback);
    }

    [Fact]
    public void Observe_ANewerEpoch_RaisedAboveIt_AndNumberNewRoundSettlesIt()
    {
        var epoch = new FleetEpoch(1, 20);
        Assert.NotNull(epoch.Observe(12, 4, "car-3's update envelope"));
        Assert.Equal(5, epoch.Epoch);
        Assert.Equal(21, epoch.NumberNewRound(21));
        Assert.Null(epoch.PendingRollback);
        Assert.Equal(30, epoch.NumberNewRound(30));
        epoch.Opened(30);
        Assert.Equal(31, epoch.NextRound);
    }
}
