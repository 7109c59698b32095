using FleetLearn.Transport.Mqtt.Broker;
using FleetLearn.Testing;
using Xunit.Abstractions;

namespace FleetLearn.Cli.Tests.Faults;

/// <summary>
/// Mosquitto (Debian's, with broker-config/'s mTLS and ACLs, persistence on, autosave every 2 s) killed with SIGKILL
/// between autosaves while a round collects: on restart it has only the state of its last autosave (stale sessions,
/// queued and retained messages). Nothing acknowledged is lost, nothing is counted twice, and both rounds are applied.
/// </summary>
[Collection("Console")]
public sealed class MosquittoFaultTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Step = FaultRig.Step;

    [SkippableFact]
    [Trait("Category", "Slow")]
    public async Task MosquittoKilledBetweenAutosaves_MidRound_NothingAcknowledgedLost_BothRoundsApplied()
    {
        await using var mosquitto = await MosquittoBroker.StartAsync(2, "aggregator", "car-0", "car-1", "car-2");
        Skip.If(mosquitto.SkipReason is not null, mosquitto.SkipReason);
        await using var rig = new FaultRig(output);
        rig.UseBroker(mosquitto.Port);
        string certs = mosquitto.Certificates;
        rig.Tls = client => ["--Mqtt:UseTls=true", $"--Mqtt:CaFile={certs}/ca.crt", $"--Mqtt:CertFile={certs}/{client}.crt", $"--Mqtt:KeyFile={certs}/{client}.key", "--Mqtt:TlsServerName=localhost"];
        // car-2 checks in but pins another model, so it never answers: every round collects until its 12 s deadline, and
        // the kill lands while a round collects, whatever the machine's speed.
        var aggregator = rig.StartAggregator(rounds: 2, "--Aggregator:CohortSize=3", "--Aggregator:MinParticipants=2", "--Aggregator:RoundTimeout=00:00:12");
        var cars = new[] { rig.StartAgent(0), rig.StartAgent(1) };
        var silent = rig.StartAgent(2, null, "--Agent:PinnedModelSpec=784-16-10");
        await aggregator.WaitForLineAsync("aggregator: round 1 open", Step);
        // An autosave while round 1 collects: the restart brings back sessions, subscriptions and retained messages as they
        // were then, and loses whatever came after it.
        int saves = Saves(mosquitto);
        await Poll.UntilAsync(() => Saves(mosquitto) > saves, "Mosquitto's next autosave", Step);
        Assert.False(aggregator.HasLine("round 1 applied"));

        int mark = aggregator.LineCount;
        mosquitto.KillHard();
        await mosquitto.RestartAsync();
        await aggregator.WaitForLineAsync("(session present: True)", mark, Step); // its session came back from the autosave
        await aggregator.WaitForLineAsync("aggregator: round 1 applied 2/3 updates; model 1.", Step);
        await aggregator.WaitForLineAsync("aggregator: round 2 applied 2/3 updates; model 2.", Step);
        for (int i = 0; i < 2; i++) await cars[i].WaitForLineAsync($"agent car-{i}: round 2 update Accepted", Step);
        var metrics = await rig.MetricsAsync();
        Assert.Equal(4, metrics["fleetlearn_aggregator_updates_accepted_total"]); // each update once, whatever was resent
        Assert.Equal([(1L, "applied", 2, 0L, (long?)1), (2L, "applied", 2, 1L, (long?)2)], await rig.ApiRoundsAsync());
        rig.KillAll();
        Assert.Empty(rig.Outbox(0));
        Assert.Empty(rig.Outbox(1));
        foreach (var round in new[] { 1, 2 })
            Assert.All(cars, c => Assert.Single(c.Output.Split('\n'), l => l.Contains($"trained round {round}", StringComparison.Ordinal))); // trained once; resent from the outbox if at all
        Assert.False(silent.HasLine("trained"));
    }

    private static int Saves(MosquittoBroker broker) => broker.Log.Split('\n').Count(l => l.Contains("Saving in-memory database", StringComparison.Ordinal));
}
