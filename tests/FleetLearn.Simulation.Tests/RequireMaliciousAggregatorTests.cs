using System.Collections.Concurrent;
using FleetLearn.Aggregator;
using FleetLearn.Core.Model;
using FleetLearn.Core.Training;
using FleetLearn.EdgeAgent;
using FleetLearn.Testing;
using FleetLearn.Transport.Mqtt;
using FleetLearn.Transport.Mqtt.Broker;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace FleetLearn.Simulation.Tests;

/// <summary>
/// Agent:RequireMaliciousAggregator over a real broker (issue 13 item 5): the embedded broker with mutual TLS against a device
/// CA, a real aggregator that opens an honest-but-curious secure round for three certified vehicles, and one agent that
/// requires malicious-aggregator mode. That agent refuses the plan with its reason in the log and sends nothing for the
/// round, while the other two answer it; a second aggregator identity watches every vehicle's uplink.
/// </summary>
public sealed class RequireMaliciousAggregatorTests : IAsyncLifetime
{
    private const string Fleet = "hardened";
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);
    private static readonly ModelSpec Spec = ModelSpec.Parse("8-6-3");
    private readonly string _dir = Directory.CreateTempSubdirectory("fl-require-malicious-").FullName;
    private readonly List<IAsyncDisposable> _owned = [];
    private readonly List<Microsoft.Extensions.Hosting.BackgroundService> _workers = [];
    private readonly ConcurrentQueue<string> _uplinkTopics = new();
    private readonly ConcurrentQueue<string> _agentLog = new();
    private readonly ChangeSignal _progress = new();
    private EmbeddedBroker _broker = null!;

    private string Certificates => Path.Combine(_dir, "certs");

    public async Task InitializeAsync()
    {
        SimulationCertificates.Write(Certificates, ["vehicle-0", "vehicle-1", "vehicle-2", "observer"]);
        _broker = new EmbeddedBroker(new EmbeddedBrokerOptions
        {
            Port = 0,
            TlsCertificateFile = Path.Combine(Certificates, "broker.crt"),
            TlsKeyFile = Path.Combine(Certificates, "broker.key"),
            ClientCaFile = Path.Combine(Certificates, "ca.crt"),
            AggregatorIdentities = ["aggregator", "observer"],
        });
        await _broker.StartAsync();
        using (SigningKeys.LoadOrCreate(Path.Combine(_dir, "signing.pem"))) { } // before any worker starts: nobody races to create it
        var observer = new MqttConnection(Mqtt("observer"));
        _owned.Add(observer);
        observer.MessageReceived += m =>
        {
            _uplinkTopics.Enqueue(m.Topic);
            _progress.Pulse();
            return Task.CompletedTask;
        };
        await observer.SubscribeAsync(observer.Topics.AllUp, CancellationToken.None);
        observer.Start();
        using var cts = new CancellationTokenSource(Timeout);
        await observer.WaitUntilConnectedAsync(cts.Token);
    }

    public async Task DisposeAsync()
    {
        foreach (var worker in Enumerable.Reverse(_workers))
        {
            await worker.StopAsync(CancellationToken.None);
            worker.Dispose();
        }
        foreach (var owned in _owned) await owned.DisposeAsync();
        await _broker.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public async Task HonestSecurePlan_AgentRequiringMaliciousAggregatorMode_RefusesWithReasonAndSendsNothing()
    {
        await StartAggregatorAsync();
        var strict = await StartAgentAsync(0, requireMaliciousAggregator: true);
        await StartAgentAsync(1, requireMaliciousAggregator: false);
        await StartAgentAsync(2, requireMaliciousAggregator: false);
        var topics = new FleetTopics(Fleet);

        // The round was opened for all three (the two others advertise their round keys), and the strict one declined it.
        await _progress.UntilAsync(() => strict.Declined == 1 && _uplinkTopics.Contains(topics.Up("vehicle-1", "secagg")) && _uplinkTopics.Contains(topics.Up("vehicle-2", "secagg")),
            "vehicle-0 to decline and vehicles 1 and 2 to answer the key exchange", Timeout);

        Assert.Contains(_agentLog, line => line == "agent vehicle-0: declines round 1: the plan does not run against a malicious aggregator (certified keys, consistency round, signed downlink) and this vehicle requires it");
        Assert.DoesNotContain(_uplinkTopics, t => t.Contains("/vehicles/vehicle-0/up/", StringComparison.Ordinal));
        Assert.Equal(0, strict.RoundsSent);
        Assert.Equal(0, strict.RoundsTrained);
        Assert.Equal(0, strict.PendingInOutbox);
        Assert.Equal(0, strict.Acknowledged);
    }

    /// <summary>Mutual TLS: the client's certificate is its identity (and, for a vehicle, its certified device key).</summary>
    private MqttTransportOptions Mqtt(string clientId)
    {
        var options = TestMqtt.Options(_broker.Port, Fleet, clientId);
        options.UseTls = true;
        options.CaFile = Path.Combine(Certificates, "ca.crt");
        options.CertFile = Path.Combine(Certificates, $"{clientId}.crt");
        options.KeyFile = Path.Combine(Certificates, $"{clientId}.key");
        return options;
    }

    private async Task StartAggregatorAsync()
    {
        var options = new AggregatorOptions
        {
            Model = Spec.ToString(),
            CohortSize = 3,
            MinParticipants = 3,
            Rounds = 1,
            RoundTimeout = Timeout,
            CohortWait = Timeout,
            PhaseTimeout = Timeout,
            LocalEpochs = 1,
            Batch = 10,
            LearningRate = 0.1f,
            ClipNorm = 1,
            SecureAggregation = "full",
            DeviceCaFile = Path.Combine(Certificates, "ca.crt"),
            DatabasePath = Path.Combine(_dir, "aggregator.db"),
            PrivacyLedgerPath = Path.Combine(_dir, "aggregator-privacy.db"),
            SigningKeyPath = Path.Combine(_dir, "signing.pem"),
            OnnxFolder = null,
        };
        var worker = new AggregatorWorker(Options.Create(options), Options.Create(Mqtt("aggregator")), new AggregatorStatus(), TimeProvider.System, SimulationTestData.Logs.CreateLogger<AggregatorWorker>());
        _workers.Add(worker);
        await worker.StartAsync(CancellationToken.None);
    }

    private async Task<EdgeAgentWorker> StartAgentAsync(int index, bool requireMaliciousAggregator)
    {
        using var key = SigningKeys.LoadOrCreate(Path.Combine(_dir, "signing.pem"));
        string id = $"vehicle-{index}";
        var options = new EdgeAgentOptions
        {
            VehicleId = id,
            AggregatorPublicKey = key.ExportSubjectPublicKeyInfoPem(),
            PinnedModelSpec = Spec.ToString(),
            DatabasePath = Path.Combine(_dir, $"{id}.db"),
            PrivacyLedgerPath = Path.Combine(_dir, $"{id}-privacy.db"),
            ResendInterval = TimeSpan.FromSeconds(1),
            RequireMaliciousAggregator = requireMaliciousAggregator,
        };
        var agent = new EdgeAgentWorker(Options.Create(options), Options.Create(Mqtt(id)), new VehicleDataset(Data, [.. Enumerable.Range(index * 20, 20)]), TimeProvider.System,
            new CapturingLogger(_agentLog, SimulationTestData.Logs.CreateLogger<EdgeAgentWorker>()), VehicleStateProviders.Idle);
        agent.Progressed += _progress.Pulse;
        _workers.Add(agent);
        await agent.StartAsync(CancellationToken.None);
        return agent;
    }

    /// <summary>60 rows of 8 features and 3 classes, 20 per vehicle (what they learn does not matter here).</summary>
    private static LabeledData Data { get; } = new([.. Enumerable.Range(0, 60 * 8).Select(i => (float)Math.Sin(i))], [.. Enumerable.Range(0, 60).Select(i => (byte)(i % 3))], 8, 3);

    /// <summary>Keeps every agent log line and forwards it.</summary>
    private sealed class CapturingLogger(ConcurrentQueue<string> lines, ILogger<EdgeAgentWorker> inner) : ILogger<EdgeAgentWorker>
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            lines.Enqueue(formatter(state, exception));
            inner.Log(logLevel, eventId, state, exception, formatter);
        }
    }
}
