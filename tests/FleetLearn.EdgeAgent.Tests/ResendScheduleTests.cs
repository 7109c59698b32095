using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.EdgeAgent.Tests;

/// <summary>The agent's resend timing in memory: backoff 1, 2, 4, 8, 16 intervals, the aggregator's hold, expiry.</summary>
public sealed class ResendScheduleTests
{
    private static readonly TimeSpan Interval = TimeSpan.FromSeconds(5);
    private static readonly DateTimeOffset T0 = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    [Fact]
    public void Sent_BacksOffOneTwoFourEightSixteenIntervals_ThenStaysAtSixteen()
    {
        var schedule = new ResendSchedule(Interval);
        var id = Guid.NewGuid();
        schedule.Track(id, T0.AddHours(1));
        Assert.Equal([id], schedule.Due(T0, out _)); // never sent: due at once
        var now = T0;
        Assert.False(schedule.Sent(id, now)); // the first send
        foreach (int intervals in new[] { 1, 2, 4, 8, 16, 16 })
        {
            Assert.Empty(schedule.Due(now + Interval * intervals - TimeSpan.FromMilliseconds(1), out _));
            now += Interval * intervals;
            Assert.Equal([id], schedule.Due(now, out _));
            Assert.True(schedule.Sent(id, now)); // a resend
        }
    }

    [Fact]
    public void Hold_DueResendsWait_CountedAsHeld_UntilTheHoldPasses_OrIsReleased()
    {
        var schedule = new ResendSchedule(Interval, jitter: 0.25);
        var a = Guid.NewGuid();
        var b = Guid.NewGuid();
        schedule.Track(a, T0.AddHours(1));
        schedule.Track(b, T0.AddHours(1));
        schedule.Sent(a, T0);
        schedule.Sent(b, T0);
        schedule.Hold(TimeSpan.FromSeconds(40), T0); // this vehicle holds 40 s × 1.25 = 50 s
        Assert.Equal(T0.AddSeconds(50), schedule.HeldUntil);

        Assert.Empty(schedule.Due(T0.AddSeconds(49), out int held));
        Assert.Equal(2, held);
        Assert.Equal(new[] { a, b }.Order(), schedule.Due(T0.AddSeconds(50), out held).Order());
        Assert.Equal(0, held);

        schedule.Hold(TimeSpan.FromSeconds(40), T0.AddSeconds(50));
        Assert.True(schedule.IsHeld(T0.AddSeconds(51)));
        schedule.Hold(TimeSpan.Zero, T0.AddSeconds(51)); // the aggregator cleared its signal
        Assert.False(schedule.IsHeld(T0.AddSeconds(51)));
        Assert.Equal(2, schedule.Due(T0.AddSeconds(51), out _).Count);
    }

    [Fact]
    public void Expired_AndForget_RemoveMessages_UntrackedSendIsNoResend()
    {
        var schedule = new ResendSchedule(Interval);
        var soon = Guid.NewGuid();
        var later = Guid.NewGuid();
        schedule.Track(soon, T0.AddSeconds(10));
        schedule.Track(later, T0.AddSeconds(100), attempts: 3); // found in the outbox at start-up
        Assert.Empty(schedule.Expired(T0.AddSeconds(9)));
        Assert.Equal([soon], schedule.Expired(T0.AddSeconds(10)));
        Assert.Equal(1, schedule.Count);
        Assert.True(schedule.Sent(later, T0.AddSeconds(10))); // sends behind it: a resend, next after 8 intervals
        Assert.Empty(schedule.Due(T0.AddSeconds(49), out _));
        Assert.Equal([later], schedule.Due(T0.AddSeconds(50), out _));
        Assert.True(schedule.Forget(later));
        Assert.False(schedule.Forget(later));
        Assert.False(schedule.IsPending(later));
        Assert.False(schedule.Sent(later, T0.AddSeconds(60)));
    }
}
