using FleetLearn.Transport.Mqtt.Broker;
using FleetLearn.Testing;

namespace FleetLearn.Transport.Mqtt.Tests;

/// <summary>
/// Debian's Mosquitto as a broker network (issue 16): two regional brokers bridged to a central one by
/// broker-config/bridge.conf and acl-bridge as shipped. The aggregator on the central broker reaches vehicles on either
/// regional broker and hears them; retained plans reach a vehicle that connects later; the per-vehicle rules still hold.
/// </summary>
public sealed class MosquittoBridgeTests : IAsyncLifetime
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);
    private readonly List<MqttConnection> _connections = [];
    private readonly FleetTopics _topics = new(BrokerTestKit.Fleet);
    private MosquittoNetwork _network = null!;
    private string? _skip;

    public async Task InitializeAsync()
    {
        _network = await MosquittoNetwork.StartAsync(2, "car-0", "car-1", "car-2");
        _skip = _network.SkipReason;
    }

    public async Task DisposeAsync()
    {
        foreach (var c in _connections) await c.DisposeAsync();
        await _network.DisposeAsync();
    }

    [SkippableFact]
    public async Task AggregatorOnCentral_VehiclesOnTwoRegions_PlansInboxesAndUplinksCrossTheBridges()
    {
        Skip.If(_skip is not null, _skip);
        var (aggregator, heard, car0, car1) = await OpenAsync();
        var at0 = BrokerTestKit.Collect(car0);
        var at1 = BrokerTestKit.Collect(car1);
        await SubscribeAsync(car0, _topics.InboxAll("car-0"));
        await SubscribeAsync(car1, _topics.InboxAll("car-1"));
        await SubscribeAsync(car1, _topics.RoundCurrent);
        await BridgesUpAsync(aggregator, heard, car0, car1);

        // A retained plan on the central broker reaches a subscribed vehicle, and one that connects to its region later.
        using (var cts = new CancellationTokenSource(Timeout))
            await aggregator.PublishAsync(_topics.RoundCurrent, "plan 7"u8.ToArray(), retain: true, cancellationToken: cts.Token);
        Assert.Equal("plan 7"u8.ToArray(), (await NextOnAsync(at1, _topics.RoundCurrent)).Payload);
        var late = await ConnectAsync("car-2", _network.Regional[0]);
        var atLate = BrokerTestKit.Collect(late);
        await SubscribeAsync(late, _topics.RoundCurrent);
        Assert.Equal("plan 7"u8.ToArray(), (await NextOnAsync(atLate, _topics.RoundCurrent)).Payload);

        // Each inbox reaches its vehicle in whichever region it is; check-ins from both regions reach the aggregator.
        using (var cts = new CancellationTokenSource(Timeout))
        {
            await aggregator.PublishAsync(_topics.Inbox("car-1", "ack"), "for car-1"u8.ToArray(), cancellationToken: cts.Token);
            await aggregator.PublishAsync(_topics.Inbox("car-0", "ack"), "for car-0"u8.ToArray(), cancellationToken: cts.Token);
            await car1.PublishAsync(_topics.Checkin("car-1"), "car-1 here"u8.ToArray(), cancellationToken: cts.Token);
        }
        Assert.Equal("for car-0"u8.ToArray(), (await NextOnAsync(at0, _topics.Inbox("car-0", "ack"))).Payload);
        Assert.Equal("for car-1"u8.ToArray(), (await NextOnAsync(at1, _topics.Inbox("car-1", "ack"))).Payload);
        Assert.Equal("car-1 here"u8.ToArray(), (await NextOnAsync(heard, _topics.Checkin("car-1"), skipHellos: true)).Payload);
    }

    [SkippableFact]
    public async Task VehicleOnARegion_ForgesAnotherVehiclesCheckin_TheCentralAggregatorNeverSeesIt()
    {
        Skip.If(_skip is not null, _skip);
        var (aggregator, heard, car0, car1) = await OpenAsync();
        await BridgesUpAsync(aggregator, heard, car0, car1);

        // The regional acl drops the forged one; QoS 1 from one client keeps order, so had it crossed, it would come first.
        using (var cts = new CancellationTokenSource(Timeout))
        {
            try
            {
                await car0.PublishAsync(_topics.Checkin("car-1"), "forged"u8.ToArray(), cancellationToken: cts.Token);
            }
            catch (MqttRefusedException)
            {
                // Refused outright is the same outcome.
            }
            await car0.PublishAsync(_topics.Checkin("car-0"), "own"u8.ToArray(), cancellationToken: cts.Token);
        }
        var first = await NextOnAsync(heard, topic: null, skipHellos: true);
        Assert.Equal((_topics.Checkin("car-0"), "own"), (first.Topic, System.Text.Encoding.UTF8.GetString(first.Payload)));
    }

    /// <summary>The aggregator on the central broker, hearing every check-in; car-0 in region 0, car-1 in region 1.</summary>
    private async Task<(MqttConnection Aggregator, System.Threading.Channels.ChannelReader<MqttIncoming> Heard, MqttConnection Car0, MqttConnection Car1)> OpenAsync()
    {
        var aggregator = await ConnectAsync("aggregator", _network.Central);
        var heard = BrokerTestKit.Collect(aggregator);
        await SubscribeAsync(aggregator, $"fleetlearn/v1/{BrokerTestKit.Fleet}/vehicles/+/checkin");
        return (aggregator, heard, await ConnectAsync("car-0", _network.Regional[0]), await ConnectAsync("car-1", _network.Regional[1]));
    }

    /// <summary>A bridge connects on its own schedule: each region's vehicle checks in until the aggregator hears it.</summary>
    private async Task BridgesUpAsync(MqttConnection aggregator, System.Threading.Channels.ChannelReader<MqttIncoming> heard, params MqttConnection[] vehicles)
    {
        var until = DateTime.UtcNow + Timeout;
        var pending = vehicles.Select((v, i) => (Vehicle: v, Id: $"car-{i}")).ToList();
        while (pending.Count > 0)
        {
            Assert.True(DateTime.UtcNow < until, $"the bridges did not carry {string.Join(", ", pending.Select(p => p.Id))}'s check-in within {Timeout.TotalSeconds} s: {_network.Regional[0].Log}");
            foreach (var (vehicle, id) in pending)
            {
                using var cts = new CancellationTokenSource(Timeout);
                await vehicle.PublishAsync(_topics.Checkin(id), "hello"u8.ToArray(), cancellationToken: cts.Token);
            }
            await Task.Delay(200);
            while (heard.TryRead(out var m)) pending.RemoveAll(p => m.Topic == _topics.Checkin(p.Id));
        }
    }

    /// <summary>The next message on <paramref name="topic"/> (any topic: null), past the check-ins BridgesUpAsync may still have in flight.</summary>
    private static async Task<MqttIncoming> NextOnAsync(System.Threading.Channels.ChannelReader<MqttIncoming> reader, string? topic, bool skipHellos = false)
    {
        while (true)
        {
            var m = await BrokerTestKit.NextAsync(reader);
            if ((topic is null || m.Topic == topic) && !(skipHellos && m.Payload.AsSpan().SequenceEqual("hello"u8))) return m;
        }
    }

    private static async Task SubscribeAsync(MqttConnection connection, string filter)
    {
        using var cts = new CancellationTokenSource(Timeout);
        await connection.SubscribeAsync(filter, cts.Token);
    }

    private Task<MqttConnection> ConnectAsync(string identity, MosquittoBroker broker) =>
        BrokerTestKit.ConnectTlsAsync(broker.Port, _network.Certificates, identity, _connections);
}
