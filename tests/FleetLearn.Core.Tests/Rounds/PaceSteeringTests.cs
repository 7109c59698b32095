using FleetLearn.Core.Rounds;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Core.Tests.Rounds;

/// <summary>Pace steering on a fake clock: usual hours learned from check-ins, the least-loaded usual hour suggested, load released.</summary>
public sealed class PaceSteeringTests
{
    private static readonly DateTimeOffset Monday = new(2026, 1, 5, 0, 0, 0, TimeSpan.Zero);

    [Fact]
    public void CheckIn_SameUsualHours_SpreadOverThem()
    {
        // Four vehicles all eligible 18:00–21:00 UTC: each is handed the least-loaded of 18, 19 and 20, so the fourth shares an hour.
        var clock = new ManualTimeProvider(Monday.AddHours(18));
        var pace = new PaceSteering(new PaceSteeringOptions(), clock);
        var hours = Enumerable.Range(0, 4).Select(v => pace.CheckIn($"v{v}", Monday.AddHours(21))!.From.Hour).ToList();
        Assert.Equal([18, 19, 20], hours.Take(3).Order());
        Assert.Contains(hours[3], new[] { 18, 19, 20 });
        Assert.Equal(4, pace.Load.Sum());
        Assert.Equal(2, pace.Load.Max());
    }

    [Fact]
    public void CheckIn_SuggestsTheNextOccurrenceAtLeastTheIntervalAhead()
    {
        // Eligible 18:30–19:30 on Monday: hour 18 holds 0.5 h, 19 holds 0.5 h — both usual. 20 h ahead is Tuesday 14:30, so the
        // next 18:00 or 19:00 bin is Tuesday's.
        var clock = new ManualTimeProvider(Monday.AddHours(18.5));
        var pace = new PaceSteering(new PaceSteeringOptions { Seed = 1 }, clock);
        var s = pace.CheckIn("v", Monday.AddHours(19.5))!;
        Assert.Contains(s.From, new[] { Monday.AddHours(24 + 18), Monday.AddHours(24 + 19) });
        Assert.Equal(TimeSpan.FromHours(1), s.Until - s.From);
    }

    [Fact]
    public void CheckIn_HourAlreadyBegun_NextDay()
    {
        // MinInterval 0, eligible 10:15–10:45: the only usual hour (10) has begun, so the suggestion is tomorrow's 10:00–11:00.
        var clock = new ManualTimeProvider(Monday.AddHours(10.25));
        var pace = new PaceSteering(new PaceSteeringOptions { MinInterval = TimeSpan.Zero }, clock);
        var s = pace.CheckIn("v", Monday.AddHours(10.75))!;
        Assert.Equal(new PaceSuggestion(Monday.AddHours(34), Monday.AddHours(35)), s);
    }

    [Fact]
    public void CheckIn_Again_ReleasesTheOldSuggestion_ExpireFreesUnused()
    {
        var clock = new ManualTimeProvider(Monday.AddHours(18));
        var pace = new PaceSteering(new PaceSteeringOptions(), clock);
        pace.CheckIn("a", Monday.AddHours(19));
        pace.CheckIn("b", Monday.AddHours(19));
        Assert.Equal(2, pace.Load[18]);
        clock.Advance(TimeSpan.FromHours(24));
        pace.CheckIn("a", Monday.AddHours(24 + 19)); // a used its window: its old suggestion is released, a new one taken
        Assert.Equal(2, pace.Load[18]);
        clock.Advance(TimeSpan.FromHours(2)); // b's window (Tuesday 18:00–19:00) has passed unused
        Assert.Equal(1, pace.Expire());
        Assert.Equal(1, pace.Load[18]);
        Assert.False(pace.Release("b"));
    }

    [Fact]
    public void CheckIn_NothingEligibleYet_NoSuggestion()
    {
        var clock = new ManualTimeProvider(Monday);
        var pace = new PaceSteering(new PaceSteeringOptions(), clock);
        Assert.Null(pace.CheckIn("v", Monday));
        Assert.Equal(0, pace.Load.Sum());
    }
}
