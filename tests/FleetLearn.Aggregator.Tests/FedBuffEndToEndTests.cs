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
/// Aggregator:Mode = fedbuff as deployed: agents nobody drives check in on their own resend passes, are handed a version and a
/// slot, train, upload, and the aggregator applies a step at every K-th update — over a real broker with real training.
/// </summary>
[Collection("Aggregator meter")]
public sealed class FedBuffEndToEndTests : IAsyncLifetime
{
    private const string Secret = "agg-secret";
    private const string Fleet = "fedbuff";
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);
    private readonly string _dir = Directory.CreateTempSubdirectory("fl-fedbuff-").FullName;
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
    public async Task FedBuffMode_ThreeUndrivenAgents_ThreeStepsOfTwoUpdatesStoredAndPublished()
    {
        using (SigningKeys.LoadOrCreate(Path.Combine(_dir, "signing.pem"))) { }
        var status = new AggregatorStatus();
        var events = new ConcurrentQueue<BufferedEvent>();
        status.BufferedHandled += events.Enqueue;
        var options = new AggregatorOptions
        {
            Model = "8-6-3",
            Mode = "fedbuff",
            CohortSize = 2, // K
            Concurrency = 2,
            Rounds = 3, // steps
            LocalEpochs = 1,
            Batch = 10,
            LearningRate = 0.1f,
            DatabasePath = Path.Combine(_dir, "agg.db"),
            SigningKeyPath = Path.Combine(_dir, "signing.pem"),
            OnnxFolder = null,
        };
        var aggregator = new AggregatorWorker(Options.Create(options), Options.Create(TestMqtt.Options(_broker.Port, Fleet, "aggregator", Secret)), status, TimeProvider.System, Logs.CreateLogger<AggregatorWorker>());
        await aggregator.StartAsync(CancellationToken.None);
        _started.Add(aggregator);
        await StartAgentsAsync(3);

        await status.Done.Task.WaitAsync(Timeout);

        var steps = status.Rounds;
        Assert.Equal(3, steps.Count);
        Assert.All(steps, r => Assert.Equal((RoundStatus.Applied, 2), (r.Status, r.Participants)));
        Assert.Equal([1L, 2L, 3L], steps.Select(r => r.ModelVersionOut!.Value));
        var updates = events.Where(e => e.Kind == BufferedEventKind.Update).ToArray();
        Assert.Equal(6, updates.Count(e => e.Admission.Status == AckStatus.Accepted));
        Assert.Equal(6, status.Staleness.Values.Sum());
        // Every accepted update came from a vehicle handed that slot; nobody ever held more than the concurrency.
        Assert.All(events, e => Assert.True(e.Progress.Training <= 2, $"{e.Progress.Training} training"));
        Assert.All(events.Where(e => e.Kind == BufferedEventKind.Answered && e.Admission.Status != AckStatus.Accepted), e => Assert.Equal(RejectReasons.Busy, e.Admission.Reason));
        await aggregator.StopAsync(CancellationToken.None);
        using var store = LiteDbRoundStore.Open(options.DatabasePath);
        Assert.Equal(3, store.LatestModel()!.Version);
    }

    [Fact]
    public async Task FedBuffMode_MonitoredVehicleChangesState_ChecksInAtOnceNotAtItsHourlyPass()
    {
        var (status, events) = await StartAggregatorAsync(steps: 0);
        using var monitor = new VehicleStateMonitor(new EligibilityOptions());
        monitor.Update(new VehicleState(Parked: false, Charging: false, Unmetered: false));
        await StartAgentsAsync(1, TimeSpan.FromHours(1), monitor);
        await WaitForAsync(events, e => e.Kind == BufferedEventKind.Withdrawn); // its first pass: not eligible, 0 samples

        monitor.Update(VehicleState.Idle);
        var answered = await WaitForAsync(events, e => e.Kind == BufferedEventKind.Answered);
        monitor.Update(new VehicleState(Parked: false, Charging: false, Unmetered: false));
        await WaitForAsync(events, e => e.Kind == BufferedEventKind.Withdrawn, skip: 1);

        Assert.Equal((AckStatus.Accepted, 0L, 0UL), (answered.Admission.Status, answered.Version, answered.Slot));
        Assert.Equal(0, status.Buffered!.Training); // withdrawn, or its update came first: either way its slot is free
    }

    [Fact]
    public async Task FedBuffMode_ParticipationCapAndBudget_HoldAcrossAnAggregatorRestart()
    {
        // Central DP, cap 1: both vehicles contribute to the one step, and the ledger (LiteDB) records it.
        var options = PrivateOptions(steps: 1);
        var (first, firstStatus, _) = await StartAggregatorAsync(options);
        await StartAgentsAsync(2);
        await firstStatus.Done.Task.WaitAsync(Timeout);
        await StopAsync(first);
        using (var ledger = LiteDbPrivacyLedgerStore.Open(options.PrivacyLedgerPath, new(double.MaxValue, options.Delta)))
            Assert.Equal([1, 1], new[] { "car-0", "car-1" }.Select(v => ledger.Get(v).Participations));

        // A restarted aggregator reads the cap from the ledger, not from what it counted since it started.
        var (second, _, events) = await StartAggregatorAsync(PrivateOptions(steps: 0));
        var answer = await WaitForAsync(events, e => e.Kind == BufferedEventKind.Answered);
        Assert.Equal((AckStatus.Rejected, RejectReasons.ParticipationCap), (answer.Admission.Status, answer.Admission.Reason));
        Assert.Contains("1 participations: the cap is 1", answer.Admission.Why, StringComparison.Ordinal);
        await StopAsync(second);

        // The same with a budget instead of a cap: one σ = 1 contribution already costs more than ε = 1 (at δ = 1e-5).
        var budget = PrivateOptions(steps: 0);
        budget.MaxParticipations = null;
        budget.EpsilonBudget = 1.0;
        var (_, _, budgetEvents) = await StartAggregatorAsync(budget);
        var refused = await WaitForAsync(budgetEvents, e => e.Kind == BufferedEventKind.Answered);
        Assert.Equal((AckStatus.Rejected, RejectReasons.ParticipationCap), (refused.Admission.Status, refused.Admission.Reason));
        Assert.Contains("privacy budget", refused.Admission.Why, StringComparison.Ordinal);
    }

    [Fact]
    public async Task FedBuffMode_AggregatorRestart_KeepsTheAcknowledgedButUnreleasedBuffer()
    {
        // K = 4 with three vehicles: each contributes once to the step, so the buffer holds 3 and waits for a fourth.
        var options = PrivateOptions(steps: 1);
        (options.Privacy, options.ClipNorm, options.MaxParticipations, options.CohortSize, options.Concurrency) = ("off", null, null, 4, 4);
        var (first, _, events) = await StartAggregatorAsync(options);
        await StartAgentsAsync(3);
        await WaitForAsync(events, e => e.Kind == BufferedEventKind.Update && e.Admission.Status == AckStatus.Accepted, skip: 2);
        await StopAsync(first);

        // The three acknowledged updates come back from the journal; the fourth vehicle's update releases the step.
        var (_, status, _) = await StartAggregatorAsync(options);
        // Running is set before the pump resumes from the journal; the buffer's progress appears once it has.
        for (var until = DateTime.UtcNow + Timeout; status.Buffered is null; await Task.Delay(20))
            Assert.True(DateTime.UtcNow < until, "the restarted aggregator never reported its buffer");
        Assert.Equal(3, status.Buffered.Buffered);
        await StartAgentsAsync(1, firstIndex: 3);
        await status.Done.Task.WaitAsync(Timeout);
        var step = Assert.Single(status.Rounds, r => r.Status == RoundStatus.Applied);
        Assert.Equal((4, 1L), (step.Participants, step.ModelVersionOut!.Value));
    }

    [Fact]
    public async Task FedBuffMode_VehicleDeclinesItsAssignment_ItsSlotIsFreedAtOnceNotWhenTheLeaseEnds()
    {
        // The vehicle's own floor asks for a cohort of 5; the buffer is 2: it declines every assignment (the lease is 1 h).
        var (status, events) = await StartAggregatorAsync(steps: 0);
        await StartAgentsAsync(1, configure: o => o.MinCohort = 5);
        var answered = await WaitForAsync(events, e => e.Kind == BufferedEventKind.Answered && e.Admission.Status == AckStatus.Accepted);
        var withdrawn = await WaitForAsync(events, e => e.Kind == BufferedEventKind.Withdrawn && e.Admission.Status == AckStatus.Accepted);

        Assert.Equal(("car-0", "car-0"), (answered.Vehicle, withdrawn.Vehicle));
        Assert.Equal(0, withdrawn.Progress.Training);
    }

    private async Task StopAsync(AggregatorWorker worker)
    {
        await worker.StopAsync(CancellationToken.None);
        _started.Remove(worker);
        worker.Dispose();
    }

    private AggregatorOptions PrivateOptions(int steps) => new()
    {
        Model = "8-6-3",
        Mode = "fedbuff",
        CohortSize = 2,
        Concurrency = 2,
        Rounds = steps,
        LocalEpochs = 1,
        Batch = 10,
        LearningRate = 0.1f,
        Privacy = "central",
        ClipNorm = 1,
        NoiseMultiplier = 1,
        MaxParticipations = 1,
        DatabasePath = Path.Combine(_dir, "agg.db"),
        PrivacyLedgerPath = Path.Combine(_dir, "agg-privacy.db"),
        SigningKeyPath = Path.Combine(_dir, "signing.pem"),
        OnnxFolder = null,
    };

    private async Task<(AggregatorWorker Worker, AggregatorStatus Status, ConcurrentQueue<BufferedEvent> Events)> StartAggregatorAsync(AggregatorOptions options)
    {
        using (SigningKeys.LoadOrCreate(options.SigningKeyPath)) { }
        var status = new AggregatorStatus();
        var events = new ConcurrentQueue<BufferedEvent>();
        status.BufferedHandled += events.Enqueue;
        var aggregator = new AggregatorWorker(Options.Create(options), Options.Create(TestMqtt.Options(_broker.Port, Fleet, "aggregator", Secret)), status, TimeProvider.System, Logs.CreateLogger<AggregatorWorker>());
        await aggregator.StartAsync(CancellationToken.None);
        _started.Add(aggregator);
        while (!status.Running) await Task.Delay(20);
        return (aggregator, status, events);
    }

    private static async Task<BufferedEvent> WaitForAsync(ConcurrentQueue<BufferedEvent> events, Func<BufferedEvent, bool> match, int skip = 0)
    {
        var until = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        BufferedEvent? found;
        while ((found = events.Where(match).Skip(skip).FirstOrDefault()) is null)
        {
            Assert.True(DateTime.UtcNow < until, "the aggregator never reported the expected FedBuff event");
            await Task.Delay(20);
        }
        return found;
    }

    private async Task<(AggregatorStatus Status, ConcurrentQueue<BufferedEvent> Events)> StartAggregatorAsync(int steps)
    {
        using (SigningKeys.LoadOrCreate(Path.Combine(_dir, "signing.pem"))) { }
        var status = new AggregatorStatus();
        var events = new ConcurrentQueue<BufferedEvent>();
        status.BufferedHandled += events.Enqueue;
        var options = new AggregatorOptions
        {
            Model = "8-6-3",
            Mode = "fedbuff",
            CohortSize = 2,
            Rounds = steps,
            DatabasePath = Path.Combine(_dir, "agg.db"),
            SigningKeyPath = Path.Combine(_dir, "signing.pem"),
            OnnxFolder = null,
        };
        var aggregator = new AggregatorWorker(Options.Create(options), Options.Create(TestMqtt.Options(_broker.Port, Fleet, "aggregator", Secret)), status, TimeProvider.System, Logs.CreateLogger<AggregatorWorker>());
        await aggregator.StartAsync(CancellationToken.None);
        _started.Add(aggregator);
        while (!status.Running) await Task.Delay(20);
        return (status, events);
    }

    private async Task StartAgentsAsync(int count, TimeSpan? resendInterval = null, VehicleStateMonitor? monitor = null, int firstIndex = 0, Action<EdgeAgentOptions>? configure = null)
    {
        using var key = SigningKeys.LoadOrCreate(Path.Combine(_dir, "signing.pem"));
        string publicKey = key.ExportSubjectPublicKeyInfoPem();
        var data = EndToEndTests.SyntheticData(600, seed: 3);
        var parts = FleetLearn.Core.Federated.Partitioner.Split(data.Labels, firstIndex + count, new PartitionScheme.Iid(), 7);
        for (int i = firstIndex; i < firstIndex + count; i++)
        {
            string id = $"car-{i}";
            var options = new EdgeAgentOptions
            {
                VehicleId = id,
                AggregatorPublicKey = publicKey,
                PinnedModelSpec = "8-6-3",
                DatabasePath = Path.Combine(_dir, $"{id}.db"),
                ResendInterval = resendInterval ?? TimeSpan.FromMilliseconds(500),
            };
            configure?.Invoke(options);
            var agent = new EdgeAgentWorker(Options.Create(options), Options.Create(TestMqtt.Options(_broker.Port, Fleet, id)), new VehicleDataset(data, parts[i]), TimeProvider.System,
                Logs.CreateLogger<EdgeAgentWorker>(), (IVehicleStateProvider?)monitor ?? VehicleStateProviders.Idle, monitor: monitor);
            await agent.StartAsync(CancellationToken.None);
            _started.Add(agent);
        }
    }
}
