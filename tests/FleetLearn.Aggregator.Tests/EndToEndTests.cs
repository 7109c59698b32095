using FleetLearn.Core.Federated;
using FleetLearn.Core.Model;
using FleetLearn.Core.Training;
using FleetLearn.EdgeAgent;
using FleetLearn.Storage;
using FleetLearn.Transport.Mqtt;
using FleetLearn.Transport.Mqtt.Broker;
using Microsoft.Extensions.Logging;
using FleetLearn.Testing;
using Microsoft.Extensions.Options;

namespace FleetLearn.Aggregator.Tests;

/// <summary>Agents and the aggregator over a real in-process broker on a loopback port, with real training.</summary>
// Every AggregatorStatus creates the meter "FleetLearn.Aggregator", and an OpenTelemetry MeterProvider subscribes by name:
// status objects of tests running in parallel would be read by each other's /metrics (one aggregator per process is the product's shape).
[Collection("Aggregator meter")]
public sealed class EndToEndTests : IAsyncLifetime
{
    private const string Secret = "agg-secret";
    private const string Fleet = "e2e";
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);
    private readonly string _dir = Directory.CreateTempSubdirectory("fl-e2e-").FullName;
    private static readonly ILoggerFactory Logs = TestLogs.Factory;
    private readonly List<Microsoft.Extensions.Hosting.BackgroundService> _started = [];
    private readonly ChangeSignal _progress = new(); // pulsed by every agent after each message it handled
    private EmbeddedBroker _broker = null!;

    public async Task InitializeAsync()
    {
        _broker = new EmbeddedBroker(new EmbeddedBrokerOptions { Port = 0, AggregatorPassword = Secret });
        await _broker.StartAsync();
    }

    public async Task DisposeAsync()
    {
        // Stops whatever a failed test left running (stopping twice is harmless).
        foreach (var worker in _started)
        {
            await worker.StopAsync(CancellationToken.None);
            worker.Dispose();
        }
        await _broker.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public async Task Aggregator_ThreeAgents_CompleteTwoRoundsAndModelChanges()
    {
        var (status, aggregator) = StartAggregator(rounds: 2);
        var agents = await StartAgentsAsync(3);
        using var cts = new CancellationTokenSource(Timeout);
        await status.Done.Task.WaitAsync(cts.Token);

        var rounds = status.Rounds;
        Assert.Equal([1L, 2L], rounds.Select(r => r.Round));
        Assert.All(rounds, r => Assert.Equal(RoundStatus.Applied, r.Status));
        Assert.All(rounds, r => Assert.Equal(3, r.Participants));
        var initial = ModelInitializer.Initialize(ModelSpec.Parse("8-6-3"), 1);
        Assert.True(status.Closed.TryRead(out var first));
        Assert.True(status.Closed.TryRead(out var second));
        Assert.NotEqual(initial, first.Model);
        Assert.NotEqual(first.Model, second.Model);
        Assert.Equal(6, status.AcceptedUpdates);
        Assert.Equal(0, status.RejectedMessages);

        await aggregator.StopAsync(CancellationToken.None);
        foreach (var a in agents)
        {
            await _progress.UntilAsync(() => a.Acknowledged == 2, $"{a.VehicleId}'s two updates to be acknowledged", Timeout);
            Assert.Equal(2, a.RoundsTrained);
            // The vehicle evaluated the global model through ONNX Runtime on its own 20 hold-out rows.
            Assert.NotNull(a.LastEvaluation);
            Assert.Equal(20, a.LastEvaluation!.Count);
            Assert.InRange(a.LastEvaluation.Accuracy, 0.0, 1.0);
            Assert.Equal(a.LastEvaluation.Accuracy, a.LastEvaluation.ReportedAccuracy);
            await a.StopAsync(CancellationToken.None);
        }
        using var store = LiteDbRoundStore.Open(Path.Combine(_dir, "agg.db"));
        Assert.Equal(2, store.LatestModel()!.Version);
        Assert.Equal(second.Model, store.LatestModel()!.Parameters);
        // Every published model is also exported as ONNX, carrying the hash of its parameters.
        foreach (var version in new[] { 0, 1, 2 })
            Assert.True(File.Exists(Path.Combine(_dir, "onnx", $"model-v{version}.onnx")), $"model-v{version}.onnx missing");
        var onnxBytes = File.ReadAllBytes(Path.Combine(_dir, "onnx", "model-v2.onnx"));
        var hash = FleetLearn.Onnx.OnnxExporter.ParameterHash(second.Model);
        Assert.True(System.Text.Encoding.ASCII.GetString(onnxBytes).Contains(hash, StringComparison.Ordinal), "the ONNX metadata must carry the parameter hash");
        foreach (var a in agents) a.Dispose();
        aggregator.Dispose();
    }

    [Fact]
    public async Task Aggregator_Restarted_ResumesFromStoredModel()
    {
        var (status, aggregator) = StartAggregator(rounds: 1, cohort: 2);
        var agents = await StartAgentsAsync(2);
        using var cts = new CancellationTokenSource(Timeout);
        await status.Done.Task.WaitAsync(cts.Token);
        await aggregator.StopAsync(CancellationToken.None);
        aggregator.Dispose();

        var (again, restarted) = StartAggregator(rounds: 1, cohort: 2);
        await again.Done.Task.WaitAsync(cts.Token);
        var record = again.Rounds[^1];
        Assert.Equal(2, record.Round);
        Assert.Equal(1, record.ModelVersionIn);
        Assert.Equal(RoundStatus.Applied, record.Status);
        await restarted.StopAsync(CancellationToken.None);
        restarted.Dispose();
        foreach (var a in agents)
        {
            await a.StopAsync(CancellationToken.None);
            a.Dispose();
        }
    }

    [Fact]
    public async Task Aggregator_VehicleClocksTenMinutesFastAndSlow_AllContribute_AndBothAreReportedSkewed()
    {
        // Fault row "clock skew ±10 min": before, deadlines were the aggregator's instants compared with the vehicle's clock,
        // and car-1 (10 minutes fast) dropped every round ("the deadline passed before the model arrived").
        var (status, aggregator) = StartAggregator(rounds: 2);
        var agents = await StartAgentsAsync(3, i => i switch { 1 => new SkewedClock(TimeSpan.FromMinutes(10)), 2 => new SkewedClock(TimeSpan.FromMinutes(-10)), _ => TimeProvider.System });
        using var cts = new CancellationTokenSource(Timeout);
        await status.Done.Task.WaitAsync(cts.Token);

        Assert.All(status.Rounds, r => Assert.Equal((RoundStatus.Applied, 3), (r.Status, r.Participants)));
        Assert.Equal(2, status.Rounds.Count);
        Assert.Equal(2, status.ClockSkewedVehicles);
        var skew = status.Vehicles.ToDictionary(v => v.Vehicle, v => v.ClockSkewSeconds);
        Assert.InRange(skew["car-0"]!.Value, -30, 30);
        Assert.InRange(skew["car-1"]!.Value, 570, 630);
        Assert.InRange(skew["car-2"]!.Value, -630, -570);
        await aggregator.StopAsync(CancellationToken.None);
        foreach (var a in agents)
        {
            Assert.Equal(0, a.Declined);
            await a.StopAsync(CancellationToken.None);
            a.Dispose();
        }
        aggregator.Dispose();
    }

    /// <summary>A vehicle's clock: the wall clock <paramref name="offset"/> off, timers and the monotonic clock the system's.</summary>
    private sealed class SkewedClock(TimeSpan offset) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => System.GetUtcNow() + offset;
    }

    private MqttTransportOptions Mqtt(string clientId, string? password = null) => TestMqtt.Options(_broker.Port, Fleet, clientId, password);

    private string KeyPath => Path.Combine(_dir, "signing.pem");

    private (AggregatorStatus Status, AggregatorWorker Worker) StartAggregator(int rounds, int cohort = 3)
    {
        using (SigningKeys.LoadOrCreate(KeyPath))
        {
            // created before the worker starts, so the test and the worker never race to create it
        }
        var status = new AggregatorStatus();
        var options = new AggregatorOptions
        {
            Model = "8-6-3",
            CohortSize = cohort,
            MinParticipants = cohort,
            Rounds = rounds,
            RoundTimeout = Timeout,
            CohortWait = Timeout,
            LocalEpochs = 2,
            Batch = 10,
            LearningRate = 0.1f,
            DatabasePath = Path.Combine(_dir, "agg.db"),
            SigningKeyPath = KeyPath,
            OnnxFolder = Path.Combine(_dir, "onnx"),
        };
        var worker = new AggregatorWorker(Options.Create(options), Options.Create(Mqtt("aggregator", Secret)), status, TimeProvider.System, Logs.CreateLogger<AggregatorWorker>());
        worker.StartAsync(CancellationToken.None).GetAwaiter().GetResult();
        _started.Add(worker);
        return (status, worker);
    }

    private async Task<List<EdgeAgentWorker>> StartAgentsAsync(int count, Func<int, TimeProvider>? clocks = null)
    {
        using var key = SigningKeys.LoadOrCreate(KeyPath);
        string publicKey = key.ExportSubjectPublicKeyInfoPem();
        var data = SyntheticData(600, seed: 3);
        var parts = Partitioner.Split(data.Labels, count, new PartitionScheme.Iid(), 7);
        var agents = new List<EdgeAgentWorker>();
        for (int i = 0; i < count; i++)
        {
            string id = $"car-{i}";
            var options = new EdgeAgentOptions
            {
                VehicleId = id,
                AggregatorPublicKey = publicKey,
                PinnedModelSpec = "8-6-3",
                DatabasePath = Path.Combine(_dir, $"{id}.db"),
                ResendInterval = TimeSpan.FromSeconds(2),
            };
            var agent = new EdgeAgentWorker(Options.Create(options), Options.Create(Mqtt(id)), new VehicleDataset(data, parts[i][..^20], parts[i][^20..]), clocks?.Invoke(i) ?? TimeProvider.System, Logs.CreateLogger<EdgeAgentWorker>());
            agent.Progressed += _progress.Pulse;
            await agent.StartAsync(CancellationToken.None);
            _started.Add(agent);
            agents.Add(agent);
        }
        return agents;
    }

    /// <summary>Three separable Gaussian blobs in 8 dimensions.</summary>
    internal static LabeledData SyntheticData(int rows, int seed)
    {
        var rng = new Random(seed);
        var features = new float[rows * 8];
        var labels = new byte[rows];
        for (int r = 0; r < rows; r++)
        {
            int c = r % 3;
            labels[r] = (byte)c;
            for (int j = 0; j < 8; j++) features[r * 8 + j] = (float)(rng.NextDouble() - 0.5) + (j % 3 == c ? 1.5f : 0f);
        }
        return new LabeledData(features, labels, 8, 3, "synthetic");
    }
}
