using Xunit.Abstractions;

namespace FleetLearn.Cli.Tests.Faults;

/// <summary>
/// A vehicle offline for longer than its MQTT session expiry (issue 14's fault suite): the broker drops its session and
/// with it the acknowledgement queued for it; when the vehicle is back, its outbox resends the update, which the
/// aggregator answers Duplicate (counted once), and the next round is applied with it.
/// </summary>
[Collection("Console")]
public sealed class SessionExpiryFaultTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Step = FaultRig.Step;

    [Fact]
    [Trait("Category", "Slow")]
    public async Task VehicleOfflineLongerThanItsSessionExpiry_AckLostWithTheSession_ResendCountedOnce_NextRoundApplied()
    {
        await using var rig = new FaultRig(output);
        await rig.StartBrokerAsync();
        var aggregator = rig.StartAggregator(rounds: 2);
        var proxy = rig.Proxy();
        proxy.Down.PauseBeforePublish(rig.Topics.Inbox("car-0", "ack")); // car-0's update is folded; its ack never gets through
        var car0 = rig.StartAgent(0, proxy, "--Mqtt:SessionExpirySeconds=2", "--Mqtt:KeepAliveSeconds=2");
        var car1 = rig.StartAgent(1);
        await proxy.Down.WaitUntilPausedAsync(Step);
        proxy.Up.Pause(); // and car-0 goes silent: off coverage, still running
        await car0.WaitForLineAsync("MQTT car-0: disconnected", Step);
        await aggregator.WaitForLineAsync("aggregator: round 1 applied 2/2 updates; model 1.", Step);

        // Offline past its 2 s session expiry: the broker drops the session and the queued ack with it.
        int mark = car0.LineCount;
        await Task.Delay(TimeSpan.FromSeconds(4)); // the fault itself is a duration: longer than the session expiry
        proxy.Down.Resume();
        proxy.Up.Resume();
        await car0.WaitForLineAsync("(session present: False)", mark, Step);
        await car0.WaitForLineAsync("agent car-0: round 1 update Duplicate", Step);
        await aggregator.WaitForLineAsync("aggregator: round 2 applied 2/2 updates; model 2.", Step);
        await car0.WaitForLineAsync("agent car-0: round 2 update Accepted", Step);
        Assert.Equal(4, (await rig.MetricsAsync())["fleetlearn_aggregator_updates_accepted_total"]);
        Assert.Equal([(1L, "applied", 2, 0L, (long?)1), (2L, "applied", 2, 1L, (long?)2)], await rig.ApiRoundsAsync());
        rig.KillAll();
        Assert.Empty(rig.Outbox(0));
        Assert.Empty(rig.Outbox(1));
    }
}
