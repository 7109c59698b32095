using System.Threading.Channels;
using FleetLearn.Transport.Mqtt.Broker;

namespace FleetLearn.Transport.Mqtt.Tests;

/// <summary>An embedded broker on a free loopback port plus helpers to connect vehicles and the aggregator.</summary>
internal sealed class BrokerTestKit : IAsyncDisposable
{
    public const string Fleet = "test";
    public const string AggregatorSecret = "s3cret";
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);
    private readonly List<MqttConnection> _connections = [];

    private readonly string? _retainedStore;

    private BrokerTestKit(EmbeddedBroker broker, string? retainedStore)
    {
        Broker = broker;
        _retainedStore = retainedStore;
    }

    public EmbeddedBroker Broker { get; private set; }

    public FleetTopics Topics { get; } = new(Fleet);

    public static async Task<BrokerTestKit> StartAsync(int port = 0, string? retainedStore = null)
    {
        var broker = new EmbeddedBroker(new EmbeddedBrokerOptions { Port = port, AggregatorPassword = AggregatorSecret, RetainedStorePath = retainedStore });
        await broker.StartAsync();
        return new BrokerTestKit(broker, retainedStore);
    }

    public async Task RestartAsync()
    {
        int port = Broker.Port;
        await Broker.DisposeAsync();
        Broker = new EmbeddedBroker(new EmbeddedBrokerOptions { Port = port, AggregatorPassword = AggregatorSecret, RetainedStorePath = _retainedStore });
        await Broker.StartAsync();
    }

    public MqttTransportOptions Options(string clientId, string? password = null) => LoopbackOptions(Broker.Port, clientId, password);

    /// <summary>Settings of client <paramref name="clientId"/> for a broker on loopback <paramref name="port"/>, with the tests' short reconnect delays.</summary>
    public static MqttTransportOptions LoopbackOptions(int port, string clientId, string? password = null) => new()
    {
        Host = "127.0.0.1",
        Port = port,
        Fleet = Fleet,
        ClientId = clientId,
        Password = password,
        ReconnectDelay = TimeSpan.FromMilliseconds(50),
        MaxReconnectDelay = TimeSpan.FromMilliseconds(500),
        BreakDuration = TimeSpan.FromMilliseconds(500),
        ConnectTimeout = TimeSpan.FromSeconds(5),
    };

    public async Task<MqttConnection> ConnectAsync(string clientId, string? password = null, bool presence = false, bool republishRetained = true)
    {
        var options = Options(clientId, password);
        options.RepublishRetainedOnReconnect = republishRetained;
        var connection = new MqttConnection(options, presenceTopic: presence ? Topics.Status(clientId) : null);
        _connections.Add(connection);
        connection.Start();
        using var cts = new CancellationTokenSource(Timeout);
        await connection.WaitUntilConnectedAsync(cts.Token);
        return connection;
    }

    public Task<MqttConnection> ConnectAggregatorAsync(bool republishRetained = true) => ConnectAsync("aggregator", AggregatorSecret, republishRetained: republishRetained);

    /// <summary>
    /// Connects <paramref name="identity"/> to a Mosquitto on loopback <paramref name="port"/> with mutual TLS, its certificate
    /// from <paramref name="certificates"/> (make-dev-ca.sh), presenting <paramref name="clientId"/> (default: the identity);
    /// the connection is added to <paramref name="owned"/> for disposal.
    /// </summary>
    public static async Task<MqttConnection> ConnectTlsAsync(int port, string certificates, string identity, List<MqttConnection> owned, string? clientId = null)
    {
        var options = new MqttTransportOptions
        {
            Host = "127.0.0.1",
            Port = port,
            Fleet = Fleet,
            ClientId = clientId ?? identity,
            UseTls = true,
            CaFile = Path.Combine(certificates, "ca.crt"),
            CertFile = Path.Combine(certificates, $"{identity}.crt"),
            KeyFile = Path.Combine(certificates, $"{identity}.key"),
            TlsServerName = "localhost",
            ReconnectDelay = TimeSpan.FromMilliseconds(50),
            MaxReconnectDelay = TimeSpan.FromMilliseconds(500),
            BreakDuration = TimeSpan.FromMilliseconds(500),
            ConnectTimeout = TimeSpan.FromSeconds(5),
        };
        var connection = new MqttConnection(options);
        owned.Add(connection);
        connection.Start();
        using var cts = new CancellationTokenSource(Timeout);
        await connection.WaitUntilConnectedAsync(cts.Token);
        return connection;
    }

    /// <summary>Collects every message a connection receives.</summary>
    public static ChannelReader<MqttIncoming> Collect(MqttConnection connection)
    {
        var channel = Channel.CreateUnbounded<MqttIncoming>();
        connection.MessageReceived += m => channel.Writer.WriteAsync(m).AsTask();
        return channel.Reader;
    }

    public static async Task<MqttIncoming> NextAsync(ChannelReader<MqttIncoming> reader)
    {
        using var cts = new CancellationTokenSource(Timeout);
        return await reader.ReadAsync(cts.Token);
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var c in _connections) await c.DisposeAsync();
        await Broker.DisposeAsync();
    }
}
