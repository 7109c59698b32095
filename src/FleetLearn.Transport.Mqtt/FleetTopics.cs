using FleetLearn.Core.Rounds;

namespace FleetLearn.Transport.Mqtt;

/// <summary>
/// The topic layout under <c>fleetlearn/v1/{fleet}/</c> (DESIGN.md, Transport):
/// <code>
/// round/current              retained, signed round plan
/// round/slowdown             retained while the aggregator is saturated: how long vehicles hold their resends (<see cref="UplinkPace"/>)
/// model/{version}/{chunk}    retained, chunked global model (its SHA-256 is in the signed plan)
/// vehicles/{id}/checkin      vehicle → aggregator: eligible now
/// vehicles/{id}/up/{kind}    vehicle → aggregator: updates (chunked envelopes), secure-aggregation messages
/// vehicles/{id}/inbox/{kind} aggregator → vehicle: acknowledgements, routed shares, unmask requests
/// vehicles/{id}/status       presence: "online" retained, delayed last will "offline"
/// </code>
/// </summary>
public sealed class FleetTopics
{
    /// <summary>Protocol root; the version lets a v2 layout coexist on one broker.</summary>
    public const string Root = "fleetlearn/v1";

    /// <summary>Creates the layout for one fleet.</summary>
    public FleetTopics(string fleet)
    {
        Fleet = VehicleId.Validate(fleet, "fleet name");
        Prefix = $"{Root}/{fleet}/";
    }

    /// <summary>The fleet name.</summary>
    public string Fleet { get; }

    /// <summary><c>fleetlearn/v1/{fleet}/</c>.</summary>
    public string Prefix { get; }

    /// <summary>The retained, signed round plan.</summary>
    public string RoundCurrent => Prefix + "round/current";

    /// <summary>The aggregator's request to slow down: retained while it is saturated, expiring with the hold it asks for.</summary>
    public string RoundSlowDown => Prefix + "round/slowdown";

    /// <summary>Retained single-writer lease of the fleet's aggregator (aggregators only; vehicles may neither read nor write it).</summary>
    public string AggregatorLease => Prefix + "aggregator/lease";

    /// <summary>Every chunk of every retained model.</summary>
    public string ModelAll => Prefix + "model/#";

    /// <summary>Chunks of model <paramref name="version"/>.</summary>
    public string ModelChunks(long version) => $"{Prefix}model/{version}/#";

    /// <summary>One chunk of model <paramref name="version"/>.</summary>
    public string ModelChunk(long version, int index) => $"{Prefix}model/{version}/{index}";

    /// <summary>Vehicle check-in.</summary>
    public string Checkin(string vehicle) => $"{Prefix}vehicles/{VehicleId.Validate(vehicle)}/checkin";

    /// <summary>Vehicle → aggregator messages of one kind (e.g. <c>update</c>).</summary>
    public string Up(string vehicle, string kind) => $"{Prefix}vehicles/{VehicleId.Validate(vehicle)}/up/{kind}";

    /// <summary>Aggregator → vehicle messages of one kind (e.g. <c>ack</c>).</summary>
    public string Inbox(string vehicle, string kind) => $"{Prefix}vehicles/{VehicleId.Validate(vehicle)}/inbox/{kind}";

    /// <summary>A vehicle's whole inbox.</summary>
    public string InboxAll(string vehicle) => $"{Prefix}vehicles/{VehicleId.Validate(vehicle)}/inbox/#";

    /// <summary>Presence of a vehicle.</summary>
    public string Status(string vehicle) => $"{Prefix}vehicles/{VehicleId.Validate(vehicle)}/status";

    /// <summary>What the aggregator subscribes to: every vehicle's up-link.</summary>
    public string AllUp => Prefix + "vehicles/+/up/#";

    /// <summary>Every vehicle's check-in.</summary>
    public string AllCheckins => Prefix + "vehicles/+/checkin";

    /// <summary>What a sharded round's coordinator takes from vehicles: requests for a model they lack, and evaluation reports (their round traffic goes to the shards).</summary>
    public IReadOnlyList<string> CoordinatorUp => [Prefix + "vehicles/+/up/model", Prefix + "vehicles/+/up/eval"];

    /// <summary>Where aggregator shard <paramref name="shard"/> hands its partial sums to the coordinator (only that shard's identity may publish there).</summary>
    public string ShardPartial(int shard) => FormattableString.Invariant($"{Prefix}shards/{shard}/partial");

    /// <summary>Every shard's partial sums: the coordinator's subscription.</summary>
    public string AllShardPartials => Prefix + "shards/+/partial";

    /// <summary>The shard whose partial-sum topic <paramref name="topic"/> is, or null for any other topic.</summary>
    public int? ParseShardPartial(string topic) => ShardOfPartialTopic(topic, Prefix);

    /// <summary>The shard of a topic <c>fleetlearn/v1/{fleet}/shards/{i}/partial</c> under <paramref name="prefix"/> (any fleet when null), or null.</summary>
    public static int? ShardOfPartialTopic(string topic, string? prefix = null)
    {
        ArgumentNullException.ThrowIfNull(topic);
        var levels = topic.Split('/');
        if (levels.Length != 6 || levels[0] != "fleetlearn" || levels[1] != "v1" || levels[3] != "shards" || levels[5] != "partial") return null;
        if (prefix is not null && !topic.StartsWith(prefix, StringComparison.Ordinal)) return null;
        return int.TryParse(levels[4], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int shard) && shard < PlanShards.MaxShards
            && levels[4] == shard.ToString(System.Globalization.CultureInfo.InvariantCulture) ? shard : null;
    }

    /// <summary>The broker identity (client id and user name) of aggregator shard <paramref name="shard"/>.</summary>
    public static string ShardIdentity(int shard) => FormattableString.Invariant($"aggregator-shard-{shard}");

    /// <summary>
    /// Splits <c>{prefix}vehicles/{id}/{channel}[/{kind}]</c>; false for any other topic (or another fleet).
    /// </summary>
    public bool TryParseVehicleTopic(string topic, out string vehicle, out string channel, out string kind)
    {
        vehicle = channel = kind = "";
        if (!topic.StartsWith(Prefix + "vehicles/", StringComparison.Ordinal)) return false;
        var parts = topic[(Prefix.Length + "vehicles/".Length)..].Split('/');
        if (parts.Length is < 2 or > 3 || !VehicleId.IsValid(parts[0])) return false;
        vehicle = parts[0];
        channel = parts[1];
        kind = parts.Length == 3 ? parts[2] : "";
        return true;
    }

    /// <summary>Where the aggregator sends <paramref name="vehicle"/> the chunks of model <paramref name="version"/> it asked for (it lacked the retained copy).</summary>
    public string InboxModel(string vehicle, long version) => Inbox(vehicle, FormattableString.Invariant($"model-{version}"));

    /// <summary>Splits <c>{prefix}model/{version}/{chunk}</c>, or <paramref name="vehicle"/>'s <see cref="InboxModel"/>, into the model version.</summary>
    public bool TryParseModelTopic(string topic, string vehicle, out long version)
    {
        if (TryParseModelTopic(topic, out version)) return true;
        string prefix = Inbox(vehicle, "model-");
        return topic.StartsWith(prefix, StringComparison.Ordinal)
            && long.TryParse(topic.AsSpan(prefix.Length), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out version);
    }

    /// <summary>Splits <c>{prefix}model/{version}/{chunk}</c>.</summary>
    public bool TryParseModelTopic(string topic, out long version)
    {
        version = 0;
        if (!topic.StartsWith(Prefix + "model/", StringComparison.Ordinal)) return false;
        var parts = topic[(Prefix.Length + "model/".Length)..].Split('/');
        return parts.Length == 2 && long.TryParse(parts[0], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out version);
    }
}
