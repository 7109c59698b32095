using System.Collections.Concurrent;

namespace FleetLearn.EdgeAgent.Tests;

/// <summary>
/// <see cref="EdgeAgentOptions.ModelsWhenSelected"/>: the broker copies every retained model to every subscriber, so with
/// 10,000 vehicles subscribed to <c>model/#</c> each 800 KB model became 8 GB a round. An agent with the option receives a
/// model version only after a plan selects it (the retained chunks arrive on subscribing), and none after the next plan.
/// </summary>
public sealed class AgentModelFeedTests
{
    [Fact]
    public async Task ModelsWhenSelected_OnlyTheVersionOfARoundThatSelectedIt()
    {
        await using var pair = await UplinkBrokerPair.StartAsync("fleet-m", TimeSpan.FromSeconds(20));
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var received = new ConcurrentQueue<string>();
        var arrived = new SemaphoreSlim(0);
        pair.Vehicle.MessageReceived += m =>
        {
            received.Enqueue(m.Topic);
            arrived.Release();
            return Task.CompletedTask;
        };
        var topics = pair.Aggregator.Topics;
        var feed = new AgentModelFeed(pair.Vehicle, whenSelected: true);
        foreach (var topic in feed.AtStart()) await pair.Vehicle.SubscribeAsync(topic, timeout.Token);
        Assert.Empty(feed.AtStart());
        Assert.Equal([topics.ModelAll], new AgentModelFeed(pair.Vehicle, whenSelected: false).AtStart());

        await pair.Aggregator.PublishAsync(topics.ModelChunk(5, 0), new byte[] { 1 }, retain: true, cancellationToken: timeout.Token);
        Assert.False(await arrived.WaitAsync(TimeSpan.FromMilliseconds(500))); // idle: nothing comes

        await feed.PlanAsync(5, selected: true, timeout.Token); // a plan selects the vehicle for version 5
        Assert.True(await arrived.WaitAsync(TimeSpan.FromSeconds(5)));
        Assert.Equal([topics.ModelChunk(5, 0)], received);

        await feed.PlanAsync(6, selected: false, timeout.Token); // the next plan does not select it
        await pair.Aggregator.PublishAsync(topics.ModelChunk(5, 1), new byte[] { 2 }, retain: true, cancellationToken: timeout.Token);
        await pair.Aggregator.PublishAsync(topics.ModelChunk(6, 0), new byte[] { 3 }, retain: true, cancellationToken: timeout.Token);
        Assert.False(await arrived.WaitAsync(TimeSpan.FromMilliseconds(500)));
        Assert.Single(received);
    }
}
