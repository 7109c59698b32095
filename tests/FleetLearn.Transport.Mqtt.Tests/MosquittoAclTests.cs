using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace FleetLearn.Transport.Mqtt.Tests;

/// <summary>
/// Debian's Mosquitto, started on a loopback port with broker-config/'s rules — mutual TLS with certificates from
/// broker-config/make-dev-ca.sh (certificate CN = username = vehicle id) and broker-config/acl — refuses what
/// the embedded broker refuses. Skipped where mosquitto or openssl is not installed, except in CI (CI=true),
/// where scripts/install-deps.sh installs both and a missing one is a failure.
/// </summary>
public sealed class MosquittoAclTests : IAsyncLifetime
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("fleetlearn-mosquitto-");
    private readonly List<MqttConnection> _connections = [];
    private Process? _mosquitto;
    private int _port;
    private string? _skip;

    private string Certs => Path.Combine(_dir.FullName, "certs");

    public async Task InitializeAsync()
    {
        const string mosquitto = "/usr/sbin/mosquitto";
        if (!File.Exists(mosquitto) || !File.Exists("/usr/bin/openssl"))
        {
            if (Environment.GetEnvironmentVariable("CI") == "true")
                throw new InvalidOperationException("CI must have mosquitto and openssl (scripts/install-deps.sh installs them).");
            _skip = "mosquitto or openssl is not installed";
            return;
        }
        string repo = RepositoryRoot();
        await RunAsync("/bin/bash", Path.Combine(repo, "broker-config", "make-dev-ca.sh"), Certs, "car-0", "car-1");
        _port = FreePort();
        // The listener and file paths are the test's own; the TLS and ACL rules are broker-config/'s.
        // Mosquitto started as root drops to its own user, which could not read the 0600 keys in a temp folder.
        var conf = Path.Combine(_dir.FullName, "mosquitto.conf");
        File.WriteAllText(conf, $"""
            per_listener_settings false
            persistence false
            user root
            log_dest stderr
            listener {_port} 127.0.0.1
            protocol mqtt
            cafile {Certs}/ca.crt
            certfile {Certs}/broker.crt
            keyfile {Certs}/broker.key
            crlfile {Certs}/ca.crl
            require_certificate true
            use_identity_as_username true
            tls_version tlsv1.2
            allow_anonymous false
            acl_file {Path.Combine(repo, "broker-config", "acl")}

            """);
        _mosquitto = Process.Start(new ProcessStartInfo(mosquitto, ["-c", conf]) { RedirectStandardError = true, RedirectStandardOutput = true })!;
        _mosquitto.ErrorDataReceived += (_, _) => { };
        _mosquitto.BeginErrorReadLine();
        _mosquitto.BeginOutputReadLine();
        await WaitForPortAsync(_port);
    }

    public async Task DisposeAsync()
    {
        foreach (var c in _connections) await c.DisposeAsync();
        if (_mosquitto is { HasExited: false })
        {
            _mosquitto.Kill(entireProcessTree: true);
            await _mosquitto.WaitForExitAsync();
        }
        _mosquitto?.Dispose();
        _dir.Delete(recursive: true);
    }

    [SkippableFact]
    public async Task Publish_UnderAnotherVehiclesTopic_IsNotDelivered_OwnTopicIs()
    {
        Skip.If(_skip is not null, _skip);
        var topics = new FleetTopics(BrokerTestKit.Fleet);
        var aggregator = await ConnectAsync("aggregator");
        var received = BrokerTestKit.Collect(aggregator);
        using (var cts = new CancellationTokenSource(Timeout))
            await aggregator.SubscribeAsync($"fleetlearn/v1/{BrokerTestKit.Fleet}/vehicles/+/up/#", cts.Token);
        var car0 = await ConnectAsync("car-0");

        // car-0 forges an update in car-1's name, then sends its own. QoS 1 from one client is delivered in order,
        // so had the forged one passed the ACL, the aggregator would see it first.
        using (var cts = new CancellationTokenSource(Timeout))
        {
            try
            {
                await car0.PublishAsync(topics.Up("car-1", "update"), "forged"u8.ToArray(), cancellationToken: cts.Token);
            }
            catch (MqttRefusedException)
            {
                // Mosquitto may answer an MQTT 5 publish it denies with "not authorized": refused either way.
            }
            await car0.PublishAsync(topics.Up("car-0", "update"), "own"u8.ToArray(), cancellationToken: cts.Token);
        }
        var first = await BrokerTestKit.NextAsync(received);
        Assert.Equal(topics.Up("car-0", "update"), first.Topic);
        Assert.Equal("own"u8.ToArray(), first.Payload);
    }

    [SkippableFact]
    public async Task Subscribe_ToAnotherVehiclesInbox_ReceivesNothing_OwnInboxWorks()
    {
        Skip.If(_skip is not null, _skip);
        var topics = new FleetTopics(BrokerTestKit.Fleet);
        var car0 = await ConnectAsync("car-0");
        var received = BrokerTestKit.Collect(car0);
        using (var cts = new CancellationTokenSource(Timeout))
        {
            try
            {
                await car0.SubscribeAsync(topics.InboxAll("car-1"), cts.Token);
            }
            catch (MqttRefusedException)
            {
                // A refused subscription is the expected outcome too.
            }
            await car0.SubscribeAsync(topics.InboxAll("car-0"), cts.Token);
        }
        var aggregator = await ConnectAsync("aggregator");
        using (var cts = new CancellationTokenSource(Timeout))
        {
            await aggregator.PublishAsync(topics.Inbox("car-1", "ack"), "for car-1"u8.ToArray(), cancellationToken: cts.Token);
            await aggregator.PublishAsync(topics.Inbox("car-0", "ack"), "for car-0"u8.ToArray(), cancellationToken: cts.Token);
        }
        var first = await BrokerTestKit.NextAsync(received);
        Assert.Equal(topics.Inbox("car-0", "ack"), first.Topic);
    }

    private async Task<MqttConnection> ConnectAsync(string identity)
    {
        var options = new MqttTransportOptions
        {
            Host = "127.0.0.1",
            Port = _port,
            Fleet = BrokerTestKit.Fleet,
            ClientId = identity,
            UseTls = true,
            CaFile = Path.Combine(Certs, "ca.crt"),
            CertFile = Path.Combine(Certs, $"{identity}.crt"),
            KeyFile = Path.Combine(Certs, $"{identity}.key"),
            TlsServerName = "localhost",
            ReconnectDelay = TimeSpan.FromMilliseconds(50),
            MaxReconnectDelay = TimeSpan.FromMilliseconds(500),
            BreakDuration = TimeSpan.FromMilliseconds(500),
            ConnectTimeout = TimeSpan.FromSeconds(5),
        };
        var connection = new MqttConnection(options);
        _connections.Add(connection);
        connection.Start();
        using var cts = new CancellationTokenSource(Timeout);
        await connection.WaitUntilConnectedAsync(cts.Token);
        return connection;
    }

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "FleetLearn.sln"))) return dir.FullName;
        }
        throw new InvalidOperationException("FleetLearn.sln not found above the test assembly.");
    }

    private static int FreePort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    private static async Task RunAsync(string file, params string[] args)
    {
        using var process = Process.Start(new ProcessStartInfo(file, args) { RedirectStandardOutput = true, RedirectStandardError = true })!;
        var stderr = process.StandardError.ReadToEndAsync();
        var stdout = process.StandardOutput.ReadToEndAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(cts.Token);
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"{file} {string.Join(' ', args)} exited {process.ExitCode}: {await stderr}{await stdout}");
    }

    private async Task WaitForPortAsync(int port)
    {
        // Waits for the broker's listener (the event), not for a fixed time.
        var deadline = DateTime.UtcNow + Timeout;
        while (true)
        {
            if (_mosquitto is { HasExited: true })
                throw new InvalidOperationException($"mosquitto exited with {_mosquitto.ExitCode} before listening on {port}.");
            try
            {
                using var client = new TcpClient();
                await client.ConnectAsync(IPAddress.Loopback, port);
                return;
            }
            catch (SocketException) when (DateTime.UtcNow < deadline)
            {
                await Task.Delay(50);
            }
        }
    }
}
