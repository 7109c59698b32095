using Xunit.Abstractions;

namespace FleetLearn.Cli.Tests.Faults;

/// <summary>
/// Downlink replay with real processes (issue 14 item 3, and the fault row "broker restart mid secure round"): the key
/// directory the aggregator routed to two vehicles is lost when the broker is killed and restarted (it held them in its
/// memory only); the two vehicles' resends bring it again, and the round is applied with all three.
/// </summary>
[Collection("Console")]
public sealed class DownlinkReplayFaultTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Step = FaultRig.Step;

    [Fact]
    [Trait("Category", "Slow")]
    public async Task Kill9Broker_WhileTheKeyDirectoryIsOnItsWay_VehiclesAskAgain_SecureRoundAppliedWithAllThree()
    {
        await using var rig = new FaultRig(output);
        var broker = await rig.StartBrokerAsync();
        // PhaseTimeout 30 s: without the replay ShareKeys closes with car-0 alone and the round aborts (3 of 3 needed).
        string[] secure = ["--Aggregator:CohortSize=3", "--Aggregator:MinParticipants=3", "--Aggregator:SecureAggregation=full", "--Aggregator:Codec=q8",
            "--Aggregator:ClipNorm=1", "--Aggregator:PhaseTimeout=00:00:30"];
        var aggregator = rig.StartAggregator(rounds: 1, secure);
        var proxies = new[] { rig.Proxy(), rig.Proxy() };
        for (int i = 0; i < 2; i++) proxies[i].Down.PauseBeforePublish(rig.Topics.Inbox($"car-{i + 1}", "secagg")); // the key directory, held
        var cars = new[] { rig.StartAgent(0), rig.StartAgent(1, proxies[0]), rig.StartAgent(2, proxies[1]) };
        foreach (var p in proxies) await p.Down.WaitUntilPausedAsync(Step);

        // The broker dies with the two key directories in flight (the proxies drop what they held when the link goes).
        broker.KillHard();
        foreach (var p in proxies) p.Down.Resume();
        await rig.StartBrokerAsync();
        // Each vehicle resends: either its round keys, whose ack was queued behind the lost directory, or (keys acknowledged)
        // its last message, to ask again. Both are duplicates, and the aggregator answers each one with the directory again.
        await aggregator.WaitForLineAsync("aggregator: round 1 applied 3/3 updates; model 1.", Step);
        Assert.All(cars, c => Assert.False(c.HasLine("drops out"), c.Output));
        Assert.Equal([(1L, "applied", 3, 0L, (long?)1)], await rig.ApiRoundsAsync());
        var metrics = await rig.MetricsAsync();
        Assert.True(metrics["fleetlearn_aggregator_updates_duplicate_total"] >= 2); // the vehicles' resends, answered Duplicate
    }
}
