using FleetLearn.Transport.Mqtt;

namespace FleetLearn.Testing;

/// <summary>MQTT client settings for a test broker on loopback: quick reconnects and small packets (models and updates travel in chunks).</summary>
public static class TestMqtt
{
    /// <summary>Options for <paramref name="clientId"/> on <paramref name="port"/> in <paramref name="fleet"/>.</summary>
    public static MqttTransportOptions Options(int port, string fleet, string clientId, string? password = null, int maxPacketSize = 8192) => new()
    {
        Host = "127.0.0.1",
        Port = port,
        Fleet = fleet,
        ClientId = clientId,
        Password = password,
        ReconnectDelay = TimeSpan.FromMilliseconds(50),
        MaxReconnectDelay = TimeSpan.FromMilliseconds(500),
        MaxPacketSize = maxPacketSize,
    };
}
