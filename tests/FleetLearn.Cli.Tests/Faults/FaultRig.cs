using System.Globalization;
using System.Text.Json;
using FleetLearn.Storage;
using FleetLearn.Transport.Mqtt;
using FleetLearn.Transport.Mqtt.Broker;
using Xunit.Abstractions;

namespace FleetLearn.Cli.Tests.Faults;

/// <summary>
/// A fleet of real processes for one fault test: <c>fleetlearn broker</c>, <c>fleetlearn aggregator</c> and
/// <c>fleetlearn agent</c>s, each in its own working directory with its own LiteDB file, all under one temporary folder.
/// The model is small (784-32-10) and the timers short, so that a round takes about a second. Disposing kills every
/// process still running (SIGKILL, whole tree), writes every process's output to the test output (shown for a failed
/// test) and removes the folder.
/// </summary>
internal sealed class FaultRig : IAsyncDisposable
{
    public const string Fleet = "faults";
    public const string Model = "784-32-10";
    public const string Password = "fault-secret";

    /// <summary>Longest wait for any single event; a round takes about a second, a process start a few.</summary>
    public static readonly TimeSpan Step = TimeSpan.FromSeconds(60);

    private readonly ITestOutputHelper _output;
    private readonly List<FleetProcess> _processes = [];
    private readonly List<MqttFaultProxy> _proxies = [];
    private readonly Dictionary<string, int> _runs = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _environment;

    public FaultRig(ITestOutputHelper output)
    {
        _output = output;
        Root = Directory.CreateTempSubdirectory("fleetlearn-faults-").FullName;
        BrokerPort = EmbeddedBroker.FreePort();
        HttpPort = EmbeddedBroker.FreePort();
        _environment = new() { [FleetLearn.Cli.Commands.BrokerCommand.PasswordVariable] = Password };
        Directory.CreateDirectory(Path.Combine(Root, "aggregator"));
        using (SigningKeys.LoadOrCreate(SigningKeyPath))
        {
            // created before any agent starts, so that every agent finds the aggregator's public key
        }
    }

    public string Root { get; }

    public int BrokerPort { get; private set; }

    public int HttpPort { get; }

    public FleetTopics Topics { get; } = new(Fleet);

    public string AggregatorDb => Path.Combine(Root, "aggregator", "aggregator.db");

    private string SigningKeyPath => Path.Combine(Root, "aggregator", "aggregator-signing.pem");

    public string AgentDb(int index) => Path.Combine(Root, $"car-{index}", $"car-{index}.db");

    /// <summary>Settings every MQTT process shares: small packets (a model or an update travels in ~15 chunks) and quick reconnects.</summary>
    private string[] Mqtt(int port, string client) =>
    [
        $"--Mqtt:Port={port}", $"--Mqtt:Fleet={Fleet}", "--Mqtt:MaxPacketSize=8192",
        "--Mqtt:ReconnectDelay=00:00:00.200", "--Mqtt:MaxReconnectDelay=00:00:01", "--Mqtt:BreakDuration=00:00:01",
        "--Logging:Console:FormatterName=simple", "--Logging:Console:FormatterOptions:SingleLine=true", .. Tls?.Invoke(client) ?? [],
    ];

    /// <summary>Extra MQTT settings per client id (e.g. the mTLS certificate of each process against Mosquitto); null = none.</summary>
    public Func<string, string[]>? Tls { get; set; }

    /// <summary>Points the processes started from now on at another broker (e.g. Mosquitto started by the test).</summary>
    public void UseBroker(int port) => BrokerPort = port;

    /// <summary>Starts <c>fleetlearn broker</c> on <see cref="BrokerPort"/> in its own folder (the same folder on a restart) and waits until it listens.</summary>
    public async Task<FleetProcess> StartBrokerAsync(params string[] extra)
    {
        for (int attempt = 1; ; attempt++)
        {
            var broker = Start("broker", Path.Combine(Root, "broker"), ["broker", "--port", BrokerPort.ToString(CultureInfo.InvariantCulture), .. extra]);
            try
            {
                await broker.WaitForLineAsync("broker: listening on port", Step);
                return broker;
            }
            catch (InvalidOperationException) when (attempt < 3 && !_processes.Any(p => p.Name.StartsWith("aggregator", StringComparison.Ordinal)) && broker.HasLine("is already in use"))
            {
                // The free port was taken by a parallel test between FreePort() and the bind; nothing uses it yet, so pick another.
                BrokerPort = EmbeddedBroker.FreePort();
            }
        }
    }

    /// <summary>Starts <c>fleetlearn aggregator</c> (cohort 2, both needed) for <paramref name="rounds"/> rounds of this run, HTTP on <see cref="HttpPort"/>.</summary>
    public FleetProcess StartAggregator(int rounds, params string[] extra) => Start("aggregator", Path.Combine(Root, "aggregator"),
    [
        "aggregator", $"--Aggregator:Model={Model}", "--Aggregator:CohortSize=2", "--Aggregator:MinParticipants=2",
        $"--Aggregator:Rounds={rounds}", "--Aggregator:RoundTimeout=00:03:00", "--Aggregator:OnnxFolder=",
        $"--Aggregator:HttpPort={HttpPort}", $"--Aggregator:DatabasePath={AggregatorDb}", $"--Aggregator:SigningKeyPath={SigningKeyPath}",
        .. Mqtt(BrokerPort, "aggregator"), .. extra,
    ]);

    /// <summary>Starts <c>fleetlearn agent</c> for vehicle car-<paramref name="index"/> (its own folder and database; the same on a restart), directly or through <paramref name="via"/>.</summary>
    public FleetProcess StartAgent(int index, MqttFaultProxy? via = null, params string[] extra) => StartAgentIn(null, index, via, extra);

    /// <summary>The same, inside network namespace <paramref name="networkNamespace"/> (null: the test's own).</summary>
    public FleetProcess StartAgentIn(string? networkNamespace, int index, MqttFaultProxy? via = null, params string[] extra) => Start($"car-{index}", Path.Combine(Root, $"car-{index}"),
    [
        "agent", "--vehicles", "50", "--index", index.ToString(CultureInfo.InvariantCulture), "--seed", "3", "--holdout", "0",
        $"--Agent:PinnedModelSpec={Model}", "--Agent:ResendInterval=00:00:01", $"--Agent:AggregatorPublicKey={Path.ChangeExtension(SigningKeyPath, ".pub.pem")}",
        $"--Agent:DatabasePath={AgentDb(index)}", .. Mqtt(via?.Port ?? BrokerPort, $"car-{index}"), .. extra,
    ], networkNamespace);

    /// <summary>A fault proxy in front of the broker, listening on <paramref name="listen"/> (loopback when null).</summary>
    public MqttFaultProxy Proxy(System.Net.IPAddress? listen = null)
    {
        var proxy = new MqttFaultProxy(BrokerPort, listen);
        _proxies.Add(proxy);
        return proxy;
    }

    /// <summary>The aggregator's Prometheus series (name with its labels, e.g. <c>x_total{reason="late"}</c>, is the key).</summary>
    public async Task<Dictionary<string, double>> MetricsAsync()
    {
        var text = await HttpGetAsync("/metrics");
        return text.Split('\n').Where(l => l.Length > 0 && l[0] != '#')
            .Select(l => l.Split(' ')).ToDictionary(p => p[0].EndsWith("{}", StringComparison.Ordinal) ? p[0][..^2] : p[0], p => double.Parse(p[1], CultureInfo.InvariantCulture), StringComparer.Ordinal);
    }

    /// <summary>/api/rounds as (round, status, participants, model in, model out).</summary>
    public async Task<List<(long Round, string Status, int Participants, long In, long? Out)>> ApiRoundsAsync()
    {
        using var json = JsonDocument.Parse(await HttpGetAsync("/api/rounds"));
        return [.. json.RootElement.EnumerateArray().Select(r => (
            r.GetProperty("round").GetInt64(), r.GetProperty("status").GetString()!, r.GetProperty("participants").GetInt32(),
            r.GetProperty("modelVersionIn").GetInt64(), r.GetProperty("modelVersionOut").ValueKind == JsonValueKind.Null ? (long?)null : r.GetProperty("modelVersionOut").GetInt64()))];
    }

    /// <summary>The round and phase /api/status reports (null before the aggregator reports one, or while its HTTP surface is not up).</summary>
    public async Task<(long Round, string Phase)?> PhaseAsync()
    {
        try
        {
            using var json = JsonDocument.Parse(await HttpGetAsync("/api/status"));
            return json.RootElement.GetProperty("phase") is { ValueKind: JsonValueKind.Object } p ? (p.GetProperty("round").GetInt64(), p.GetProperty("phase").GetString()!) : null;
        }
        catch (HttpRequestException)
        {
            return null;
        }
    }

    /// <summary>Items still waiting in vehicle <paramref name="index"/>'s outbox (the agent must not be running).</summary>
    public IReadOnlyList<OutboxItem> Outbox(int index)
    {
        using var outbox = LiteDbOutbox.Open(AgentDb(index));
        return outbox.Pending();
    }

    /// <summary>The aggregator's round records and newest model version (the aggregator must not be running).</summary>
    public (IReadOnlyList<RoundRecord> Rounds, long ModelVersion) AggregatorStore()
    {
        using var store = LiteDbRoundStore.Open(AggregatorDb);
        return (store.Rounds(), store.LatestModel()!.Version);
    }

    /// <summary>SIGKILL to every process still running (the end of a scenario: every write that matters is already durable).</summary>
    public void KillAll()
    {
        foreach (var p in _processes) p.KillHard();
    }

    public async ValueTask DisposeAsync()
    {
        KillAll();
        foreach (var proxy in _proxies) await proxy.DisposeAsync();
        foreach (var p in _processes)
        {
            _output.WriteLine($"===== {p.Name} (pid {p.Id}, exit {(p.HasExited ? p.ExitCode.ToString(CultureInfo.InvariantCulture) : "?")}) =====");
            _output.WriteLine(p.Output);
            p.Dispose();
        }
        try
        {
            Directory.Delete(Root, recursive: true);
        }
        catch (IOException e)
        {
            _output.WriteLine($"could not remove {Root}: {e.Message}");
        }
    }

    private FleetProcess Start(string name, string folder, string[] args, string? networkNamespace = null)
    {
        int run = _runs[name] = _runs.GetValueOrDefault(name) + 1;
        var process = FleetProcess.Start($"{name}#{run}", folder, _environment, args, networkNamespace);
        _processes.Add(process);
        return process;
    }

    private async Task<string> HttpGetAsync(string path)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        return await http.GetStringAsync(new Uri($"http://127.0.0.1:{HttpPort}{path}"));
    }
}
