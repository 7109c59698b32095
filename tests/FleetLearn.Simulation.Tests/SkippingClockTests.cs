namespace FleetLearn.Simulation.Tests;

public sealed class SkippingClockTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task Skip_PastATimeoutsDueTime_CancelsItNow()
    {
        var clock = new SkippingClock();
        var before = clock.GetUtcNow();
        using var soon = new CancellationTokenSource(TimeSpan.FromMinutes(2), clock);
        using var later = new CancellationTokenSource(TimeSpan.FromMinutes(10), clock);

        clock.Skip(TimeSpan.FromMinutes(2));

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => Task.Delay(Timeout.Infinite, soon.Token).WaitAsync(Patience));
        Assert.False(later.IsCancellationRequested);
        Assert.True(clock.GetUtcNow() - before >= TimeSpan.FromMinutes(2));
        Assert.Equal(TimeSpan.FromMinutes(2), clock.Skipped);
    }

    [Fact]
    public async Task Skip_APeriodicTimersPeriod_TicksItNow()
    {
        var clock = new SkippingClock();
        using var timer = new PeriodicTimer(TimeSpan.FromHours(1), clock);
        var tick = timer.WaitForNextTickAsync().AsTask();
        Assert.False(tick.IsCompleted);

        clock.Skip(TimeSpan.FromHours(1));

        Assert.True(await tick.WaitAsync(Patience));
        // The next tick is an hour later on the skipped clock.
        var next = timer.WaitForNextTickAsync().AsTask();
        clock.Skip(TimeSpan.FromHours(1));
        Assert.True(await next.WaitAsync(Patience));
    }

    [Fact]
    public void Skip_Backwards_IsRefused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new SkippingClock().Skip(TimeSpan.FromSeconds(-1)));
    }
}
