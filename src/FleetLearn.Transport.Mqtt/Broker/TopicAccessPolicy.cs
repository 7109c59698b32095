using FleetLearn.Core.Rounds;

namespace FleetLearn.Transport.Mqtt.Broker;

/// <summary>
/// The per-vehicle rule (DESIGN.md, Transport), shared by the embedded broker and mirrored in Mosquitto's ACL file:
/// a vehicle publishes only to the exact topics of <see cref="VehicleChannels"/> under
/// <c>fleetlearn/v1/{fleet}/vehicles/{its id}/</c>, retains nothing but its presence, and subscribes only to
/// <c>round/…</c>, <c>model/…</c> and its own <c>inbox/…</c>; an aggregator identity may do everything but publish another
/// shard's partial sums (<c>shards/{i}/partial</c>: only <see cref="FleetTopics.ShardIdentity"/>(i)). Wildcards in a
/// vehicle's filter may not widen it beyond those subtrees.
/// </summary>
public sealed class TopicAccessPolicy(IEnumerable<string> aggregatorIdentities)
{
    private readonly HashSet<string> _aggregators = new(aggregatorIdentities, StringComparer.Ordinal);

    /// <summary>True for an identity allowed everything.</summary>
    public bool IsAggregator(string identity) => _aggregators.Contains(identity);

    /// <summary>The topics under <c>vehicles/{id}/</c> a vehicle may publish to, and nothing else.</summary>
    public static IReadOnlyList<string> VehicleChannels { get; } = ["checkin", "status", "up/update", "up/secagg", "up/eval", "up/model"];

    /// <summary>Largest retained payload a vehicle may publish: its presence ("online" / "offline") on <c>status</c>.</summary>
    public const int MaxPresenceBytes = 64;

    /// <summary>May <paramref name="identity"/> publish to <paramref name="topic"/>?</summary>
    public bool CanPublish(string identity, string topic)
    {
        // A shard's partial sums go into the released model: only that shard may hand them on, not another shard, not the coordinator.
        if (FleetTopics.ShardOfPartialTopic(topic) is { } shard) return IsAggregator(identity) && identity == FleetTopics.ShardIdentity(shard);
        if (IsAggregator(identity)) return true;
        if (!VehicleId.IsValid(identity) || topic.Contains('+', StringComparison.Ordinal) || topic.Contains('#', StringComparison.Ordinal)) return false;
        var levels = topic.Split('/');
        // fleetlearn / v1 / {fleet} / vehicles / {id} / one of VehicleChannels, exactly
        if (levels.Length is < 6 or > 7 || levels[0] != "fleetlearn" || levels[1] != "v1" || !VehicleId.IsValid(levels[2])
            || levels[3] != "vehicles" || levels[4] != identity) return false;
        string channel = levels.Length == 6 ? levels[5] : levels[5] + "/" + levels[6];
        return VehicleChannels.Contains(channel);
    }

    /// <summary>
    /// May <paramref name="identity"/> publish a retained message of <paramref name="payloadBytes"/> to
    /// <paramref name="topic"/>? A vehicle only its presence on its own <c>status</c> (one small message per vehicle): a
    /// retained update, key or check-in would be stored by the broker for ever and replayed to every new subscriber.
    /// </summary>
    public bool CanRetain(string identity, string topic, long payloadBytes)
    {
        if (IsAggregator(identity)) return true;
        return CanPublish(identity, topic) && topic.EndsWith("/status", StringComparison.Ordinal) && payloadBytes <= MaxPresenceBytes;
    }

    /// <summary>May <paramref name="identity"/> subscribe to <paramref name="filter"/>?</summary>
    public bool CanSubscribe(string identity, string filter)
    {
        if (IsAggregator(identity)) return true;
        if (!VehicleId.IsValid(identity)) return false;
        if (filter.StartsWith("$share/", StringComparison.Ordinal) || filter.StartsWith('$')) return false;
        var levels = filter.Split('/');
        if (levels.Length < 4 || levels[0] != "fleetlearn" || levels[1] != "v1" || !VehicleId.IsValid(levels[2])) return false;
        // A '#' or '+' before the subtree is fixed could match other vehicles' topics.
        if (levels[3] is "round" or "model") return true; // anything under round/ and model/, wildcards included
        return levels.Length >= 6 && levels[3] == "vehicles" && levels[4] == identity && levels[5] == "inbox";
    }
}
