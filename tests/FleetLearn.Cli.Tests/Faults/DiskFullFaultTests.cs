using Xunit.Abstractions;

namespace FleetLearn.Cli.Tests.Faults;

/// <summary>
/// Disk full (issue 14's fault suite), with real processes and a small tmpfs under the vehicle's or the aggregator's
/// database: nothing acknowledged is lost, nothing is counted twice, nothing is quarantined, and the run finishes once
/// space is back.
/// </summary>
[Collection("Console")]
public sealed class DiskFullFaultTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Step = FaultRig.Step;

    [SkippableFact]
    [Trait("Category", "Slow")]
    public async Task DiskFullOnAVehicle_ItSitsOutTheRoundAndStaysUp_NextRoundAppliedWithBoth()
    {
        await using var rig = new FaultRig(output);
        using var disk = Tmpfs.Mount(Path.Combine(rig.Root, "car-1"), 8);
        Skip.If(disk.SkipReason is not null, disk.SkipReason);
        await rig.StartBrokerAsync();
        var car0 = rig.StartAgent(0);
        var car1 = rig.StartAgent(1);
        await car1.WaitForLineAsync("MQTT car-1: connected", Step);
        disk.Fill(); // after the agent opened its stores: the next write fails

        // One participant is enough, and a round lasts 15 s at most: round 1 goes on without car-1.
        var aggregator = rig.StartAggregator(rounds: 2, "--Aggregator:MinParticipants=1", "--Aggregator:RoundTimeout=00:00:15");
        await car1.WaitForLineAsync("agent car-1: disk full; could not handle a message", Step);
        await aggregator.WaitForLineAsync("aggregator: round 1 applied 1/2 updates; model 1.", Step);
        Assert.False(car1.HasExited);
        disk.Free();

        await aggregator.WaitForLineAsync("aggregator: round 2 applied 2/2 updates; model 2.", Step);
        await car1.WaitForLineAsync("agent car-1: round 2 update Accepted", Step);
        Assert.False(car1.HasLine("moved aside")); // a full disk is not damage: nothing quarantined
        Assert.Equal(3, (await rig.MetricsAsync())["fleetlearn_aggregator_updates_accepted_total"]);
        Assert.Equal([(1L, "applied", 1, 0L, (long?)1), (2L, "applied", 2, 1L, (long?)2)], await rig.ApiRoundsAsync());
        rig.KillAll();
        Assert.Empty(rig.Outbox(0));
        Assert.Empty(rig.Outbox(1));
        Assert.Empty(Directory.GetFiles(disk.Folder, "*.corrupt-*"));
    }

    [SkippableFact]
    [Trait("Category", "Slow")]
    public async Task DiskFullOnTheAggregator_ItWaitsAndAcknowledgesNothing_ThenBothRoundsAppliedEachUpdateOnce()
    {
        await using var rig = new FaultRig(output);
        using var disk = Tmpfs.Mount(Path.Combine(rig.Root, "aggregator-disk"), 8);
        Skip.If(disk.SkipReason is not null, disk.SkipReason);
        await rig.StartBrokerAsync();
        var aggregator = rig.StartAggregator(rounds: 2, $"--Aggregator:DatabasePath={Path.Combine(disk.Folder, "aggregator.db")}");
        var proxies = new[] { rig.Proxy(), rig.Proxy() };
        for (int i = 0; i < 2; i++) proxies[i].Up.PauseBeforePublish(rig.Topics.Up($"car-{i}", "update"));
        var cars = new[] { rig.StartAgent(0, proxies[0]), rig.StartAgent(1, proxies[1]) };
        foreach (var p in proxies) await p.Up.WaitUntilPausedAsync(Step); // round 1 is open and stored; both updates are ready

        disk.Fill();
        foreach (var p in proxies) p.Up.Resume();
        await aggregator.WaitForLineAsync("aggregator: disk full; the journal of an accepted update waits for space", Step);
        Assert.DoesNotContain(cars, c => c.HasLine("round 1 update Accepted")); // nothing acknowledged that is not stored
        disk.Free();

        await aggregator.WaitForLineAsync("aggregator: disk space is back;", Step);
        await aggregator.WaitForLineAsync("aggregator: round 1 applied 2/2 updates; model 1.", Step);
        await aggregator.WaitForLineAsync("aggregator: round 2 applied 2/2 updates; model 2.", Step);
        for (int i = 0; i < 2; i++) await cars[i].WaitForLineAsync($"agent car-{i}: round 2 update Accepted", Step);
        Assert.Equal(4, (await rig.MetricsAsync())["fleetlearn_aggregator_updates_accepted_total"]);
        Assert.Equal([(1L, "applied", 2, 0L, (long?)1), (2L, "applied", 2, 1L, (long?)2)], await rig.ApiRoundsAsync());
        rig.KillAll();
        Assert.Empty(rig.Outbox(0));
        Assert.Empty(rig.Outbox(1));
    }
}
