namespace FleetLearn.Transport.Mqtt;

/// <summary>An application message as delivered to a subscriber.</summary>
public sealed record MqttIncoming(string Topic, byte[] Payload, bool Retained)
{
    /// <summary>The MQTT 5 message expiry interval as the broker delivered it (what is left of it); null: none.</summary>
    public TimeSpan? ExpiresIn { get; init; }

    /// <summary>MQTT 5 user properties (name, value), in order; empty when none.</summary>
    public IReadOnlyList<(string Name, string Value)> Properties { get; init; } = [];

    /// <summary>The value of the first user property named <paramref name="name"/>, or null.</summary>
    public string? Property(string name) => Properties.FirstOrDefault(p => p.Name == name).Value;
}
