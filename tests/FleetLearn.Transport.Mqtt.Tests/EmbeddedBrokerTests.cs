using FleetLearn.Testing;
using FleetLearn.Transport.Mqtt.Broker;
using System.Text;
using MQTTnet;

namespace FleetLearn.Transport.Mqtt.Tests;

public sealed class EmbeddedBrokerTests
{
    private static CancellationToken Timeout => new CancellationTokenSource(BrokerTestKit.Timeout).Token;

    [Fact]
    public async Task Publish_VehicleUnderAnotherVehiclesTopic_IsRefusedAndNotDelivered()
    {
        await using var kit = await BrokerTestKit.StartAsync();
        var aggregator = await kit.ConnectAggregatorAsync();
        var received = BrokerTestKit.Collect(aggregator);
        await aggregator.SubscribeAsync(kit.Topics.Prefix + "vehicles/#", Timeout);
        var v1 = await kit.ConnectAsync("v1");

        var e = await Assert.ThrowsAsync<MqttRefusedException>(() => v1.PublishAsync(kit.Topics.Up("v2", "update"), "forged"u8.ToArray(), cancellationToken: Timeout));
        Assert.Contains("NotAuthorized", e.Message, StringComparison.Ordinal);
        await v1.PublishAsync(kit.Topics.Up("v1", "update"), "own"u8.ToArray(), cancellationToken: Timeout);

        // Per-client ordering: had the forged message been delivered it would arrive first.
        var first = await BrokerTestKit.NextAsync(received);
        Assert.Equal(kit.Topics.Up("v1", "update"), first.Topic);
        Assert.Equal("own", Encoding.UTF8.GetString(first.Payload));
        Assert.Equal(1, kit.Broker.RefusedPublishes);
    }

    [Fact]
    public async Task Publish_VehicleToRoundPlan_IsRefused()
    {
        await using var kit = await BrokerTestKit.StartAsync();
        var v1 = await kit.ConnectAsync("v1");
        await Assert.ThrowsAsync<MqttRefusedException>(() => v1.PublishAsync(kit.Topics.RoundCurrent, "fake plan"u8.ToArray(), retain: true, cancellationToken: Timeout));
    }

    [Fact]
    public async Task Subscribe_VehicleToAnotherInbox_IsRefused()
    {
        await using var kit = await BrokerTestKit.StartAsync();
        var v1 = await kit.ConnectAsync("v1");
        await v1.SubscribeAsync(kit.Topics.InboxAll("v1"), Timeout);
        await v1.SubscribeAsync(kit.Topics.RoundCurrent, Timeout);
        await v1.SubscribeAsync(kit.Topics.ModelAll, Timeout);
        var e = await Assert.ThrowsAsync<MqttRefusedException>(() => v1.SubscribeAsync(kit.Topics.InboxAll("v2"), Timeout));
        Assert.Contains("NotAuthorized", e.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<MqttRefusedException>(() => v1.SubscribeAsync(kit.Topics.Prefix + "vehicles/+/inbox/#", Timeout));
        Assert.Equal(2, kit.Broker.RefusedSubscriptions);
    }

    [SkippableFact]
    public async Task Listen_QueuesAFleetsConnects_NotMqttNetsTen()
    {
        // A fleet reconnecting at once (a broker restart, a thousand simulated agents starting) needs a listen queue: with
        // MQTTnet's default of 10 the kernel dropped the SYNs past it (TcpExtListenOverflows), connects timed out and the
        // retries took over the late first attempts' sessions (SessionTakenOver). `ss` shows a listening socket's backlog as Send-Q.
        Skip.If(!OperatingSystem.IsLinux() || !File.Exists("/usr/bin/ss") && !File.Exists("/bin/ss"), "needs Linux's ss (iproute2) to read the listen backlog");
        await using var kit = await BrokerTestKit.StartAsync();
        int somaxconn = int.Parse(File.ReadAllText("/proc/sys/net/core/somaxconn").Trim(), System.Globalization.CultureInfo.InvariantCulture);
        using var ss = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("ss", ["-Hltn", $"sport = :{kit.Broker.Port}"]) { RedirectStandardOutput = true })!;
        string line = (await ss.StandardOutput.ReadToEndAsync(Timeout)).Trim();
        await ss.WaitForExitAsync(Timeout);
        var fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries); // State Recv-Q Send-Q Local Peer
        Assert.True(fields.Length >= 4, $"ss printed '{line}'");
        Assert.Equal(Math.Min(somaxconn, new EmbeddedBrokerOptions().ConnectionBacklog), int.Parse(fields[2], System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(4096, new EmbeddedBrokerOptions().ConnectionBacklog);
    }

    [Fact]
    public void Create_BacklogOutsideRange_IsRefused()
    {
        var e = Assert.Throws<ArgumentException>(() => new EmbeddedBroker(new EmbeddedBrokerOptions { Port = 0, AggregatorPassword = "x", ConnectionBacklog = 0 }));
        Assert.Contains("Broker:ConnectionBacklog 0 is outside 1..65535", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Create_ListeningBeyondLoopbackWithoutMutualTls_IsRefused()
    {
        var e = Assert.Throws<ArgumentException>(() => new EmbeddedBroker(new EmbeddedBrokerOptions { Port = 0, LoopbackOnly = false, AggregatorPassword = "x" }));
        Assert.Contains("mutual TLS", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Publish_VehicleRetainedOnItsOwnUpdateTopic_IsRefused()
    {
        await using var kit = await BrokerTestKit.StartAsync();
        var v1 = await kit.ConnectAsync("v1", republishRetained: false);
        var e = await Assert.ThrowsAsync<MqttRefusedException>(() => v1.PublishAsync(kit.Topics.Up("v1", "update"), "sticky"u8.ToArray(), retain: true, cancellationToken: Timeout));
        Assert.Contains("NotAuthorized", e.Message, StringComparison.Ordinal);
        await v1.PublishAsync(kit.Topics.Up("v1", "update"), "plain"u8.ToArray(), cancellationToken: Timeout);
    }

    [Theory]
    [InlineData("up/anything")]
    [InlineData("up/update/extra")]
    [InlineData("up")]
    public async Task Publish_VehicleOffTheAllowList_IsRefused(string channel)
    {
        await using var kit = await BrokerTestKit.StartAsync();
        var v1 = await kit.ConnectAsync("v1");
        await Assert.ThrowsAsync<MqttRefusedException>(() => v1.PublishAsync($"{kit.Topics.Prefix}vehicles/v1/{channel}", "x"u8.ToArray(), cancellationToken: Timeout));
    }

    [Fact]
    public async Task Publish_PacketOverTheBrokersLimit_IsRefused()
    {
        await using var kit = await BrokerTestKit.StartAsync();
        using var client = new MqttClientFactory().CreateMqttClient();
        var options = new MqttClientOptionsBuilder().WithTcpServer("127.0.0.1", kit.Broker.Port).WithClientId("v1")
            .WithCredentials("v1", (string?)null).WithProtocolVersion(MQTTnet.Formatter.MqttProtocolVersion.V500).Build();
        Assert.Equal(MqttClientConnectResultCode.Success, (await client.ConnectAsync(options, Timeout)).ResultCode);
        var big = new MqttApplicationMessageBuilder().WithTopic(kit.Topics.Up("v1", "update")).WithPayload(new byte[MqttTransportOptions.BrokerMaxPacketSize + 1])
            .WithQualityOfServiceLevel(MQTTnet.Protocol.MqttQualityOfServiceLevel.AtLeastOnce).Build();
        bool refused;
        try
        {
            refused = !(await client.PublishAsync(big, Timeout)).IsSuccess;
        }
        catch (Exception e) when (e is MQTTnet.Exceptions.MqttCommunicationException or MQTTnet.Exceptions.MqttClientNotConnectedException or OperationCanceledException)
        {
            refused = true; // the broker closed the connection
        }
        Assert.True(refused);
        Assert.Equal(1, kit.Broker.RefusedPublishes);
    }

    [Theory]
    [InlineData("v1", "v2", null)]          // username is not the client id
    [InlineData("aggregator", "aggregator", null)] // aggregator without its secret
    [InlineData("aggregator", "aggregator", "wrong")]
    [InlineData("bad/id", "bad/id", null)]
    public async Task Connect_IdentityRuleBroken_IsRefused(string clientId, string user, string? password)
    {
        await using var kit = await BrokerTestKit.StartAsync();
        using var client = new MqttClientFactory().CreateMqttClient();
        var options = new MqttClientOptionsBuilder().WithTcpServer("127.0.0.1", kit.Broker.Port).WithClientId(clientId)
            .WithCredentials(user, password).WithProtocolVersion(MQTTnet.Formatter.MqttProtocolVersion.V500).Build();
        MqttClientConnectResultCode code;
        try
        {
            code = (await client.ConnectAsync(options, Timeout)).ResultCode;
        }
        catch (MQTTnet.Adapter.MqttConnectingFailedException)
        {
            code = MqttClientConnectResultCode.UnspecifiedError;
        }
        Assert.NotEqual(MqttClientConnectResultCode.Success, code);
        Assert.Equal(1, kit.Broker.RefusedConnections);
    }

    [Fact]
    public async Task Supervisor_BrokerRestarts_ReconnectsResubscribesAndReceives()
    {
        await using var kit = await BrokerTestKit.StartAsync();
        var v1 = await kit.ConnectAsync("v1");
        var received = BrokerTestKit.Collect(v1);
        await v1.SubscribeAsync(kit.Topics.InboxAll("v1"), Timeout);
        Assert.Equal(1, v1.Connects);

        await kit.RestartAsync(); // a fresh broker: no sessions survive, so only resubscribing brings messages back
        await Poll.UntilAsync(() => v1.Connects >= 2 && v1.IsConnected, "v1 to reconnect", BrokerTestKit.Timeout);
        var aggregator = await kit.ConnectAggregatorAsync();
        await aggregator.PublishAsync(kit.Topics.Inbox("v1", "ack"), "hello"u8.ToArray(), cancellationToken: Timeout);
        var message = await BrokerTestKit.NextAsync(received);
        Assert.Equal("hello", Encoding.UTF8.GetString(message.Payload));
    }

    [Fact]
    public async Task PersistentSession_VehicleOffline_ReceivesQueuedMessageOnReturn()
    {
        await using var kit = await BrokerTestKit.StartAsync();
        var first = await kit.ConnectAsync("v1");
        await first.SubscribeAsync(kit.Topics.InboxAll("v1"), Timeout);
        await first.StopAsync();

        var aggregator = await kit.ConnectAggregatorAsync();
        await aggregator.PublishAsync(kit.Topics.Inbox("v1", "ack"), "queued"u8.ToArray(), cancellationToken: Timeout);

        // Same client id, no subscription of its own: the message can only come from the broker's session queue.
        var again = new MqttConnection(kit.Options("v1"));
        var received = BrokerTestKit.Collect(again);
        again.Start();
        try
        {
            var message = await BrokerTestKit.NextAsync(received);
            Assert.Equal("queued", Encoding.UTF8.GetString(message.Payload));
        }
        finally
        {
            await again.DisposeAsync();
        }
    }

    [Fact]
    public async Task Publish_ChunkedPayloadLargerThanPacket_Reassembles()
    {
        await using var kit = await BrokerTestKit.StartAsync();
        var aggregator = await kit.ConnectAggregatorAsync();
        var received = BrokerTestKit.Collect(aggregator);
        await aggregator.SubscribeAsync(kit.Topics.AllUp, Timeout);
        var v1 = await kit.ConnectAsync("v1");
        var payload = new byte[1_000_000];
        new Random(5).NextBytes(payload);
        var chunks = ChunkCodec.Split(payload, v1.Options.MaxPacketSize);
        Assert.True(chunks.Count > 3);
        await Task.WhenAll(chunks.Select(c => v1.PublishAsync(kit.Topics.Up("v1", "update"), c, cancellationToken: Timeout)));
        var assembler = new ChunkAssembler(10 << 20);
        byte[]? whole = null;
        while (whole is null) whole = assembler.Add("v1", (await BrokerTestKit.NextAsync(received)).Payload);
        Assert.Equal(payload, whole);
    }
}
