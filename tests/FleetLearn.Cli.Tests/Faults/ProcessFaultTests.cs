using Xunit.Abstractions;

namespace FleetLearn.Cli.Tests.Faults;

/// <summary>
/// Faults with real processes (issue 7, "Transport and workers"): <c>kill -9</c> of an agent while it uploads and after it
/// uploaded, of the aggregator mid-round (the round resumes from its journal), and of the broker mid-round. Each scenario runs <c>fleetlearn broker</c>,
/// <c>fleetlearn aggregator</c> and two <c>fleetlearn agent</c>s as OS processes with their own LiteDB files, cuts a link at
/// an exact MQTT packet through <see cref="MqttFaultProxy"/> so that the kill lands where the scenario says (no timing
/// luck), and then checks: the round completes, the next round is applied, no update is counted
/// twice (accepted updates = participants, per round and in total), and every outbox is empty at the end.
/// </summary>
// Serialized with the other process-spawning tests: under a loaded machine, parallel builds and extractions starved
// these timing-sensitive rounds (a fault step waited past its 60 s window).
[Collection("Console")]
public sealed class ProcessFaultTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Step = FaultRig.Step;

    [Fact]
    public async Task Kill9Agent_MidUpload_RestartResendsFromOutboxCountedOnceAndNextRoundApplied()
    {
        await using var rig = new FaultRig(output);
        await rig.StartBrokerAsync();
        var aggregator = rig.StartAggregator(rounds: 2);
        var proxy = rig.Proxy();
        string update = rig.Topics.Up("car-0", "update");
        proxy.Up.PauseAfterPublishes(update, 5); // 5 of the update's ~15 chunks reach the broker, then the link stalls
        var car0 = rig.StartAgent(0, proxy);
        var car1 = rig.StartAgent(1);

        await proxy.Up.WaitUntilPausedAsync(Step);
        await car0.WaitForLineAsync("agent car-0: trained round 1", Step);
        car0.KillHard();

        // The update was in the durable outbox before its first chunk left, and no acknowledgement came back.
        var waiting = Assert.Single(rig.Outbox(0));
        Assert.Equal(1, waiting.Round);
        Assert.Equal(5, proxy.Up.ForwardedPublishes(update));
        Assert.False(aggregator.HasLine("round 1 applied"));

        proxy.Up.Resume();
        var car0Again = rig.StartAgent(0, proxy); // same database
        await car0Again.WaitForLineAsync("agent car-0: round 1 update Accepted", Step);
        await aggregator.WaitForLineAsync("aggregator: round 1 applied 2/2 updates; model 1.", Step);
        await aggregator.WaitForLineAsync("aggregator: round 2 applied 2/2 updates; model 2.", Step);
        await car0Again.WaitForLineAsync("agent car-0: round 2 update Accepted", Step);
        await car1.WaitForLineAsync("agent car-1: round 2 update Accepted", Step);
        Assert.False(car0Again.HasLine("trained round 1")); // resent from the outbox, not trained again

        var metrics = await rig.MetricsAsync();
        Assert.Equal(4, metrics["fleetlearn_aggregator_updates_accepted_total"]);
        await AssertEndStateAsync(rig, 2, ("applied", 2, 0, 1), ("applied", 2, 1, 2));
    }

    /// <param name="ackLost">
    /// false: the broker's persistent session hands the unacknowledged ack to the restarted agent (MQTTnet resends in-flight
    /// QoS 1 messages on session resumption). true: that redelivery is lost too (as when the broker lost the session), so
    /// the outbox resends the update within the same round and the aggregator must recognise it.
    /// </param>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Kill9Agent_AfterUploadBeforeAck_RestartedAgentCountedOnceAndOutboxEmpties(bool ackLost)
    {
        await using var rig = new FaultRig(output);
        await rig.StartBrokerAsync();
        var aggregator = rig.StartAggregator(rounds: 2);
        string ack = rig.Topics.Inbox("car-0", "ack");
        var proxy0 = rig.Proxy();
        proxy0.Down.PauseBeforePublish(ack);                            // the aggregator's acknowledgement never reaches car-0
        var proxy1 = rig.Proxy();
        proxy1.Up.PauseBeforePublish(rig.Topics.Up("car-1", "update")); // car-1's update is held: round 1 stays open
        var car0 = rig.StartAgent(0, proxy0);
        var car1 = rig.StartAgent(1, proxy1);

        // Held ack = the aggregator folded car-0's whole update and answered; car-0 dies before it hears the answer.
        await proxy0.Down.WaitUntilPausedAsync(Step);
        car0.KillHard();
        Assert.Equal(1, Assert.Single(rig.Outbox(0)).Round);
        await proxy1.Up.WaitUntilPausedAsync(Step);
        Assert.False(aggregator.HasLine("round 1 applied"));

        proxy0.Down.Resume();
        if (ackLost) proxy0.Down.DropNextPublish(ack);
        var car0Again = rig.StartAgent(0, proxy0);
        // Redelivery comes right after CONNACK, the first resend a ResendInterval later; on a starved machine the resend
        // could still win, so without the drop either answer is right. With the drop only a resend can empty the outbox.
        var answer = await car0Again.WaitForLineAsync(
            l => l.Contains("agent car-0: round 1 update Duplicate", StringComparison.Ordinal) || (!ackLost && l.Contains("agent car-0: round 1 update Accepted", StringComparison.Ordinal)),
            ackLost ? "'round 1 update Duplicate'" : "'round 1 update Accepted' (or Duplicate)", 0, Step);
        output.WriteLine($"after the restart: {answer}");
        var metrics = await rig.MetricsAsync();
        Assert.Equal(1, metrics["fleetlearn_aggregator_updates_accepted_total"]); // car-1's is still held: car-0's, once
        if (ackLost) Assert.True(metrics["fleetlearn_aggregator_updates_duplicate_total"] >= 1);

        proxy1.Up.Resume();
        await aggregator.WaitForLineAsync("aggregator: round 1 applied 2/2 updates; model 1.", Step);
        await aggregator.WaitForLineAsync("aggregator: round 2 applied 2/2 updates; model 2.", Step);
        await car0Again.WaitForLineAsync("agent car-0: round 2 update Accepted", Step);
        await car1.WaitForLineAsync("agent car-1: round 2 update Accepted", Step);
        Assert.False(car0Again.HasLine("trained round 1"));

        metrics = await rig.MetricsAsync();
        Assert.Equal(4, metrics["fleetlearn_aggregator_updates_accepted_total"]);
        await AssertEndStateAsync(rig, 2, ("applied", 2, 0, 1), ("applied", 2, 1, 2));
    }

    /// <summary>
    /// Issue 14's acceptance scenario: cohort 4, 3 rounds, four agents (LocalEpochs=25, so a round lasts seconds); the
    /// aggregator is killed while round 2 collects, with car-0's and car-1's updates folded (car-1's ack held, never heard),
    /// car-2 mid-upload and car-3's update not yet sent. Restarted on the same files it resumes round 2 from its journal:
    /// car-1's resend is a duplicate, car-2's and car-3's updates complete the round with 4 participants, and round 3 follows.
    /// </summary>
    [Fact]
    [Trait("Category", "Slow")]
    public async Task Kill9Aggregator_WhileRound2Collects_RestartResumesRound2AppliedWithFourAndAllRoundsApplied()
    {
        await using var rig = new FaultRig(output);
        await rig.StartBrokerAsync();
        string[] cohort4 = ["--Aggregator:CohortSize=4", "--Aggregator:MinParticipants=4", "--Aggregator:LocalEpochs=25"];
        var aggregator = rig.StartAggregator(rounds: 3, cohort4);
        var proxies = Enumerable.Range(0, 4).Select(_ => rig.Proxy()).ToArray();
        var cars = Enumerable.Range(0, 4).Select(i => rig.StartAgent(i, proxies[i])).ToArray();
        for (int i = 0; i < 4; i++) await cars[i].WaitForLineAsync($"agent car-{i}: round 1 update Accepted", Step);
        await aggregator.WaitForLineAsync("aggregator: round 1 applied 4/4 updates; model 1.", Step);

        // Round 2 trains for seconds: the faults are in place before any round-2 update leaves.
        proxies[1].Down.PauseBeforePublish(rig.Topics.Inbox("car-1", "ack"));   // car-1's update is folded; the answer is held
        proxies[2].Up.PauseAfterPublishes(rig.Topics.Up("car-2", "update"), 5); // car-2 is mid-upload
        proxies[3].Up.PauseBeforePublish(rig.Topics.Up("car-3", "update"));     // car-3's update waits in its outbox
        await cars[0].WaitForLineAsync("agent car-0: round 2 update Accepted", Step);
        await proxies[1].Down.WaitUntilPausedAsync(Step);
        await proxies[2].Up.WaitUntilPausedAsync(Step);
        await proxies[3].Up.WaitUntilPausedAsync(Step);
        Assert.False(aggregator.HasLine("round 2 applied"));
        aggregator.KillHard();

        // car-1 dies too before it hears its answer, and the broker's redelivery of that answer is lost: only a resend of the
        // folded update can empty its outbox, and the restarted aggregator must call it a duplicate.
        cars[1].KillHard();
        Assert.Equal(2, Assert.Single(rig.Outbox(1)).Round);
        proxies[1].Down.Resume();
        proxies[1].Down.DropNextPublish(rig.Topics.Inbox("car-1", "ack"));
        proxies[2].Up.Resume();
        proxies[3].Up.Resume();

        var restarted = rig.StartAggregator(rounds: 2, cohort4); // same database: round 2, then round 3
        var resumed = await restarted.WaitForLineAsync("aggregator: round 2 was open when the previous run stopped; resumed with the 2 updates it had folded (", Step);
        Assert.True(resumed.Contains("car-0", StringComparison.Ordinal) && resumed.Contains("car-1", StringComparison.Ordinal), resumed); // in fold order
        var car1Again = rig.StartAgent(1, proxies[1]);
        await car1Again.WaitForLineAsync("agent car-1: round 2 update Duplicate", Step);
        await cars[2].WaitForLineAsync("agent car-2: round 2 update Accepted", Step);
        await cars[3].WaitForLineAsync("agent car-3: round 2 update Accepted", Step);
        await restarted.WaitForLineAsync("aggregator: round 2 applied 4/4 updates; model 2.", Step);
        await restarted.WaitForLineAsync("aggregator: round 3 applied 4/4 updates; model 3.", Step);
        Assert.False(restarted.HasLine("recorded as aborted"));
        Assert.False(car1Again.HasLine("trained round 2")); // resent from the outbox, not trained again

        var metrics = await rig.MetricsAsync();
        Assert.Equal(2 + 4, metrics["fleetlearn_aggregator_updates_accepted_total"]); // this run: car-2's and car-3's, then round 3's
        Assert.True(metrics["fleetlearn_aggregator_updates_duplicate_total"] >= 1);
        Assert.False(metrics.ContainsKey("fleetlearn_aggregator_messages_rejected_total{reason=\"late\"}"));
        await AssertEndStateAsync(rig, 4, ("applied", 4, 0, 1), ("applied", 4, 1, 2), ("applied", 4, 2, 3));
    }

    /// <summary>
    /// The same kill during a SecAgg+ round with distributed DP, in each phase of the secure sum: the uplink of car-3 is held
    /// after it sent <paramref name="sent"/> SecAgg messages (none: the aggregator waits in AdvertiseKeys; its keys: in
    /// ShareKeys; keys and shares: in MaskedInputCollection); for Unmasking cars 1–3 hold everything after their masked
    /// input (their unmask answers), so that no secret can be rebuilt from car-0's shares alone. The aggregator is killed once /api/status shows it waiting in that
    /// phase. The restart does not resume the round (the server's share state lived in memory only): round 1 is recorded
    /// aborted before any sum was released, round 2 is applied with all four, and the aggregator's ledger charges every
    /// vehicle for round 2 only.
    /// </summary>
    [Theory]
    [Trait("Category", "Slow")]
    [InlineData(0, "AdvertiseKeys")]
    [InlineData(1, "ShareKeys")]
    [InlineData(2, "MaskedInputCollection")]
    [InlineData(3, "Unmasking")]
    public async Task Kill9Aggregator_InEachSecAggPhase_RoundAbortedBeforeUnmaskingNoEpsilonCharged(int sent, string phase)
    {
        await using var rig = new FaultRig(output);
        await rig.StartBrokerAsync();
        string ledger = Path.Combine(rig.Root, "aggregator", "aggregator-privacy.db");
        string[] secure =
        [
            "--Aggregator:CohortSize=4", "--Aggregator:MinParticipants=4", "--Aggregator:SecureAggregation=plus", "--Aggregator:SecAggNeighbors=2",
            "--Aggregator:Codec=q8", "--Aggregator:Privacy=distributed", "--Aggregator:NoiseMultiplier=1", "--Aggregator:ClipNorm=1",
            $"--Aggregator:PrivacyLedgerPath={ledger}",
        ];
        var aggregator = rig.StartAggregator(rounds: 2, secure);
        int[] held = phase == "Unmasking" ? [1, 2, 3] : [3];
        var proxies = held.ToDictionary(i => i, _ => rig.Proxy());
        foreach (var (i, proxy) in proxies)
        {
            string topic = rig.Topics.Up($"car-{i}", "secagg");
            // Held by what the message is, not by counting: a vehicle that hears nothing for a second resends its last message.
            switch (sent)
            {
                case 0: proxy.Up.PauseBeforePublish(topic); break;                        // its keys
                case 1: proxy.Up.PauseAfterPublishes(topic, 1); break;                    // its shares (a resend of the keys comes after the first one too)
                case 2: proxy.Up.PauseBeforeLargePublish(topic, 2_048); break;            // the masked input's first 8 KiB chunk
                default: proxy.Up.PauseBeforeSmallPublishAfterLarge(topic, 2_048); break; // the unmask answer, after the masked input
            }
        }
        var cars = Enumerable.Range(0, 4).Select(i => rig.StartAgent(i, proxies.GetValueOrDefault(i))).ToArray();
        foreach (var proxy in proxies.Values) await proxy.Up.WaitUntilPausedAsync(Step);
        var waitUntil = DateTime.UtcNow + Step;
        (long, string)? seen;
        while ((seen = await rig.PhaseAsync()) != (1L, phase))
        {
            if (DateTime.UtcNow > waitUntil) throw new TimeoutException($"The aggregator did not wait in {phase} within {Step} (last seen: {seen}).");
            await Task.Delay(100);
        }
        Assert.False(aggregator.HasLine("round 1 applied"));
        Assert.False(aggregator.HasLine("round 1 aborted"));
        aggregator.KillHard();
        foreach (var proxy in proxies.Values) proxy.Up.Resume();

        var restarted = rig.StartAggregator(rounds: 1, secure);
        await restarted.WaitForLineAsync("aggregator: round 1 was open when the previous run stopped; recorded as aborted: the aggregator restarted mid-round; a secure round is not resumed", Step);
        await restarted.WaitForLineAsync("aggregator: round 2 applied 4/4 updates; model 1.", Step);
        Assert.Equal([(1L, "aborted", 0, 0L, (long?)null), (2L, "applied", 4, 0L, (long?)1)], await rig.ApiRoundsAsync());
        rig.KillAll();
        using var charges = FleetLearn.Storage.LiteDbPrivacyLedgerStore.Open(ledger, new FleetLearn.Core.Privacy.PrivacyLedgerOptions(double.MaxValue, 1e-5));
        for (int i = 0; i < 4; i++) Assert.Equal([2L], charges.Get($"car-{i}").Rounds); // never round 1: its sum was never released
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Kill9Broker_MidRound_ClientsReconnectRoundCompletesAndNextRoundApplied(bool brokerStoresRetained)
    {
        await using var rig = new FaultRig(output);
        // Either the broker's retained store or the aggregator republishing must bring back the plan and the model;
        // each case switches the other one off, so that it proves its own mechanism.
        string[] brokerArgs = brokerStoresRetained ? [] : ["--retained-store", ""];
        var broker = await rig.StartBrokerAsync(brokerArgs);
        string[] aggregatorArgs = brokerStoresRetained ? ["--Mqtt:RepublishRetainedOnReconnect=false"] : [];
        var aggregator = rig.StartAggregator(rounds: 2, aggregatorArgs);
        var proxy0 = rig.Proxy();
        proxy0.Up.PauseAfterPublishes(rig.Topics.Up("car-0", "update"), 5); // car-0 is mid-upload when the broker dies
        var proxy1 = rig.Proxy();
        proxy1.Down.PauseBeforePublish(rig.Topics.RoundCurrent);            // car-1 never got the plan before the broker died
        var car0 = rig.StartAgent(0, proxy0);
        var car1 = rig.StartAgent(1, proxy1);

        await proxy0.Up.WaitUntilPausedAsync(Step);
        await proxy1.Down.WaitUntilPausedAsync(Step);
        int mark = aggregator.LineCount;
        broker.KillHard();
        proxy0.Up.Resume();
        proxy1.Down.Resume();

        var restarted = await rig.StartBrokerAsync(brokerArgs); // same port, same folder
        if (brokerStoresRetained) Assert.Matches(@"\(([1-9][0-9]*) restored", await restarted.WaitForLineAsync("broker: retained messages in", Step));
        await aggregator.WaitForLineAsync("(session present: False)", mark, Step); // the broker lost every session
        if (!brokerStoresRetained) await aggregator.WaitForLineAsync("MQTT aggregator: republished", mark, Step);
        await car1.WaitForLineAsync("agent car-1: round 1 update Accepted", Step);
        await car0.WaitForLineAsync("agent car-0: round 1 update Accepted", Step);
        await aggregator.WaitForLineAsync("aggregator: round 1 applied 2/2 updates; model 1.", Step);
        await aggregator.WaitForLineAsync("aggregator: round 2 applied 2/2 updates; model 2.", Step);
        await car0.WaitForLineAsync("agent car-0: round 2 update Accepted", Step);
        await car1.WaitForLineAsync("agent car-1: round 2 update Accepted", Step);
        Assert.Equal(!brokerStoresRetained, aggregator.HasLine("republished"));

        var metrics = await rig.MetricsAsync();
        Assert.Equal(4, metrics["fleetlearn_aggregator_updates_accepted_total"]);
        await AssertEndStateAsync(rig, 2, ("applied", 2, 0, 1), ("applied", 2, 1, 2));
    }

    /// <summary>
    /// The rounds as the HTTP API reports them and as the aggregator's LiteDB holds them after everything is killed, the
    /// newest model, and every vehicle's outbox empty.
    /// </summary>
    private static async Task AssertEndStateAsync(FaultRig rig, int agents, params (string Status, int Participants, long In, long? Out)[] expected)
    {
        var numbered = expected.Select((e, i) => ((long)i + 1, e.Status, e.Participants, e.In, e.Out)).ToList();
        Assert.Equal(numbered, await rig.ApiRoundsAsync());
        rig.KillAll();
        var (rounds, version) = rig.AggregatorStore();
        Assert.Equal(numbered, rounds.Select(r => (r.Round, r.Status.ToString().ToLowerInvariant(), r.Participants, r.ModelVersionIn, r.ModelVersionOut)));
        Assert.Equal(expected.Last(e => e.Out is not null).Out, version);
        for (int i = 0; i < agents; i++) Assert.Empty(rig.Outbox(i));
    }
}
