using System.Text;
using FleetLearn.Testing;

namespace FleetLearn.Transport.Mqtt.Tests;

/// <summary>Bandwidth on reconnect (issue 14 item 5): retained messages come at a process's first subscription and where the broker lost it, not on every reconnect.</summary>
public sealed class RetainHandlingTests
{
    private static CancellationToken Timeout => new CancellationTokenSource(BrokerTestKit.Timeout).Token;

    [Fact]
    public async Task Reconnect_SessionKept_RetainedModelNotSentAgain_BrokerLostTheSession_SentAgain()
    {
        await using var kit = await BrokerTestKit.StartAsync();
        var aggregator = await kit.ConnectAggregatorAsync();
        await aggregator.PublishAsync(kit.Topics.ModelChunk(7, 0), "model 7"u8.ToArray(), retain: true, cancellationToken: Timeout);
        var vehicle = await kit.ConnectAsync("v1");
        var received = BrokerTestKit.Collect(vehicle);
        await vehicle.SubscribeAsync(kit.Topics.ModelAll, Timeout);
        await vehicle.SubscribeAsync(kit.Topics.InboxAll("v1"), Timeout);
        Assert.Equal("model 7", Encoding.UTF8.GetString((await BrokerTestKit.NextAsync(received)).Payload)); // the first subscription: retained

        // Lost coverage: the broker kept the session and its subscriptions, so the resubscription takes no retained copy.
        await vehicle.DropConnectionForTestAsync();
        await Poll.UntilAsync(() => vehicle.Connects >= 2 && vehicle.IsConnected, "v1 to reconnect", BrokerTestKit.Timeout);
        await aggregator.PublishAsync(kit.Topics.Inbox("v1", "ack"), "marker"u8.ToArray(), cancellationToken: Timeout);
        Assert.Equal("marker", Encoding.UTF8.GetString((await BrokerTestKit.NextAsync(received)).Payload)); // nothing came before it

        // A broker that lost every session: the subscription is new there, and the model comes again.
        await kit.RestartAsync();
        await Poll.UntilAsync(() => vehicle.Connects >= 3 && vehicle.IsConnected && aggregator.Connects >= 2 && aggregator.IsConnected, "both to reconnect", BrokerTestKit.Timeout);
        Assert.Equal("model 7", Encoding.UTF8.GetString((await BrokerTestKit.NextAsync(received)).Payload));
    }

    [Fact]
    public void TryParseModelTopic_RetainedChunkOrTheVehiclesOwnInboxCopy_OthersRefused()
    {
        var topics = new FleetTopics("f");
        Assert.True(topics.TryParseModelTopic(topics.ModelChunk(12, 3), "car-1", out long retained));
        Assert.Equal(12, retained);
        Assert.True(topics.TryParseModelTopic(topics.InboxModel("car-1", 12), "car-1", out long sent));
        Assert.Equal(12, sent);
        Assert.False(topics.TryParseModelTopic(topics.InboxModel("car-2", 12), "car-1", out _));
        Assert.False(topics.TryParseModelTopic(topics.Inbox("car-1", "model-x"), "car-1", out _));
        Assert.False(topics.TryParseModelTopic(topics.Inbox("car-1", "ack"), "car-1", out _));
    }
}
