using FleetLearn.Core.Federated;
using FleetLearn.Core.Model;
using FleetLearn.Core.Training;
using FleetLearn.EdgeAgent;
using FleetLearn.Storage;
using FleetLearn.Testing;
using FleetLearn.Transport.Mqtt;
using FleetLearn.Transport.Mqtt.Broker;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace FleetLearn.Aggregator.Tests;

/// <summary>Idle agents close their database files (issue 16 item 3): those a round does not select, and those whose round is over.</summary>
[Collection("Aggregator meter")]
public sealed class IdleAgentTests : IAsyncLifetime
{
    private const string Secret = "agg-secret";
    private const string Fleet = "idle";
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);
    private readonly string _dir = Directory.CreateTempSubdirectory("fl-idle-").FullName;
    private readonly List<Microsoft.Extensions.Hosting.BackgroundService> _started = [];
    private readonly ChangeSignal _progress = new();
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
    public async Task Round_CohortTwoOfFour_UnselectedHoldNoDatabaseFile_SelectedEndReleased()
    {
        var status = StartAggregator(cohort: 2);
        var agents = await StartAgentsAsync(4);
        await status.Done.Task.WaitAsync(Timeout);
        Assert.Equal(RoundStatus.Applied, Assert.Single(status.Rounds).Status);

        var selected = agents.Where(a => a.RoundsTrained == 1).ToList();
        var unselected = agents.Where(a => a.RoundsTrained == 0).ToList();
        Assert.Equal(2, selected.Count);
        Assert.Equal(2, unselected.Count);
        foreach (var a in selected) await _progress.UntilAsync(() => a.Acknowledged == 1, $"{a.VehicleId}'s update to be acknowledged", Timeout);
        foreach (var a in agents)
            await _progress.UntilAsync(() => Handles(a.VehicleId).Count == 0, $"{a.VehicleId} to close its database files (open: {string.Join(", ", Handles(a.VehicleId))})", Timeout);

        // Released, the stores still answer: nothing left to send, ε as charged (no DP here: 0).
        Assert.All(agents, a => Assert.Equal(0, a.PendingInOutbox));
        Assert.All(agents, a => Assert.Equal(0.0, a.EpsilonSpent));
        Assert.All(agents, a => Assert.Empty(Handles(a.VehicleId)));
        foreach (var a in agents) await a.StopAsync(CancellationToken.None);

        // What the selected ones wrote before releasing is on disk: the round they joined, read by a fresh open.
        foreach (var a in selected)
        {
            using var outbox = LiteDbOutbox.Open(Path.Combine(_dir, $"{a.VehicleId}.db"));
            Assert.Equal(1, outbox.GetState("last-round"));
            Assert.Equal(0, outbox.Count);
        }
    }

    /// <summary>This process's descriptors on the vehicle's files (outbox, ledger, their logs, the mirror), from /proc/self/fd (Linux).</summary>
    private List<string> Handles(string vehicle)
    {
        Assert.True(OperatingSystem.IsLinux(), "reads /proc/self/fd");
        var open = new List<string>();
        foreach (var fd in Directory.EnumerateFileSystemEntries("/proc/self/fd"))
        {
            string? target;
            try
            {
                target = new FileInfo(fd).LinkTarget;
            }
            catch (IOException)
            {
                continue; // closed while listed
            }
            if (target is not null && (target.StartsWith(Path.Combine(_dir, vehicle) + ".", StringComparison.Ordinal) || target.StartsWith(Path.Combine(_dir, vehicle) + "-", StringComparison.Ordinal)))
                open.Add(Path.GetFileName(target));
        }
        return open;
    }

    private MqttTransportOptions Mqtt(string clientId, string? password = null) => TestMqtt.Options(_broker.Port, Fleet, clientId, password);

    private string KeyPath => Path.Combine(_dir, "signing.pem");

    private AggregatorStatus StartAggregator(int cohort)
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
            Rounds = 1,
            RoundTimeout = Timeout,
            CohortWait = Timeout,
            LocalEpochs = 1,
            Batch = 10,
            LearningRate = 0.1f,
            DatabasePath = Path.Combine(_dir, "agg.db"),
            SigningKeyPath = KeyPath,
        };
        var worker = new AggregatorWorker(Options.Create(options), Options.Create(Mqtt("aggregator", Secret)), status, TimeProvider.System, TestLogs.Factory.CreateLogger<AggregatorWorker>());
        worker.StartAsync(CancellationToken.None).GetAwaiter().GetResult();
        _started.Add(worker);
        return status;
    }

    private async Task<List<EdgeAgentWorker>> StartAgentsAsync(int count)
    {
        using var key = SigningKeys.LoadOrCreate(KeyPath);
        string publicKey = key.ExportSubjectPublicKeyInfoPem();
        var data = EndToEndTests.SyntheticData(400, seed: 3);
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
            var agent = new EdgeAgentWorker(Options.Create(options), Options.Create(Mqtt(id)), new VehicleDataset(data, parts[i]), TimeProvider.System, TestLogs.Factory.CreateLogger<EdgeAgentWorker>());
            agent.Progressed += _progress.Pulse;
            await agent.StartAsync(CancellationToken.None);
            _started.Add(agent);
            agents.Add(agent);
        }
        return agents;
    }
}
