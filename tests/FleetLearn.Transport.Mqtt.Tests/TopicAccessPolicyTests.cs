using FleetLearn.Transport.Mqtt.Broker;

namespace FleetLearn.Transport.Mqtt.Tests;

public sealed class TopicAccessPolicyTests
{
    private readonly TopicAccessPolicy _policy = new(["aggregator"]);
    private readonly FleetTopics _t = new("f1");

    [Fact]
    public void CanPublish_OwnSubtree_Allowed()
    {
        Assert.True(_policy.CanPublish("v1", _t.Checkin("v1")));
        Assert.True(_policy.CanPublish("v1", _t.Up("v1", "update")));
        Assert.True(_policy.CanPublish("v1", _t.Status("v1")));
    }

    [Theory]
    [InlineData("fleetlearn/v1/f1/vehicles/v2/up/update")]
    [InlineData("fleetlearn/v1/f1/vehicles/v1/inbox/ack")]
    [InlineData("fleetlearn/v1/f1/round/current")]
    [InlineData("fleetlearn/v1/f1/model/3/0")]
    [InlineData("fleetlearn/v1/f1/vehicles/v1")]
    [InlineData("other/topic")]
    [InlineData("fleetlearn/v1/f1/vehicles/v1/up")]
    [InlineData("fleetlearn/v1/f1/vehicles/v1/up/keys")]
    [InlineData("fleetlearn/v1/f1/vehicles/v1/up/update/x")]
    [InlineData("fleetlearn/v1/f1/vehicles/v1/checkin/x")]
    public void CanPublish_ElsewhereAsVehicle_Refused(string topic) => Assert.False(_policy.CanPublish("v1", topic));

    [Theory]
    [InlineData("fleetlearn/v1/f1/round/current", true)]
    [InlineData("fleetlearn/v1/f1/model/#", true)]
    [InlineData("fleetlearn/v1/f1/vehicles/v1/inbox/#", true)]
    [InlineData("fleetlearn/v1/f1/vehicles/v2/inbox/#", false)]
    [InlineData("fleetlearn/v1/f1/vehicles/+/inbox/#", false)]
    [InlineData("fleetlearn/v1/f1/vehicles/#", false)]
    [InlineData("fleetlearn/v1/f1/#", false)]
    [InlineData("fleetlearn/#", false)]
    [InlineData("#", false)]
    [InlineData("$share/g/fleetlearn/v1/f1/round/current", false)]
    public void CanSubscribe_Vehicle_FollowsRule(string filter, bool allowed) => Assert.Equal(allowed, _policy.CanSubscribe("v1", filter));

    [Fact]
    public void CanPublish_EveryAllowListedChannel_Allowed()
    {
        foreach (var channel in TopicAccessPolicy.VehicleChannels) Assert.True(_policy.CanPublish("v1", $"fleetlearn/v1/f1/vehicles/v1/{channel}"), channel);
        Assert.True(_policy.CanPublish("v1", _t.Up("v1", "eval")));
        Assert.True(_policy.CanPublish("v1", _t.Up("v1", "secagg")));
    }

    [Fact]
    public void CanRetain_Vehicle_OnlyItsSmallPresence()
    {
        Assert.True(_policy.CanRetain("v1", _t.Status("v1"), 7));
        Assert.False(_policy.CanRetain("v1", _t.Status("v1"), TopicAccessPolicy.MaxPresenceBytes + 1));
        Assert.False(_policy.CanRetain("v1", _t.Up("v1", "update"), 7));
        Assert.False(_policy.CanRetain("v1", _t.Checkin("v1"), 7));
        Assert.False(_policy.CanRetain("v1", _t.Status("v2"), 7));
        Assert.True(_policy.CanRetain("aggregator", _t.RoundCurrent, 1 << 20));
    }

    [Fact]
    public void Aggregator_MayDoEverything()
    {
        Assert.True(_policy.CanPublish("aggregator", _t.Inbox("v1", "ack")));
        Assert.True(_policy.CanSubscribe("aggregator", _t.AllUp));
    }
}
