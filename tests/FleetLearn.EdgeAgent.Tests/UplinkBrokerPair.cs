using FleetLearn.Transport.Mqtt;
using FleetLearn.Transport.Mqtt.Broker;

namespace FleetLearn.EdgeAgent.Tests;

/// <summary>
/// An embedded broker, an aggregator connection that collects what car-0 publishes on the given up-channels
/// (<see cref="Received"/>, one <see cref="Arrived"/> release per message), and car-0's own connection.
/// </summary>
internal sealed class UplinkBrokerPair : IAsyncDisposable
{
    private const string Secret = "agg-secret";
    private readonly string _fleet;

    private UplinkBrokerPair(EmbeddedBroker broker, string fleet)
    {
        Broker = broker;
        _fleet = fleet;
    }

    public EmbeddedBroker Broker { get; }

    public MqttConnection Aggregator { get; private set; } = null!;

    public MqttConnection Vehicle { get; private set; } = null!;

    /// <summary>What the aggregator received, in order (lock it to read).</summary>
    public List<byte[]> Received { get; } = [];

    public SemaphoreSlim Arrived { get; } = new(0);

    public static async Task<UplinkBrokerPair> StartAsync(string fleet, TimeSpan timeout, params string[] upChannels)
    {
        var broker = new EmbeddedBroker(new EmbeddedBrokerOptions { Port = 0, AggregatorPassword = Secret });
        await broker.StartAsync();
        var pair = new UplinkBrokerPair(broker, fleet);
        using var cts = new CancellationTokenSource(timeout);
        pair.Aggregator = new MqttConnection(pair.Options("aggregator", Secret));
        pair.Aggregator.MessageReceived += m =>
        {
            lock (pair.Received) pair.Received.Add(m.Payload);
            pair.Arrived.Release();
            return Task.CompletedTask;
        };
        pair.Aggregator.Start(cts.Token);
        await pair.Aggregator.WaitUntilConnectedAsync(cts.Token);
        foreach (var channel in upChannels) await pair.Aggregator.SubscribeAsync(pair.Aggregator.Topics.Up("car-0", channel), cts.Token);
        pair.Vehicle = new MqttConnection(pair.Options("car-0"));
        pair.Vehicle.Start(cts.Token);
        await pair.Vehicle.WaitUntilConnectedAsync(cts.Token);
        return pair;
    }

    private MqttTransportOptions Options(string clientId, string? password = null) => new()
    {
        Host = "127.0.0.1", Port = Broker.Port, Fleet = _fleet, ClientId = clientId, Password = password,
        ReconnectDelay = TimeSpan.FromMilliseconds(50), MaxReconnectDelay = TimeSpan.FromMilliseconds(500),
    };

    public async ValueTask DisposeAsync()
    {
        await Vehicle.DisposeAsync();
        await Aggregator.DisposeAsync();
        await Broker.DisposeAsync();
    }
}
