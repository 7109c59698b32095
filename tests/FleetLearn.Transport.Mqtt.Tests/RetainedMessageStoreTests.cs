using FleetLearn.Testing;
using System.Buffers;
using System.Text;
using System.Threading.Channels;
using FleetLearn.Transport.Mqtt.Broker;
using MQTTnet;
using MQTTnet.Packets;
using MQTTnet.Protocol;

namespace FleetLearn.Transport.Mqtt.Tests;

/// <summary>Retained messages across broker restarts: the broker's store, and the publisher republishing what a broker lost.</summary>
public sealed class RetainedMessageStoreTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("fleetlearn-retained-").FullName;

    private static CancellationToken Timeout => new CancellationTokenSource(BrokerTestKit.Timeout).Token;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void EncodeDecode_EveryStoredProperty_RoundTrips()
    {
        var message = new MqttApplicationMessage
        {
            Topic = "fleetlearn/v1/f/model/3/0",
            Payload = new ReadOnlySequence<byte>([1, 2, 3, 0, 255]),
            QualityOfServiceLevel = MqttQualityOfServiceLevel.AtLeastOnce,
            PayloadFormatIndicator = MqttPayloadFormatIndicator.CharacterData,
            MessageExpiryInterval = 3600,
            ContentType = "application/octet-stream",
            ResponseTopic = "fleetlearn/v1/f/reply",
            CorrelationData = [9, 8, 7],
            UserProperties = [new MqttUserProperty("sha256", "abc"u8.ToArray().AsMemory()), new MqttUserProperty("empty", ReadOnlyMemory<byte>.Empty)],
            Retain = true,
        };
        var back = RetainedMessageStore.Decode(RetainedMessageStore.Encode(message));
        Assert.Equal(message.Topic, back.Topic);
        Assert.Equal(message.Payload.ToArray(), back.Payload.ToArray());
        Assert.Equal(message.QualityOfServiceLevel, back.QualityOfServiceLevel);
        Assert.Equal(message.PayloadFormatIndicator, back.PayloadFormatIndicator);
        Assert.Equal(message.MessageExpiryInterval, back.MessageExpiryInterval);
        Assert.Equal(message.ContentType, back.ContentType);
        Assert.Equal(message.ResponseTopic, back.ResponseTopic);
        Assert.Equal(message.CorrelationData, back.CorrelationData);
        Assert.Equal(message.UserProperties.Select(p => (p.Name, Convert.ToHexString(p.ValueBuffer.Span))), back.UserProperties!.Select(p => (p.Name, Convert.ToHexString(p.ValueBuffer.Span))));
        Assert.True(back.Retain);
    }

    [Fact]
    public void Load_TornForeignAndLeftoverFiles_SkippedOrRemovedAndTheRestLoaded()
    {
        var store = new RetainedMessageStore(_dir);
        store.Save(Message("a/plan", "plan"));
        store.Save(Message("a/torn", "will be torn"));
        store.Save(Message("a/moved", "under the wrong name"));
        string torn = Path.Combine(_dir, RetainedMessageStore.FileName("a/torn"));
        var bytes = File.ReadAllBytes(torn);
        File.WriteAllBytes(torn, bytes[..^5]);                                          // a write cut short
        File.Move(Path.Combine(_dir, RetainedMessageStore.FileName("a/moved")), Path.Combine(_dir, "0" + RetainedMessageStore.Extension));
        File.WriteAllBytes(Path.Combine(_dir, "1" + RetainedMessageStore.Extension), "not a message"u8.ToArray());
        string leftover = Path.Combine(_dir, RetainedMessageStore.FileName("a/new") + ".tmp"); // a crash before the rename
        File.WriteAllBytes(leftover, [1, 2, 3]);

        var (messages, skipped) = new RetainedMessageStore(_dir).Load();

        var only = Assert.Single(messages);
        Assert.Equal("a/plan", only.Topic);
        Assert.Equal("plan", Encoding.UTF8.GetString(only.Payload.ToArray()));
        Assert.Equal(3, skipped.Count);
        Assert.False(File.Exists(leftover));
    }

    [Fact]
    public async Task Broker_RestartsWithStore_ServesTheLatestRetainedMessagesAgainButNotClearedOnes()
    {
        await using var kit = await BrokerTestKit.StartAsync(retainedStore: _dir);
        // No republishing by the publisher: only the broker's store can bring the messages back.
        var aggregator = await kit.ConnectAggregatorAsync(republishRetained: false);
        var model = new byte[100_000];
        new Random(7).NextBytes(model);
        await aggregator.PublishAsync(kit.Topics.ModelChunk(0, 0), model, retain: true, cancellationToken: Timeout);
        await aggregator.PublishAsync(kit.Topics.RoundCurrent, "plan 1"u8.ToArray(), retain: true, cancellationToken: Timeout);
        await aggregator.PublishAsync(kit.Topics.RoundCurrent, "plan 2"u8.ToArray(), retain: true, cancellationToken: Timeout);
        await aggregator.PublishAsync(kit.Topics.ModelChunk(9, 0), "old model"u8.ToArray(), retain: true, cancellationToken: Timeout);
        await aggregator.PublishAsync(kit.Topics.ModelChunk(9, 0), ReadOnlyMemory<byte>.Empty, retain: true, cancellationToken: Timeout);
        // The PUBACK came after the store wrote the change: the files are there now, with nothing left to flush.
        Assert.Equal(2, Directory.GetFiles(_dir, "*" + RetainedMessageStore.Extension).Length);

        await kit.RestartAsync();

        Assert.Equal(2, kit.Broker.RestoredRetainedMessages);
        Assert.Empty(kit.Broker.SkippedRetainedFiles);
        var retained = await RetainedSeenByNewVehicleAsync(kit, aggregator);
        Assert.Equal([kit.Topics.ModelChunk(0, 0), kit.Topics.RoundCurrent], retained.Keys.Order(StringComparer.Ordinal));
        Assert.Equal(model, retained[kit.Topics.ModelChunk(0, 0)]);
        Assert.Equal("plan 2", Encoding.UTF8.GetString(retained[kit.Topics.RoundCurrent]));
        Assert.Equal(0, kit.Broker.RetainedStoreFailures);
    }

    [Fact]
    public async Task Broker_RestartsWithoutStore_RetainedMessagesAreGone()
    {
        await using var kit = await BrokerTestKit.StartAsync();
        var aggregator = await kit.ConnectAggregatorAsync(republishRetained: false);
        await aggregator.PublishAsync(kit.Topics.RoundCurrent, "plan"u8.ToArray(), retain: true, cancellationToken: Timeout);
        await kit.RestartAsync();
        Assert.Empty(await RetainedSeenByNewVehicleAsync(kit, aggregator));
    }

    [Fact]
    public async Task Supervisor_BrokerLostItsRetainedMessages_PublisherRepublishesTheLatestAfterReconnect()
    {
        await using var kit = await BrokerTestKit.StartAsync(); // memory only: a restart loses every retained message
        var aggregator = await kit.ConnectAggregatorAsync();
        await aggregator.PublishAsync(kit.Topics.ModelChunk(1, 0), "model 1"u8.ToArray(), retain: true, cancellationToken: Timeout);
        await aggregator.PublishAsync(kit.Topics.RoundCurrent, "plan 1"u8.ToArray(), retain: true, cancellationToken: Timeout);
        await aggregator.PublishAsync(kit.Topics.RoundCurrent, "plan 2"u8.ToArray(), retain: true, cancellationToken: Timeout);
        await aggregator.PublishAsync(kit.Topics.ModelChunk(0, 0), "model 0"u8.ToArray(), retain: true, cancellationToken: Timeout);
        await aggregator.PublishAsync(kit.Topics.ModelChunk(0, 0), ReadOnlyMemory<byte>.Empty, retain: true, cancellationToken: Timeout);
        await aggregator.PublishAsync(kit.Topics.Inbox("v1", "ack"), "not retained"u8.ToArray(), cancellationToken: Timeout);

        await kit.RestartAsync();
        // Connects is counted after the republish, so once it reads 2 the broker holds the messages again.
        await Poll.UntilAsync(() => aggregator.Connects >= 2 && aggregator.IsConnected, "aggregator to reconnect", BrokerTestKit.Timeout);

        Assert.Equal(2, aggregator.RetainedRepublished);
        var retained = await RetainedSeenByNewVehicleAsync(kit, aggregator);
        Assert.Equal([kit.Topics.ModelChunk(1, 0), kit.Topics.RoundCurrent], retained.Keys.Order(StringComparer.Ordinal));
        Assert.Equal("plan 2", Encoding.UTF8.GetString(retained[kit.Topics.RoundCurrent]));
        Assert.Equal("model 1", Encoding.UTF8.GetString(retained[kit.Topics.ModelChunk(1, 0)]));
    }

    /// <summary>
    /// What a vehicle connecting now gets from round/ and model/: the broker sends retained messages when it handles the
    /// SUBSCRIBE, so everything before a marker published afterwards is the retained set.
    /// </summary>
    private static async Task<Dictionary<string, byte[]>> RetainedSeenByNewVehicleAsync(BrokerTestKit kit, MqttConnection publisher)
    {
        var vehicle = await kit.ConnectAsync("v-new");
        var received = BrokerTestKit.Collect(vehicle);
        await vehicle.SubscribeAsync(kit.Topics.ModelAll, Timeout);
        await vehicle.SubscribeAsync(kit.Topics.Prefix + "round/#", Timeout);
        var marker = kit.Topics.Prefix + "round/marker";
        await publisher.PublishReliablyAsync(marker, "marker"u8.ToArray(), cancellationToken: Timeout);
        var seen = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        while (true)
        {
            var message = await BrokerTestKit.NextAsync(received);
            if (message.Topic == marker) return seen;
            Assert.True(message.Retained, $"{message.Topic} was not delivered as retained");
            seen[message.Topic] = message.Payload;
        }
    }

    private static MqttApplicationMessage Message(string topic, string payload) =>
        new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload(Encoding.UTF8.GetBytes(payload)).WithRetainFlag().Build();
}
