using FleetLearn.Transport.Mqtt.Broker;
using FleetLearn.Testing;

namespace FleetLearn.Transport.Mqtt.Tests;

/// <summary>
/// Debian's Mosquitto with broker-config/acl and acl-shard as shipped (issue 16 item 4): only shard i's identity publishes
/// shards/i/partial — not another shard, not the coordinator (which only reads them), not a vehicle — and a shard reaches
/// a vehicle on a regional broker through the bridge.
/// </summary>
public sealed class MosquittoShardAclTests : IAsyncLifetime
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);
    private readonly List<MqttConnection> _connections = [];
    private readonly FleetTopics _topics = new(BrokerTestKit.Fleet);
    private MosquittoNetwork _network = null!;
    private string? _skip;

    public async Task InitializeAsync()
    {
        _network = await MosquittoNetwork.StartAsync(1, 2, "car-0");
        _skip = _network.SkipReason;
    }

    public async Task DisposeAsync()
    {
        foreach (var c in _connections) await c.DisposeAsync();
        await _network.DisposeAsync();
    }

    [SkippableFact]
    public async Task PartialTopic_OnlyItsShardPublishes_TheCoordinatorReads()
    {
        Skip.If(_skip is not null, _skip);
        var coordinator = await ConnectAsync("aggregator", _network.Central);
        var heard = BrokerTestKit.Collect(coordinator);
        using (var cts = new CancellationTokenSource(Timeout))
            await coordinator.SubscribeAsync(_topics.AllShardPartials, cts.Token);
        var shard0 = await ConnectAsync("aggregator-shard-0", _network.Central);
        var shard1 = await ConnectAsync("aggregator-shard-1", _network.Central);
        var car0 = await ConnectAsync("car-0", _network.Central);

        // Forgeries first, then shard 0's own: QoS 1 keeps each client's order, and the forgers publish before shard 0 does.
        foreach (var (forger, name) in new[] { (shard1, "shard 1"), (coordinator, "the coordinator"), (car0, "a vehicle") })
        {
            using var cts = new CancellationTokenSource(Timeout);
            try
            {
                await forger.PublishAsync(_topics.ShardPartial(0), System.Text.Encoding.UTF8.GetBytes($"forged by {name}"), cancellationToken: cts.Token);
            }
            catch (MqttRefusedException)
            {
                // Mosquitto may answer a denied MQTT 5 publish with "not authorized": refused either way.
            }
        }
        using (var cts = new CancellationTokenSource(Timeout))
            await shard0.PublishAsync(_topics.ShardPartial(0), "shard 0's sum"u8.ToArray(), cancellationToken: cts.Token);

        var first = await BrokerTestKit.NextAsync(heard);
        Assert.Equal((_topics.ShardPartial(0), "shard 0's sum"), (first.Topic, System.Text.Encoding.UTF8.GetString(first.Payload)));
    }

    [SkippableFact]
    public async Task Shard_OnCentral_ReadsARegionalVehiclesUplinkAndWritesItsInbox()
    {
        Skip.If(_skip is not null, _skip);
        var shard = await ConnectAsync("aggregator-shard-1", _network.Central);
        var car = await ConnectAsync("car-0", _network.Regional[0]);
        var atShard = BrokerTestKit.Collect(shard);
        var atCar = BrokerTestKit.Collect(car);
        using (var cts = new CancellationTokenSource(Timeout))
        {
            await shard.SubscribeAsync(_topics.Prefix + "vehicles/+/up/secagg", cts.Token);
            await car.SubscribeAsync(_topics.InboxAll("car-0"), cts.Token);
        }
        // The bridge may take a moment to come up: the vehicle repeats its uplink until the shard hears one.
        MqttIncoming? up = null;
        for (int i = 0; i < 40 && up is null; i++)
        {
            using (var cts = new CancellationTokenSource(Timeout))
                await car.PublishAsync(_topics.Up("car-0", "secagg"), "keys"u8.ToArray(), cancellationToken: cts.Token);
            using var wait = new CancellationTokenSource(TimeSpan.FromMilliseconds(500));
            try
            {
                up = await atShard.ReadAsync(wait.Token);
            }
            catch (OperationCanceledException)
            {
            }
        }
        Assert.Equal(_topics.Up("car-0", "secagg"), up?.Topic);
        using (var cts = new CancellationTokenSource(Timeout))
            await shard.PublishAsync(_topics.Inbox("car-0", "secagg"), "routed"u8.ToArray(), cancellationToken: cts.Token);
        Assert.Equal("routed"u8.ToArray(), (await BrokerTestKit.NextAsync(atCar)).Payload);
    }

    private Task<MqttConnection> ConnectAsync(string identity, MosquittoBroker broker) =>
        BrokerTestKit.ConnectTlsAsync(broker.Port, _network.Certificates, identity, _connections);
}
