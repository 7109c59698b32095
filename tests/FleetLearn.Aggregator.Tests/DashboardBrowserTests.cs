using FleetLearn.Core.Federated;
using FleetLearn.EdgeAgent;
using FleetLearn.Transport.Mqtt;
using FleetLearn.Transport.Mqtt.Broker;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using PuppeteerSharp;

namespace FleetLearn.Aggregator.Tests;

/// <summary>
/// The dashboard in a real browser: Debian's chromium (headless, driven over the DevTools protocol by PuppeteerSharp,
/// nothing downloaded) watches an aggregator train with three agents over a real broker. Skipped where chromium is
/// missing, except in CI (CI=true), where scripts/install-deps.sh installs it and a missing one is a failure.
/// </summary>
// Every AggregatorStatus creates the meter "FleetLearn.Aggregator", and an OpenTelemetry MeterProvider subscribes by name:
// status objects of tests running in parallel would be read by each other's /metrics (one aggregator per process is the product's shape).
[Collection("Aggregator meter")]
public sealed class DashboardBrowserTests : IAsyncLifetime
{
    private const string Chromium = "/usr/bin/chromium";
    private const string Secret = "dashboard-secret";
    private const string Fleet = "dash";
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(120);
    private static readonly ILoggerFactory Logs = TestLogs.Factory;
    private readonly string _dir = Directory.CreateTempSubdirectory("fl-dash-").FullName;
    private readonly List<Microsoft.Extensions.Hosting.IHostedService> _started = [];
    private EmbeddedBroker _broker = null!;

    public async Task InitializeAsync()
    {
        _broker = new EmbeddedBroker(new EmbeddedBrokerOptions { Port = 0, AggregatorPassword = Secret, AggregatorIdentities = ["aggregator", "eval-relay"] });
        await _broker.StartAsync();
    }

    public async Task DisposeAsync()
    {
        foreach (var service in Enumerable.Reverse(_started))
        {
            await service.StopAsync(CancellationToken.None);
            if (service is IAsyncDisposable a) await a.DisposeAsync();
            else (service as IDisposable)?.Dispose();
        }
        await _broker.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    [SkippableFact]
    public async Task Dashboard_InChromium_RoundAdvancesAccuracyChartHasPointsNoConsoleErrors()
    {
        if (!File.Exists(Chromium))
        {
            if (Environment.GetEnvironmentVariable("CI") == "true") throw new InvalidOperationException("CI must have chromium (scripts/install-deps.sh installs it).");
            Skip.If(true, "chromium is not installed (scripts/install-deps.sh installs it)");
        }
        using var cts = new CancellationTokenSource(Timeout);
        var status = new AggregatorStatus();
        var key = Path.Combine(_dir, "signing.pem");
        string publicKey;
        using (var signing = SigningKeys.LoadOrCreate(key)) publicKey = signing.ExportSubjectPublicKeyInfoPem();
        var options = new AggregatorOptions
        {
            Model = "8-6-3",
            CohortSize = 3,
            MinParticipants = 3,
            Rounds = 0, // until stopped: the page must see the round number move
            RoundTimeout = Timeout,
            CohortWait = Timeout,
            LocalEpochs = 2,
            LearningRate = 0.1f,
            DatabasePath = Path.Combine(_dir, "agg.db"),
            SigningKeyPath = key,
            OnnxFolder = null,
            HttpPort = Transport.Mqtt.Broker.EmbeddedBroker.FreePort(),
        };
        Start(new AggregatorWorker(Options.Create(options), Options.Create(Mqtt("aggregator", Secret)), status, TimeProvider.System, Logs.CreateLogger<AggregatorWorker>()));
        var http = Start(new AggregatorHttpService(Options.Create(options), status, Logs));
        await RelayEvaluationsAsync(status, cts.Token);
        var data = EndToEndTests.SyntheticData(600, seed: 3);
        var parts = Partitioner.Split(data.Labels, 3, new PartitionScheme.Iid(), 7);
        for (int i = 0; i < 3; i++)
        {
            var agent = new EdgeAgentOptions { VehicleId = $"car-{i}", AggregatorPublicKey = publicKey, PinnedModelSpec = "8-6-3", DatabasePath = Path.Combine(_dir, $"car-{i}.db"), ResendInterval = TimeSpan.FromSeconds(2) };
            Start(new EdgeAgentWorker(Options.Create(agent), Options.Create(Mqtt(agent.VehicleId)), new VehicleDataset(data, parts[i][..^20], parts[i][^20..]), TimeProvider.System, Logs.CreateLogger<EdgeAgentWorker>()));
        }
        await http.Listening.WaitAsync(cts.Token);

        string profile = Directory.CreateDirectory(Path.Combine(_dir, "chromium-profile")).FullName;
        await using var browser = await Puppeteer.LaunchAsync(new LaunchOptions
        {
            ExecutablePath = Chromium,
            Headless = true,
            UserDataDir = profile,
            Timeout = (int)Timeout.TotalMilliseconds,
            Args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"],
        }, NullLoggerFactory.Instance);
        await using var page = await browser.NewPageAsync();
        var errors = new List<string>();
        page.Console += (_, e) =>
        {
            if (e.Message.Type == ConsoleType.Error) lock (errors) errors.Add(e.Message.Text);
        };
        page.PageError += (_, e) =>
        {
            lock (errors) errors.Add(e.Message);
        };
        await page.SetViewportAsync(new ViewPortOptions { Width = 1280, Height = 1500 });
        await page.GoToAsync($"http://localhost:{options.HttpPort}/", new NavigationOptions { Timeout = (int)Timeout.TotalMilliseconds });

        var wait = new WaitForFunctionOptions { Timeout = (int)Timeout.TotalMilliseconds, PollingInterval = 100 };
        await page.WaitForFunctionAsync("() => Number(document.getElementById('round').textContent) >= 1", wait);
        int first = int.Parse(await page.EvaluateExpressionAsync<string>("document.getElementById('round').textContent"), System.Globalization.CultureInfo.InvariantCulture);
        // A round applied (the table shows it) and the page, updating itself, shows a later round than it first did.
        await page.WaitForFunctionAsync($"() => Number(document.getElementById('round').textContent) > {first} && document.querySelector('#rounds-table td.applied') !== null", wait);
        // The vehicles' evaluation reports of at least two model versions are drawn as points.
        await page.WaitForFunctionAsync("() => document.querySelectorAll('#accuracy-chart circle.point').length >= 2", wait);
        Assert.Equal("running", await page.EvaluateExpressionAsync<string>("document.getElementById('state').textContent"));
        // The newest model may not have all three reports yet (rounds follow one another quickly).
        Assert.Matches(@"^Model \d+: [01]\.\d{3} over \d+ hold-out frames from [123] vehicles", await page.EvaluateExpressionAsync<string>("document.getElementById('accuracy-note').textContent"));
        Assert.True(await page.EvaluateExpressionAsync<int>("document.querySelectorAll('#rounds-chart rect.point').length") >= 2, "participants per round are drawn");
        Assert.True(await page.EvaluateExpressionAsync<bool>("document.getElementById('error').hidden"), "the page shows an error");

        string artifacts = Directory.CreateDirectory(Path.Combine(RepositoryRoot(), "artifacts", "test-results")).FullName;
        string screenshot = Path.Combine(artifacts, "dashboard.png");
        await page.ScreenshotAsync(screenshot, new ScreenshotOptions { FullPage = true });
        Assert.True(new FileInfo(screenshot).Length > 10_000, "the screenshot is nearly empty");
        lock (errors) Assert.True(errors.Count == 0, "console errors: " + string.Join("\n", errors));
    }

    /// <summary>
    /// Hands the vehicles' reports on <c>vehicles/+/up/eval</c> to <see cref="AggregatorStatus.RecordEvaluation"/>, as the
    /// worker does once it routes them (a report recorded twice is harmless: the later one replaces the earlier).
    /// </summary>
    private async Task RelayEvaluationsAsync(AggregatorStatus status, CancellationToken cancellationToken)
    {
        var relay = new MqttConnection(Mqtt("eval-relay", Secret), TimeProvider.System, Logs.CreateLogger("relay"));
        relay.MessageReceived += m =>
        {
            if (relay.Topics.TryParseVehicleTopic(m.Topic, out var vehicle, out var channel, out var kind) && channel == "up" && kind == "eval")
                status.RecordEvaluation(vehicle, m.Payload);
            return Task.CompletedTask;
        };
        await relay.SubscribeAsync(relay.Topics.AllUp, cancellationToken);
        relay.Start(cancellationToken);
        await relay.WaitUntilConnectedAsync(cancellationToken);
        _started.Add(new RelayService(relay));
    }

    private T Start<T>(T service) where T : Microsoft.Extensions.Hosting.IHostedService
    {
        service.StartAsync(CancellationToken.None).GetAwaiter().GetResult();
        _started.Add(service);
        return service;
    }

    private MqttTransportOptions Mqtt(string clientId, string? password = null) => new()
    {
        Host = "127.0.0.1",
        Port = _broker.Port,
        Fleet = Fleet,
        ClientId = clientId,
        Password = password,
        ReconnectDelay = TimeSpan.FromMilliseconds(50),
        MaxReconnectDelay = TimeSpan.FromMilliseconds(500),
    };

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "FleetLearn.sln"))) return dir.FullName;
        throw new InvalidOperationException("FleetLearn.sln not found above the test assembly.");
    }

    private sealed class RelayService(MqttConnection connection) : Microsoft.Extensions.Hosting.IHostedService, IAsyncDisposable
    {
        public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public Task StopAsync(CancellationToken cancellationToken) => connection.StopAsync();

        public ValueTask DisposeAsync() => connection.DisposeAsync();
    }
}
