using System.ComponentModel.DataAnnotations;

namespace FleetLearn.Transport.Mqtt.Broker;

/// <summary>Settings of <c>fleetlearn broker</c> (configuration section <c>Broker</c>).</summary>
public sealed class EmbeddedBrokerOptions
{
    /// <summary>Configuration section name.</summary>
    public const string Section = "Broker";

    /// <summary>TCP port; 0 picks a free one (tests).</summary>
    [Range(0, 65535)] public int Port { get; set; } = 1883;

    /// <summary>Bind to loopback only (default) or every interface.</summary>
    public bool LoopbackOnly { get; set; } = true;

    /// <summary>Identities allowed everything (client id = username), each with its password below.</summary>
    public List<string> AggregatorIdentities { get; set; } = ["aggregator"];

    /// <summary>
    /// Password the aggregator identities must present. Null or empty = refuse every aggregator login, so that a
    /// vehicle cannot claim the aggregator's name on a broker that was started without a secret.
    /// </summary>
    public string? AggregatorPassword { get; set; }

    /// <summary>
    /// Password every vehicle must present; null = vehicles are identified, not authenticated (development only;
    /// production vehicles authenticate with client certificates at Mosquitto, broker-config/).
    /// </summary>
    public string? VehiclePassword { get; set; }

    /// <summary>Queued messages per client before the oldest are dropped (Mosquitto's default is 1000).</summary>
    [Range(1, 1_000_000)] public int MaxPendingMessagesPerClient { get; set; } = 10_000;

    /// <summary>
    /// Folder where retained messages (the round plan, the model chunks, presence) are kept across restarts, each change
    /// durable before the publisher's PUBACK; null or empty = memory only (tests, the in-process simulator). Sessions and
    /// their queued QoS 1 messages are not persisted (MQTTnet.Server has no hook for them): a restarted broker reports
    /// "session present: false" and the workers' outbox, resends and periodic check-ins make up for what was queued.
    /// </summary>
    public string? RetainedStorePath { get; set; }
}
