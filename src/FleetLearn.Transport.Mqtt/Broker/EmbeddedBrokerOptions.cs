using System.ComponentModel.DataAnnotations;

namespace FleetLearn.Transport.Mqtt.Broker;

/// <summary>Settings of <c>fleetlearn broker</c> (configuration section <c>Broker</c>).</summary>
public sealed class EmbeddedBrokerOptions
{
    /// <summary>Configuration section name.</summary>
    public const string Section = "Broker";

    /// <summary>TCP port; 0 picks a free one (tests).</summary>
    [Range(0, 65535)] public int Port { get; set; } = 1883;

    /// <summary>Bind to loopback only (default) or every interface; every interface requires <see cref="MutualTls"/>.</summary>
    public bool LoopbackOnly { get; set; } = true;

    /// <summary>PEM certificate the broker presents (broker.crt of broker-config/make-dev-ca.sh); part of <see cref="MutualTls"/>.</summary>
    public string? TlsCertificateFile { get; set; }

    /// <summary>PEM private key of <see cref="TlsCertificateFile"/>.</summary>
    public string? TlsKeyFile { get; set; }

    /// <summary>
    /// The device CA (ca.crt, the same as Mosquitto's <c>cafile</c>): every client must present a certificate it issued for
    /// client authentication, and its CN is the client's identity, which the client id must equal.
    /// </summary>
    public string? ClientCaFile { get; set; }

    /// <summary>
    /// The device CA's CRL (ca.crl): revoked certificates are refused. Read again whenever the file changes; once it is
    /// stale every client is refused, as Mosquitto does, so renew it in time (broker-config/renew-crl.sh).
    /// </summary>
    public string? CrlFile { get; set; }

    /// <summary>A CRL expiring within this margin is reported (log, <see cref="EmbeddedBroker.CrlNeedsRenewal"/>). Default 7 days.</summary>
    public TimeSpan CrlRenewalMargin { get; set; } = TimeSpan.FromDays(7);

    /// <summary>
    /// Largest publish (payload plus topic) accepted; larger ones are refused and their sender disconnected. Default and
    /// most: <see cref="MqttTransportOptions.BrokerMaxPacketSize"/>, which every chunk fits under.
    /// </summary>
    [Range(4096, MqttTransportOptions.BrokerMaxPacketSize)] public int MaxPacketSize { get; set; } = MqttTransportOptions.BrokerMaxPacketSize;

    /// <summary>True when the broker certificate, its key and the device CA are all set: TLS only, client certificates required.</summary>
    public bool MutualTls => !string.IsNullOrWhiteSpace(TlsCertificateFile) && !string.IsNullOrWhiteSpace(TlsKeyFile) && !string.IsNullOrWhiteSpace(ClientCaFile);

    /// <summary>Throws <see cref="ArgumentException"/> naming the first invalid setting.</summary>
    public void Validate()
    {
        if (Port is < 0 or > 65535) throw new ArgumentException($"Broker:Port {Port} is outside 0..65535.");
        if (ConnectionBacklog is < 1 or > 65535) throw new ArgumentException($"Broker:ConnectionBacklog {ConnectionBacklog} is outside 1..65535.");
        if (MaxPacketSize is < 4096 or > MqttTransportOptions.BrokerMaxPacketSize)
            throw new ArgumentException($"Broker:MaxPacketSize {MaxPacketSize} is outside 4096..{MqttTransportOptions.BrokerMaxPacketSize}.");
        bool anyTls = new[] { TlsCertificateFile, TlsKeyFile, ClientCaFile }.Any(f => !string.IsNullOrWhiteSpace(f));
        if (anyTls && !MutualTls)
            throw new ArgumentException("Broker:TlsCertificateFile, Broker:TlsKeyFile and Broker:ClientCaFile go together (mutual TLS with the device CA).");
        if (!string.IsNullOrWhiteSpace(CrlFile) && !MutualTls) throw new ArgumentException("Broker:CrlFile needs mutual TLS (Broker:ClientCaFile).");
        if (!LoopbackOnly && !MutualTls)
            throw new ArgumentException("Listening beyond the loopback (Broker:LoopbackOnly=false, --bind-all) requires mutual TLS: set Broker:TlsCertificateFile, Broker:TlsKeyFile and Broker:ClientCaFile (--tls-cert, --tls-key, --client-ca; the device CA of broker-config/make-dev-ca.sh). Without it any host could claim any vehicle id.");
        foreach (var (name, file) in new[] { ("TlsCertificateFile", TlsCertificateFile), ("TlsKeyFile", TlsKeyFile), ("ClientCaFile", ClientCaFile), ("CrlFile", CrlFile) })
        {
            if (!string.IsNullOrWhiteSpace(file) && !File.Exists(file)) throw new ArgumentException($"Broker:{name} '{file}' does not exist.");
        }
    }

    /// <summary>Identities allowed everything (client id = username), each with its password below.</summary>
    public List<string> AggregatorIdentities { get; set; } = ["aggregator"];

    /// <summary>
    /// Password the aggregator identities must present (not under mutual TLS, where the certificate is the credential).
    /// Null or empty = refuse every aggregator login, so that a
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
    /// Connections the listening socket queues before the broker accepts them (the <c>listen</c> backlog; Linux caps it at
    /// <c>net.core.somaxconn</c>, 4096 on current kernels). MQTTnet's own default is 10: when a fleet (re)connects at once —
    /// after a broker restart, or a thousand simulated agents starting — the kernel drops the SYNs past it, each client waits out
    /// TCP's retransmission (1 s, 3 s, 7 s …), its connect times out, and the retry takes over the session the late first attempt
    /// opened (<c>SessionTakenOver</c>).
    /// </summary>
    [Range(1, 65535)] public int ConnectionBacklog { get; set; } = 4096;

    /// <summary>
    /// Folder where retained messages (the round plan, the model chunks, presence) are kept across restarts, each change
    /// durable before the publisher's PUBACK; null or empty = memory only (tests, the in-process simulator). Sessions and
    /// their queued QoS 1 messages are not persisted (MQTTnet.Server has no hook for them): a restarted broker reports
    /// "session present: false" and the workers' outbox, resends and periodic check-ins make up for what was queued.
    /// </summary>
    public string? RetainedStorePath { get; set; }
}
