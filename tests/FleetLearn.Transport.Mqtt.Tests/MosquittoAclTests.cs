using FleetLearn.Transport.Mqtt.Broker;
using FleetLearn.Testing;

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
    private readonly List<MqttConnection> _connections = [];
    private MosquittoBroker _broker = null!;
    private string? _skip;

    private string Certs => _broker.Certificates;

    public async Task InitializeAsync()
    {
        _broker = await MosquittoBroker.StartAsync("car-0", "car-1");
        _skip = _broker.SkipReason;
    }

    public async Task DisposeAsync()
    {
        foreach (var c in _connections) await c.DisposeAsync();
        await _broker.DisposeAsync();
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

    [SkippableFact]
    public async Task Connect_WithAnotherIdentitysClientId_DoesNotTakeOverItsSession()
    {
        Skip.If(_skip is not null, _skip);
        var topics = new FleetTopics(BrokerTestKit.Fleet);
        var aggregator = await ConnectAsync("aggregator");
        var received = BrokerTestKit.Collect(aggregator);
        using (var cts = new CancellationTokenSource(Timeout))
            await aggregator.SubscribeAsync($"fleetlearn/v1/{BrokerTestKit.Fleet}/vehicles/+/up/#", cts.Token);
        var car0 = await ConnectAsync("car-0");

        // car-1's certificate, presenting the client ids of the aggregator and of car-0 (the review's attack): without
        // use_username_as_clientid Mosquitto matches the session by client id and closes the victim's connection.
        foreach (var victim in new[] { "aggregator", "car-0" })
        {
            var impostor = await ConnectAsync("car-1", clientId: victim);
            using (var cts = new CancellationTokenSource(Timeout))
                await impostor.PublishAsync(topics.Up("car-1", "update"), System.Text.Encoding.UTF8.GetBytes($"as {victim}"), cancellationToken: cts.Token);
            Assert.Equal($"as {victim}", System.Text.Encoding.UTF8.GetString((await BrokerTestKit.NextAsync(received)).Payload));
            _connections.Remove(impostor);
            await impostor.DisposeAsync();
        }
        using (var cts = new CancellationTokenSource(Timeout))
            await car0.PublishAsync(topics.Up("car-0", "update"), "own"u8.ToArray(), cancellationToken: cts.Token);
        // The victims connected before the impostors; a message that reaches the aggregator after those connects travelled
        // over its first connection only if that was never closed (Connects stays 1).
        Assert.Equal("own", System.Text.Encoding.UTF8.GetString((await BrokerTestKit.NextAsync(received)).Payload));
        Assert.Equal(1, aggregator.Connects);
        Assert.Equal(1, car0.Connects);
        Assert.DoesNotContain("already connected", _broker.Log, StringComparison.Ordinal);
    }

    [SkippableFact]
    public async Task Publish_OverTheShippedPacketLimit_IsNotDelivered()
    {
        Skip.If(_skip is not null, _skip);
        var topics = new FleetTopics(BrokerTestKit.Fleet);
        var aggregator = await ConnectAsync("aggregator");
        var received = BrokerTestKit.Collect(aggregator);
        using (var cts = new CancellationTokenSource(Timeout))
            await aggregator.SubscribeAsync($"fleetlearn/v1/{BrokerTestKit.Fleet}/vehicles/+/up/#", cts.Token);
        var car0 = await ConnectAsync("car-0");
        using (var cts = new CancellationTokenSource(Timeout))
        {
            try
            {
                await car0.PublishAsync(topics.Up("car-0", "update"), new byte[MqttTransportOptions.BrokerMaxPacketSize + 1], cancellationToken: cts.Token);
            }
            catch (Exception e) when (MqttConnection.IsTransient(e) || e is MqttRefusedException)
            {
                // Mosquitto closes the connection of a client that exceeds max_packet_size.
            }
            await car0.PublishReliablyAsync(topics.Up("car-0", "update"), "small"u8.ToArray(), cancellationToken: cts.Token);
        }
        var first = await BrokerTestKit.NextAsync(received);
        Assert.Equal("small"u8.ToArray(), first.Payload);
        // The aggregator accepts at most 1 MiB itself, so its not receiving the packet proves nothing: the broker's own
        // limit shows in its closing the sender's connection (a second connect) and in its log.
        Assert.Equal(2, car0.Connects);
    }

    private Task<MqttConnection> ConnectAsync(string identity, string? clientId = null) =>
        BrokerTestKit.ConnectTlsAsync(_broker.Port, Certs, identity, _connections, clientId);
}
