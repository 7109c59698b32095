using System.ComponentModel.DataAnnotations;

using FleetLearn.Core.Rounds;

namespace FleetLearn.Transport.Mqtt;

/// <summary>
/// How a worker reaches the broker (configuration section <c>Mqtt</c>). Defaults suit the embedded broker on one
/// machine; production sets <see cref="UseTls"/> and the certificate paths (Mosquitto with mTLS, broker-config/).
/// </summary>
public sealed class MqttTransportOptions
{
    /// <summary>Configuration section name.</summary>
    public const string Section = "Mqtt";

    /// <summary>Broker host.</summary>
    [Required] public string Host { get; set; } = "127.0.0.1";

    /// <summary>Broker port (1883 plain, 8883 TLS).</summary>
    [Range(1, 65535)] public int Port { get; set; } = 1883;

    /// <summary>Fleet name: the topic prefix is <c>fleetlearn/v1/{fleet}/</c>.</summary>
    [Required] public string Fleet { get; set; } = "default";

    /// <summary>MQTT client id; for a vehicle, its vehicle id (the broker enforces client id = username = vehicle id).</summary>
    [Required] public string ClientId { get; set; } = "";

    /// <summary>Username; null = the client id. With mTLS the broker takes the certificate's CN instead.</summary>
    public string? Username { get; set; }

    /// <summary>Password (embedded broker: the aggregator's secret; vehicles use client certificates in production).</summary>
    public string? Password { get; set; }

    /// <summary>Session expiry: how long the broker keeps the session (subscriptions, queued QoS 1 messages) after a disconnect. Default 1 day.</summary>
    [Range(0, uint.MaxValue)] public long SessionExpirySeconds { get; set; } = 86_400;

    /// <summary>Keep-alive period.</summary>
    [Range(1, 3600)] public int KeepAliveSeconds { get; set; } = 30;

    /// <summary>
    /// The largest MQTT packet FleetLearn's brokers accept (1 MiB: the embedded broker's default and
    /// broker-config/mosquitto.conf's <c>max_packet_size</c>); every chunk fits under it.
    /// </summary>
    public const int BrokerMaxPacketSize = 1 << 20;

    /// <summary>Largest MQTT packet the broker accepts; payloads are chunked under it. Default 256 KiB, at most <see cref="BrokerMaxPacketSize"/>.</summary>
    [Range(4096, BrokerMaxPacketSize)] public int MaxPacketSize { get; set; } = 256 * 1024;

    /// <summary>QoS 1 publishes awaiting PUBACK at once (keep under the broker's Receive Maximum).</summary>
    [Range(1, 65535)] public int MaxInFlight { get; set; } = 16;

    /// <summary>
    /// The socket's receive and send buffers, bytes (default 256 KiB). MQTTnet sets both on every client socket, 8 KiB unless
    /// told otherwise, which fixes the TCP receive window near 16 KB and turns Linux's autotuning off: a connection then moves
    /// at most 16 KB per round trip. With 10,000 vehicles on one broker the aggregator's round trip grew to 14 ms, about 1 MB/s
    /// for the cohort's keys, shares and masked inputs together (docs/scale.md). Linux caps the value at
    /// <c>net.core.rmem_max</c>/<c>wmem_max</c> (208 KiB by default) and doubles it.
    /// </summary>
    [Range(8192, 64 << 20)] public int SocketBufferBytes { get; set; } = 256 * 1024;

    /// <summary>First reconnect delay; doubles (with jitter) up to <see cref="MaxReconnectDelay"/>.</summary>
    public TimeSpan ReconnectDelay { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Longest reconnect delay.</summary>
    public TimeSpan MaxReconnectDelay { get; set; } = TimeSpan.FromMinutes(2);

    /// <summary>Consecutive failed connects after which the circuit opens (no attempt for <see cref="BreakDuration"/>).</summary>
    [Range(2, 1000)] public int BreakAfterFailures { get; set; } = 8;

    /// <summary>How long the circuit stays open.</summary>
    public TimeSpan BreakDuration { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Timeout of one connect attempt.</summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Delay of the presence last will ("offline"): short outages do not flap the status. Default 30 s.</summary>
    [Range(0, uint.MaxValue)] public long WillDelaySeconds { get; set; } = 30;

    /// <summary>
    /// After every reconnect, publish again the last retained message this client published on each topic (cleared ones
    /// excepted) before any other publish goes out. A broker that restarted without persistence (the embedded one without
    /// a retained store, or Mosquitto killed between autosaves) has lost them, and a vehicle that connects afterwards would
    /// never see the round plan or the model. Republishing the same message is harmless: retained state is idempotent.
    /// </summary>
    public bool RepublishRetainedOnReconnect { get; set; } = true;

    /// <summary>Connect with TLS.</summary>
    public bool UseTls { get; set; }

    /// <summary>PEM file of the CA that signed the broker's certificate; null = the system trust store.</summary>
    public string? CaFile { get; set; }

    /// <summary>PEM client certificate (mTLS).</summary>
    public string? CertFile { get; set; }

    /// <summary>PEM private key of <see cref="CertFile"/>.</summary>
    public string? KeyFile { get; set; }

    /// <summary>Host name expected in the broker's certificate; null = <see cref="Host"/>.</summary>
    public string? TlsServerName { get; set; }

    /// <summary>The username the broker will see.</summary>
    public string EffectiveUsername => string.IsNullOrEmpty(Username) ? ClientId : Username;

    /// <summary>Throws <see cref="ArgumentException"/> naming the first invalid setting.</summary>
    public void Validate()
    {
        VehicleId.Validate(Fleet, "Mqtt:Fleet");
        VehicleId.Validate(ClientId, "Mqtt:ClientId");
        if (string.IsNullOrWhiteSpace(Host)) throw new ArgumentException("Mqtt:Host is required.");
        if (Port is < 1 or > 65535) throw new ArgumentException("Mqtt:Port must be within 1..65535.");
        if (MaxPacketSize is < 4096 or > BrokerMaxPacketSize)
            throw new ArgumentException($"Mqtt:MaxPacketSize {MaxPacketSize} is outside 4096..{BrokerMaxPacketSize} (the brokers' packet limit; payloads are chunked under it).");
        if (MaxInFlight < 1) throw new ArgumentException("Mqtt:MaxInFlight must be at least 1.");
        if (ReconnectDelay <= TimeSpan.Zero || MaxReconnectDelay < ReconnectDelay) throw new ArgumentException("Mqtt:ReconnectDelay must be positive and not above Mqtt:MaxReconnectDelay.");
        if (CertFile is null != (KeyFile is null)) throw new ArgumentException("Mqtt:CertFile and Mqtt:KeyFile go together.");
        if (!UseTls && (CertFile is not null || CaFile is not null)) throw new ArgumentException("Mqtt:CaFile/CertFile need Mqtt:UseTls=true.");
        foreach (var file in new[] { CaFile, CertFile, KeyFile })
        {
            if (file is not null && !File.Exists(file)) throw new ArgumentException($"TLS file '{file}' does not exist.");
        }
    }
}
