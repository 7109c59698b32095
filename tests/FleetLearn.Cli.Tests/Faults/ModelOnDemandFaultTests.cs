using Xunit.Abstractions;

namespace FleetLearn.Cli.Tests.Faults;

/// <summary>
/// Bandwidth on reconnect (issue 14 item 5), with real processes: a vehicle that lacks the model of the round it joined
/// (one retained chunk lost on its link) asks the aggregator for it and gets it in its inbox; the round is applied with both.
/// </summary>
[Collection("Console")]
public sealed class ModelOnDemandFaultTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Step = FaultRig.Step;

    [Fact]
    [Trait("Category", "Slow")]
    public async Task ModelChunkLostOnTheWay_VehicleAsksForTheModel_GetsItInItsInbox_RoundApplied()
    {
        await using var rig = new FaultRig(output);
        await rig.StartBrokerAsync();
        var aggregator = rig.StartAggregator(rounds: 1);
        var proxy = rig.Proxy();
        proxy.Down.DropNextPublish(rig.Topics.ModelChunk(0, 0)); // car-1 never completes the retained model
        var car0 = rig.StartAgent(0);
        var car1 = rig.StartAgent(1, proxy);

        await car1.WaitForLineAsync("agent car-1: model 0 of the joined round has not arrived; asking the aggregator for it.", Step);
        await aggregator.WaitForLineAsync("aggregator: sent model 0 to car-1 on request", Step);
        await aggregator.WaitForLineAsync("aggregator: round 1 applied 2/2 updates; model 1.", Step);
        Assert.False(car0.HasLine("asking the aggregator for it"));
        Assert.Equal([(1L, "applied", 2, 0L, (long?)1)], await rig.ApiRoundsAsync());
    }
}
