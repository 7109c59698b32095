using FleetLearn.Testing;
using Xunit.Abstractions;

namespace FleetLearn.Cli.Tests.Faults;

/// <summary>
/// A vehicle's link cut mid-chunk with every process left running (issue 14's fault suite): car-0 runs in a network
/// namespace the test makes, joined by a veth pair whose uplink is slowed to 200 kbit/s (tc tbf), so that its update takes
/// seconds on the wire. The test takes the veth down once 3 of its chunks have reached the broker, waits until the agent
/// notices, and brings the link back: the outbox resends, the update is counted once, and both rounds are applied.
/// </summary>
[Collection("Console")]
public sealed class LinkCutFaultTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Step = FaultRig.Step;

    [SkippableFact]
    [Trait("Category", "Slow")]
    public async Task LinkCutMidChunk_VethDownThenUp_ProcessesLeftRunning_UpdateCountedOnceBothRoundsApplied()
    {
        using var ns = NetworkNamespace.Create(uplinkKbit: 200);
        Skip.If(ns.SkipReason is not null, ns.SkipReason);
        await using var rig = new FaultRig(output);
        await rig.StartBrokerAsync();
        var aggregator = rig.StartAggregator(rounds: 2);
        var proxy = rig.Proxy(ns.HostAddress); // plain forwarding on the test's end of the veth, to the loopback-only broker
        string update = rig.Topics.Up("car-0", "update");
        var car0 = rig.StartAgentIn(ns.Name, 0, proxy, $"--Mqtt:Host={ns.HostAddress}", "--Mqtt:KeepAliveSeconds=3");
        var car1 = rig.StartAgent(1);

        await car0.WaitForLineAsync("agent car-0: trained round 1", Step);
        await Poll.UntilAsync(() => proxy.Up.ForwardedPublishes(update) >= 3, "3 chunks of car-0's update at the broker", Step);
        ns.Cut(); // mid-transfer: at 200 kbit/s an 8 KiB chunk takes a third of a second on the wire
        int forwarded = proxy.Up.ForwardedPublishes(update);
        await car0.WaitForLineAsync("MQTT car-0: disconnected", Step); // keep-alive (3 s) found the link dead
        Assert.False(aggregator.HasLine("round 1 applied"));
        Assert.True(forwarded < 13, $"the whole update ({forwarded} chunks) got through before the cut");
        ns.Restore();

        await car0.WaitForLineAsync("agent car-0: round 1 update Accepted", Step);
        await aggregator.WaitForLineAsync("aggregator: round 1 applied 2/2 updates; model 1.", Step);
        await aggregator.WaitForLineAsync("aggregator: round 2 applied 2/2 updates; model 2.", Step);
        await car0.WaitForLineAsync("agent car-0: round 2 update Accepted", Step);
        Assert.Equal(4, (await rig.MetricsAsync())["fleetlearn_aggregator_updates_accepted_total"]);
        Assert.Equal([(1L, "applied", 2, 0L, (long?)1), (2L, "applied", 2, 1L, (long?)2)], await rig.ApiRoundsAsync());
        rig.KillAll();
        Assert.Empty(rig.Outbox(0));
        Assert.Empty(rig.Outbox(1));
        Assert.Single(car0.Output.Split('\n'), l => l.Contains("trained round 1", StringComparison.Ordinal)); // resent, not trained again
        Assert.False(car1.HasExited && car1.ExitCode != 137);
    }
}
