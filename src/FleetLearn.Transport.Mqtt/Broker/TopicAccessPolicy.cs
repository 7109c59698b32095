using FleetLearn.Core.Rounds;

namespace FleetLearn.Transport.Mqtt.Broker;

/// <summary>
/// The per-vehicle rule (DESIGN.md, Transport), shared by the embedded broker and mirrored in Mosquitto's ACL file:
/// a vehicle publishes only under <c>fleetlearn/v1/{fleet}/vehicles/{its id}/</c> and subscribes only to
/// <c>round/…</c>, <c>model/…</c> and its own <c>inbox/…</c>; an aggregator identity may do everything. Wildcards in a
/// vehicle's filter may not widen it beyond those subtrees.
/// </summary>
public sealed class TopicAccessPolicy(IEnumerable<string> aggregatorIdentities)
{
    private readonly HashSet<string> _aggregators = new(aggregatorIdentities, StringComparer.Ordinal);

    /// <summary>True for an identity allowed everything.</summary>
    public bool IsAggregator(string identity) => _aggregators.Contains(identity);

    /// <summary>May <paramref name="identity"/> publish to <paramref name="topic"/>?</summary>
    public bool CanPublish(string identity, string topic)
    {
        if (IsAggregator(identity)) return true;
        if (!VehicleId.IsValid(identity) || topic.Contains('+', StringComparison.Ordinal) || topic.Contains('#', StringComparison.Ordinal)) return false;
        var levels = topic.Split('/');
        // fleetlearn / v1 / {fleet} / vehicles / {id} / {channel}[/…]
        return levels.Length >= 6 && levels[0] == "fleetlearn" && levels[1] == "v1" && VehicleId.IsValid(levels[2])
            && levels[3] == "vehicles" && levels[4] == identity && levels[5] is "checkin" or "up" or "status"
            && !(levels[5] is "checkin" or "status" && levels.Length != 6);
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
