using FleetLearn.Transport.Mqtt.Broker;

namespace FleetLearn.Transport.Mqtt.Tests;

/// <summary>The partial-sum topic of shard i: only shard i's identity may publish there; any aggregator identity may read it.</summary>
public sealed class ShardPartialAccessTests
{
    private readonly TopicAccessPolicy _policy = new(["aggregator", "aggregator-shard-0", "aggregator-shard-1"]);
    private readonly FleetTopics _t = new("f1");

    [Fact]
    public void CanPublish_PartialTopic_OnlyItsOwnShard()
    {
        Assert.Equal("fleetlearn/v1/f1/shards/1/partial", _t.ShardPartial(1));
        Assert.True(_policy.CanPublish(FleetTopics.ShardIdentity(1), _t.ShardPartial(1)));
        Assert.False(_policy.CanPublish(FleetTopics.ShardIdentity(0), _t.ShardPartial(1))); // another shard
        Assert.False(_policy.CanPublish("aggregator", _t.ShardPartial(1))); // the coordinator
        Assert.False(_policy.CanPublish("v1", _t.ShardPartial(1))); // a vehicle
        Assert.False(_policy.CanPublish("aggregator-shard-2", _t.ShardPartial(2))); // the right name, but not an aggregator identity of this broker
        Assert.True(_policy.CanSubscribe("aggregator", _t.AllShardPartials));
        Assert.False(_policy.CanSubscribe("v1", _t.AllShardPartials));
    }

    [Theory]
    [InlineData("fleetlearn/v1/f1/shards/1/partial", 1)]
    [InlineData("fleetlearn/v1/f1/shards/01/partial", null)]
    [InlineData("fleetlearn/v1/f1/shards/+/partial", null)]
    [InlineData("fleetlearn/v1/f1/shards/1/partial/x", null)]
    [InlineData("fleetlearn/v1/f2/shards/1/partial", null)]
    [InlineData("fleetlearn/v1/f1/shards/1024/partial", null)]
    public void ParseShardPartial_OnlyThisFleetsCanonicalTopics(string topic, int? shard) => Assert.Equal(shard, _t.ParseShardPartial(topic));

    [Fact]
    public void CanPublish_AnotherFleetsPartialTopic_StillOnlyItsShard() =>
        Assert.False(_policy.CanPublish("aggregator", "fleetlearn/v1/f2/shards/0/partial"));
}
