using System.Collections.Concurrent;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Rounds;
using FleetLearn.EdgeAgent;
using FleetLearn.Storage;
using FleetLearn.Testing;
using FleetLearn.Transport.Mqtt;
using FleetLearn.Transport.Mqtt.Broker;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace FleetLearn.Aggregator.Tests;

/// <summary>
/// Aggregator:Mode = fedbuff with secure aggregation as deployed: agents nobody drives check in, join a forming group, get the
/// group's signed plan when it forms, run the secure round, and the aggregator applies each group's mean — over a real broker.
/// </summary>
[Collection("Aggregator meter")]
public sealed class SecureFedBuffEndToEndTests : IAsyncLifetime
{
    private const string Secret = "agg-secret";
    private const string Fleet = "secfedbuff";
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);
    private readonly string _dir = Directory.CreateTempSubdirectory("fl-secfedbuff-").FullName;
    private static readonly ILoggerFactory Logs = TestLogs.Factory;
    private readonly List<Microsoft.Extensions.Hosting.BackgroundService> _started = [];
    private EmbeddedBroker _broker = null!;

    public async Task InitializeAsync()
    {
        _broker = new EmbeddedBroker(new EmbeddedBrokerOptions { Port = 0, AggregatorPassword = Secret });
        await _broker.StartAsync();
    }

    public async Task DisposeAsync()
    {
        foreach (var worker in _started)
        {
            await worker.StopAsync(CancellationToken.None);
            worker.Dispose();
        }
        await _broker.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public async Task SecureFedBuff_FourUndrivenAgents_GroupsOfThreeFormApplyAndPublish()
    {
        var (aggregator, status, events) = await StartAggregatorAsync(SecureOptions(steps: 2));
        await StartAgentsAsync(4);

        await status.Done.Task.WaitAsync(Timeout);

        var applied = status.Rounds.Where(r => r.Status == RoundStatus.Applied).ToArray();
        Assert.Equal(2, applied.Length);
        Assert.All(applied, r => Assert.Equal(3, r.Participants)); // every member's masked input, the sum unmasked
        Assert.Equal([1L, 2L], applied.Select(r => r.ModelVersionOut!.Value).Order());
        var formed = events.Where(e => e.Kind == BufferedEventKind.GroupFormed).ToArray();
        Assert.True(formed.Length >= 2, $"{formed.Length} groups formed");
        var closed = events.Where(e => e.Kind == BufferedEventKind.GroupClosed && e.Step is RoundApplied).ToArray();
        Assert.Equal(2, closed.Length);
        Assert.All(closed, e => Assert.Equal(3, e.Step!.Contributors.Count));
        // A check-in was answered "joined" (waiting) or busy; nobody was ever held by two groups (the formation refuses it).
        Assert.All(events.Where(e => e.Kind == BufferedEventKind.Answered && e.Admission.Status != AckStatus.Accepted), e => Assert.Equal(RejectReasons.Busy, e.Admission.Reason));
        Assert.Equal(6, status.Staleness.Values.Sum());
        await StopAsync(aggregator);
        using var store = LiteDbRoundStore.Open(Path.Combine(_dir, "agg.db"));
        Assert.Equal(2, store.LatestModel()!.Version);
    }

    [Fact]
    public async Task SecureFedBuff_AggregatorRestartWithAGroupOpen_GroupAbortedCleanly_MembersJoinANewGroupThatApplies()
    {
        // The vehicles hold back training while "hold" is set: the first group stays open (waiting for masked inputs).
        var link = new HoldTraining { Hold = true };
        var (first, _, firstEvents) = await StartAggregatorAsync(SecureOptions(steps: 0));
        await StartAgentsAsync(3, link);
        var formed = await WaitForAsync(firstEvents, e => e.Kind == BufferedEventKind.GroupFormed);
        await StopAsync(first);
        long openRound;
        using (var store = LiteDbRoundStore.Open(Path.Combine(_dir, "agg.db")))
            openRound = Assert.Single(store.Rounds(), r => r.Status == RoundStatus.Open).Round;

        link.Hold = false;
        var (_, status, events) = await StartAggregatorAsync(SecureOptions(steps: 1));
        await status.Done.Task.WaitAsync(Timeout);

        var aborted = Assert.Single(status.Rounds, r => r.Round == openRound);
        Assert.Equal((RoundStatus.Aborted, RoundCoordinator.SecureRestartReason), (aborted.Status, aborted.Note));
        var step = Assert.Single(status.Rounds, r => r.Status == RoundStatus.Applied);
        Assert.True(step.Round > openRound);
        Assert.Equal((3, 1L), (step.Participants, step.ModelVersionOut!.Value));
        var closed = Assert.Single(events, e => e.Kind == BufferedEventKind.GroupClosed);
        Assert.Equal(["car-0", "car-1", "car-2"], closed.Step!.Contributors.Order(VehicleId.Order)); // the same members, in a new group
        Assert.Equal(0L, formed.Version);
    }

    [Fact]
    public async Task SecureFedBuff_TwoGroupsInFlightAtOnce_BothApply_TheLaterWithStalenessOne()
    {
        // Every vehicle's first step (keys and training) waits for the gate: the first group stays open while the second forms.
        var gate = new GateFirstStep();
        var (_, status, events) = await StartAggregatorAsync(SecureOptions(steps: 2));
        await StartAgentsAsync(6, gate);
        await WaitForAsync(events, e => e.Kind == BufferedEventKind.GroupFormed && e.Slot != events.First(f => f.Kind == BufferedEventKind.GroupFormed).Slot);
        Assert.DoesNotContain(events, e => e.Kind == BufferedEventKind.GroupClosed);
        gate.Open.TrySetResult();

        await status.Done.Task.WaitAsync(Timeout);

        var formed = events.Where(e => e.Kind == BufferedEventKind.GroupFormed).Take(2).ToArray();
        Assert.Equal([0L, 0L], formed.Select(e => e.Version)); // both formed on model 0
        Assert.Equal(6, events.Where(e => e.Kind == BufferedEventKind.GroupClosed).Sum(e => e.Step!.Contributors.Count));
        // The first group to close is applied fresh; the other, formed on model 0, is applied to model 1 with s(1) = 1/√2.
        Assert.Equal(new Dictionary<long, long> { [0] = 3, [1] = 3 }, status.Staleness);
        Assert.Equal([1L, 2L], status.Rounds.Where(r => r.Status == RoundStatus.Applied).Select(r => r.ModelVersionOut!.Value).Order()); // either group may close first
    }

    [Fact]
    public async Task SecureFedBuff_MemberWhoseFloorTheGroupMisses_DeclinesTheGroupsPlan_GroupGoesOnWithoutIt()
    {
        // car-0 asks for cohorts of at least 5 (its own floor); the group has 3. It declines the plan like a synchronous round's.
        var options = SecureOptions(steps: 0);
        options.PhaseTimeout = TimeSpan.FromSeconds(2); // the group waits this long for car-0's keys
        var (_, _, events) = await StartAggregatorAsync(options);
        var agents = await StartAgentsAsync(3, configure: (i, o) => o.MinCohort = i == 0 ? 5 : 1);

        var closed = await WaitForAsync(events, e => e.Kind == BufferedEventKind.GroupClosed);

        Assert.Equal(["car-1", "car-2"], closed.Step!.Contributors.Order(VehicleId.Order));
        Assert.IsType<RoundApplied>(closed.Step);
        Assert.True(agents[0].Declined >= 1);
        Assert.Equal((0, 0), (agents[0].RoundsTrained, agents[0].RoundsSent));
    }

    /// <summary>Holds each vehicle's first step until <see cref="Open"/> completes (the agent's loop waits; its check-ins go on).</summary>
    private sealed class GateFirstStep : IAgentLink
    {
        public TaskCompletionSource Open { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public async ValueTask<IReadOnlyList<VehicleEffect>> ShapeAsync(string vehicle, RoundPlan plan, IReadOnlyList<VehicleEffect> effects, CancellationToken cancellationToken)
        {
            await Open.Task.WaitAsync(cancellationToken);
            return effects;
        }
    }

    /// <summary>Withholds the vehicles' training while <see cref="Hold"/> is set (their round waits; the aggregator's group stays open).</summary>
    private sealed class HoldTraining : IAgentLink
    {
        public volatile bool Hold;

        public ValueTask<IReadOnlyList<VehicleEffect>> ShapeAsync(string vehicle, RoundPlan plan, IReadOnlyList<VehicleEffect> effects, CancellationToken cancellationToken) =>
            ValueTask.FromResult<IReadOnlyList<VehicleEffect>>(Hold ? [.. effects.Where(e => e is not TrainEffect)] : effects);
    }

    private AggregatorOptions SecureOptions(int steps) => new()
    {
        Model = "8-6-3",
        Mode = "fedbuff",
        SecureAggregation = "full",
        Codec = "q8",
        ClipNorm = 1,
        CohortSize = 3, // K; groups of 3
        Concurrency = 6,
        Rounds = steps,
        LocalEpochs = 1,
        Batch = 10,
        LearningRate = 0.1f,
        DatabasePath = Path.Combine(_dir, "agg.db"),
        SigningKeyPath = Path.Combine(_dir, "signing.pem"),
        OnnxFolder = null,
    };

    private async Task<(AggregatorWorker Worker, AggregatorStatus Status, ConcurrentQueue<BufferedEvent> Events)> StartAggregatorAsync(AggregatorOptions options)
    {
        using (SigningKeys.LoadOrCreate(options.SigningKeyPath)) { }
        var status = new AggregatorStatus();
        var events = new ConcurrentQueue<BufferedEvent>();
        status.BufferedHandled += events.Enqueue;
        var aggregator = new AggregatorWorker(Microsoft.Extensions.Options.Options.Create(options), Microsoft.Extensions.Options.Options.Create(TestMqtt.Options(_broker.Port, Fleet, "aggregator", Secret)),
            status, TimeProvider.System, Logs.CreateLogger<AggregatorWorker>());
        await aggregator.StartAsync(CancellationToken.None);
        _started.Add(aggregator);
        while (!status.Running) await Task.Delay(20);
        return (aggregator, status, events);
    }

    private async Task StopAsync(AggregatorWorker worker)
    {
        await worker.StopAsync(CancellationToken.None);
        _started.Remove(worker);
        worker.Dispose();
    }

    private static async Task<BufferedEvent> WaitForAsync(ConcurrentQueue<BufferedEvent> events, Func<BufferedEvent, bool> match)
    {
        var until = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        BufferedEvent? found;
        while ((found = events.FirstOrDefault(match)) is null)
        {
            Assert.True(DateTime.UtcNow < until, "the aggregator never reported the expected FedBuff event");
            await Task.Delay(20);
        }
        return found;
    }

    private async Task<List<EdgeAgentWorker>> StartAgentsAsync(int count, IAgentLink? link = null, Action<int, EdgeAgentOptions>? configure = null)
    {
        var agents = new List<EdgeAgentWorker>();
        using var key = SigningKeys.LoadOrCreate(Path.Combine(_dir, "signing.pem"));
        string publicKey = key.ExportSubjectPublicKeyInfoPem();
        var data = EndToEndTests.SyntheticData(600, seed: 3);
        var parts = FleetLearn.Core.Federated.Partitioner.Split(data.Labels, count, new PartitionScheme.Iid(), 7);
        for (int i = 0; i < count; i++)
        {
            string id = $"car-{i}";
            var options = new EdgeAgentOptions
            {
                VehicleId = id,
                AggregatorPublicKey = publicKey,
                PinnedModelSpec = "8-6-3",
                DatabasePath = Path.Combine(_dir, $"{id}.db"),
                ResendInterval = TimeSpan.FromMilliseconds(500),
            };
            configure?.Invoke(i, options);
            var agent = new EdgeAgentWorker(Microsoft.Extensions.Options.Options.Create(options), Microsoft.Extensions.Options.Options.Create(TestMqtt.Options(_broker.Port, Fleet, id)),
                new VehicleDataset(data, parts[i]), TimeProvider.System, Logs.CreateLogger<EdgeAgentWorker>(), VehicleStateProviders.Idle, link: link);
            await agent.StartAsync(CancellationToken.None);
            _started.Add(agent);
            agents.Add(agent);
        }
        return agents;
    }
}
