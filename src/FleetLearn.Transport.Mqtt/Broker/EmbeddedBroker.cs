using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using FleetLearn.Core.Rounds;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using MQTTnet.Protocol;
using MQTTnet.Server;

namespace FleetLearn.Transport.Mqtt.Broker;

/// <summary>
/// The embedded MQTT 5 broker (MQTTnet.Server) with persistent sessions and the per-vehicle rules of
/// <see cref="TopicAccessPolicy"/>: client id = authenticated identity (the client certificate's CN under mutual TLS,
/// required beyond the loopback; the username on a loopback-only development broker); refused publishes (off the
/// allow-list, retained by a vehicle, over <see cref="EmbeddedBrokerOptions.MaxPacketSize"/>) get a PUBACK error and are
/// dropped, refused subscriptions SUBACK 0x87. With <see cref="EmbeddedBrokerOptions.RetainedStorePath"/>
/// its retained messages survive a restart (<see cref="RetainedMessageStore"/>); MQTTnet awaits the change handler
/// before it acknowledges the publish, so a PUBACK for a retained message means it is on disk.
/// </summary>
public sealed class EmbeddedBroker : IAsyncDisposable
{
    private readonly EmbeddedBrokerOptions _options;
    private readonly ILogger _log;
    private readonly MqttServer _server;
    private readonly TopicAccessPolicy _policy;
    private readonly RetainedMessageStore? _retainedStore;
    private long _refusedPublishes;
    private long _retainedStoreFailures;
    private long _refusedSubscriptions;
    private long _refusedConnections;
    private readonly TimeProvider _time;
    private readonly X509Certificate2? _clientCa;
    private readonly object _crlGate = new();
    private CertificateRevocationList? _crl;
    private DateTime _crlWritten;

    /// <summary>Creates a stopped broker; <see cref="ArgumentException"/> when <paramref name="options"/> are invalid (e.g. every interface without mutual TLS).</summary>
    public EmbeddedBroker(EmbeddedBrokerOptions options, ILogger? logger = null, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
        _log = logger ?? NullLogger.Instance;
        _time = time ?? TimeProvider.System;
        foreach (var id in options.AggregatorIdentities) VehicleId.Validate(id, "aggregator identity");
        Port = options.Port == 0 ? FreePort() : options.Port;
        _policy = new TopicAccessPolicy(options.AggregatorIdentities);
        var builder = new MqttServerFactory().CreateServerOptionsBuilder()
            .WithPersistentSessions()
            .WithMaxPendingMessagesPerClient(options.MaxPendingMessagesPerClient)
            .WithConnectionBacklog(options.ConnectionBacklog);
        if (options.MutualTls)
        {
            _clientCa = X509CertificateLoader.LoadCertificateFromFile(options.ClientCaFile!);
            if (!string.IsNullOrWhiteSpace(options.CrlFile)) ReloadCrlIfChanged(atStart: true);
            using var pem = X509Certificate2.CreateFromPemFile(options.TlsCertificateFile!, options.TlsKeyFile);
            // SslStream wants a key it can use from any handle; re-import through PKCS#12.
            var serverCertificate = X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null);
            builder.WithoutDefaultEndpoint()
                .WithEncryptedEndpoint()
                .WithEncryptedEndpointPort(Port)
                .WithEncryptionCertificate(serverCertificate)
                .WithEncryptionSslProtocol(SslProtocols.Tls12 | SslProtocols.Tls13)
                .WithClientCertificate(ValidateClientCertificate);
            if (options.LoopbackOnly) builder.WithEncryptedEndpointBoundIPAddress(IPAddress.Loopback).WithEncryptedEndpointBoundIPV6Address(IPAddress.None);
        }
        else
        {
            // No ...ReuseAddress: on Linux .NET maps it to SO_REUSEPORT as well, and a second broker then shares the port with
            // the first (clients split between them). .NET already sets SO_REUSEADDR, so TIME_WAIT does not block a restart.
            builder.WithDefaultEndpoint().WithDefaultEndpointPort(Port);
            if (options.LoopbackOnly) builder.WithDefaultEndpointBoundIPAddress(IPAddress.Loopback).WithDefaultEndpointBoundIPV6Address(IPAddress.None);
        }
        _server = new MqttServerFactory().CreateMqttServer(builder.Build());
        _server.ValidatingConnectionAsync += ValidateConnection;
        _server.InterceptingPublishAsync += InterceptPublish;
        _server.InterceptingSubscriptionAsync += InterceptSubscription;
        if (!string.IsNullOrWhiteSpace(options.RetainedStorePath))
        {
            _retainedStore = new RetainedMessageStore(options.RetainedStorePath);
            _server.LoadingRetainedMessageAsync += LoadRetained;
            _server.RetainedMessageChangedAsync += SaveRetained;
            _server.RetainedMessagesClearedAsync += _ =>
            {
                _retainedStore.Clear();
                return Task.CompletedTask;
            };
        }
    }

    /// <summary>The port it listens on.</summary>
    public int Port { get; }

    /// <summary>The access rule in force.</summary>
    public TopicAccessPolicy Policy => _policy;

    /// <summary>Publishes refused by the ACL.</summary>
    public long RefusedPublishes => Interlocked.Read(ref _refusedPublishes);

    /// <summary>Subscriptions refused by the ACL.</summary>
    public long RefusedSubscriptions => Interlocked.Read(ref _refusedSubscriptions);

    /// <summary>Connections refused.</summary>
    public long RefusedConnections => Interlocked.Read(ref _refusedConnections);

    /// <summary>The folder of the retained-message store, or null when retained messages live in memory only.</summary>
    public string? RetainedStorePath => _retainedStore?.Folder;

    /// <summary>Retained messages read back from the store at the last start.</summary>
    public int RestoredRetainedMessages { get; private set; }

    /// <summary>Store files skipped at the last start because they did not read back (name and reason).</summary>
    public IReadOnlyList<string> SkippedRetainedFiles { get; private set; } = [];

    /// <summary>Retained changes that could not be written to the store (logged; the message is still served from memory).</summary>
    public long RetainedStoreFailures => Interlocked.Read(ref _retainedStoreFailures);

    /// <summary>True with mutual TLS: clients are identified by their device certificate.</summary>
    public bool MutualTls => _options.MutualTls;

    /// <summary>The CRL in force (null without <see cref="EmbeddedBrokerOptions.CrlFile"/>).</summary>
    public CertificateRevocationList? Crl
    {
        get
        {
            lock (_crlGate) return _crl;
        }
    }

    /// <summary>True when the CRL in force expires within <see cref="EmbeddedBrokerOptions.CrlRenewalMargin"/> (or has): run broker-config/renew-crl.sh.</summary>
    public bool CrlNeedsRenewal => Crl?.NeedsRenewal(_time.GetUtcNow(), _options.CrlRenewalMargin) == true;

    /// <summary>Starts listening.</summary>
    public Task StartAsync() => _server.StartAsync();

    /// <summary>Stops listening and disconnects every client.</summary>
    public Task StopAsync() => _server.StopAsync();

    public async ValueTask DisposeAsync()
    {
        if (_server.IsStarted) await _server.StopAsync().ConfigureAwait(false);
        _server.Dispose();
    }

    private Task ValidateConnection(ValidatingConnectionEventArgs e)
    {
        string user = e.UserName ?? "";
        MqttConnectReasonCode? refuse = null;
        if (_options.MutualTls)
        {
            // The identity is the certificate's CN (checked against the device CA during the handshake); the client id
            // names the session, so it must be that identity, or one vehicle could take over another's session.
            string? identity = e.ClientCertificate?.GetNameInfo(X509NameType.SimpleName, forIssuer: false);
            if (identity is null) refuse = MqttConnectReasonCode.NotAuthorized;
            else if (!VehicleId.IsValid(identity) || e.ClientId != identity || user.Length > 0 && user != identity) refuse = MqttConnectReasonCode.ClientIdentifierNotValid;
            else if (Crl is { } crl && crl.IsStale(_time.GetUtcNow())) refuse = MqttConnectReasonCode.ServerUnavailable;
        }
        else if (!VehicleId.IsValid(e.ClientId) || e.ClientId != user) refuse = MqttConnectReasonCode.ClientIdentifierNotValid;
        else if (_policy.IsAggregator(user))
        {
            if (string.IsNullOrEmpty(_options.AggregatorPassword) || !FixedTimeEquals(e.Password, _options.AggregatorPassword)) refuse = MqttConnectReasonCode.BadUserNameOrPassword;
        }
        else if (!string.IsNullOrEmpty(_options.VehiclePassword) && !FixedTimeEquals(e.Password, _options.VehiclePassword))
        {
            refuse = MqttConnectReasonCode.BadUserNameOrPassword;
        }
        if (refuse is { } code)
        {
            e.ReasonCode = code;
            Interlocked.Increment(ref _refusedConnections);
            _log.LogWarning("broker: refused connection of client '{Client}' user '{User}': {Code}.", e.ClientId, user, code);
        }
        return Task.CompletedTask;
    }

    private Task InterceptPublish(InterceptingPublishEventArgs e)
    {
        // Messages the server injects itself (none today) have no client id.
        if (string.IsNullOrEmpty(e.ClientId)) return Task.CompletedTask;
        var message = e.ApplicationMessage;
        // MQTTnet has read the whole packet by now (it has no read-time limit, unlike Mosquitto's max_packet_size):
        // refusing it and closing the connection stops a sender from repeating it.
        long size = message.Payload.Length + System.Text.Encoding.UTF8.GetByteCount(message.Topic);
        string? why = null;
        if (size > _options.MaxPacketSize)
        {
            e.Response.ReasonCode = MqttPubAckReasonCode.PayloadFormatInvalid;
            e.CloseConnection = true;
            why = $"{size} bytes is over the {_options.MaxPacketSize}-byte packet limit";
        }
        else if (!_policy.CanPublish(e.ClientId, message.Topic))
        {
            e.Response.ReasonCode = MqttPubAckReasonCode.NotAuthorized;
            why = "not on its allow-list";
        }
        else if (message.Retain && !_policy.CanRetain(e.ClientId, message.Topic, message.Payload.Length))
        {
            e.Response.ReasonCode = MqttPubAckReasonCode.NotAuthorized;
            why = "vehicles may retain only their presence";
        }
        if (why is not null)
        {
            e.ProcessPublish = false;
            Interlocked.Increment(ref _refusedPublishes);
            _log.LogWarning("broker: refused publish by '{Client}' to '{Topic}': {Why}.", e.ClientId, message.Topic, why);
        }
        return Task.CompletedTask;
    }

    private Task InterceptSubscription(InterceptingSubscriptionEventArgs e)
    {
        if (!_policy.CanSubscribe(e.ClientId, e.TopicFilter.Topic))
        {
            e.ProcessSubscription = false;
            e.Response.ReasonCode = MqttSubscribeReasonCode.NotAuthorized;
            Interlocked.Increment(ref _refusedSubscriptions);
            _log.LogWarning("broker: refused subscription by '{Client}' to '{Filter}'.", e.ClientId, e.TopicFilter.Topic);
        }
        return Task.CompletedTask;
    }

    /// <summary>The TLS handshake's check: a certificate for client authentication that chains to the device CA and is not revoked.</summary>
    private bool ValidateClientCertificate(object sender, X509Certificate? certificate, X509Chain? chain, SslPolicyErrors errors)
    {
        string? why = null;
        if (certificate is null) why = "no client certificate";
        else
        {
            using var leaf = X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
            using var own = new X509Chain();
            own.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
            own.ChainPolicy.CustomTrustStore.Add(_clientCa!);
            own.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck; // the CRL below, read from the file Mosquitto uses
            own.ChainPolicy.ApplicationPolicy.Add(new System.Security.Cryptography.Oid("1.3.6.1.5.5.7.3.2")); // clientAuth
            own.ChainPolicy.VerificationTime = _time.GetUtcNow().UtcDateTime;
            if (!own.Build(leaf)) why = $"certificate {leaf.Subject} does not chain to the device CA for client authentication ({string.Join(", ", own.ChainStatus.Select(s => s.Status))})";
            else if (!string.IsNullOrWhiteSpace(_options.CrlFile))
            {
                ReloadCrlIfChanged(atStart: false);
                var crl = Crl;
                if (crl is null || crl.IsStale(_time.GetUtcNow())) why = $"the CRL {_options.CrlFile} is stale (next update {crl?.NextUpdate:u}); renew it with broker-config/renew-crl.sh";
                else if (crl.IsRevoked(leaf)) why = $"certificate {leaf.Subject} (serial {leaf.SerialNumber}) is revoked";
            }
        }
        if (why is null) return true;
        Interlocked.Increment(ref _refusedConnections);
        _log.LogWarning("broker: refused a TLS client: {Why}.", why);
        return false;
    }

    /// <summary>Reads the CRL again when its file changed; at start a bad or stale CRL is an error, later it is logged and the last good one kept.</summary>
    private void ReloadCrlIfChanged(bool atStart)
    {
        string path = _options.CrlFile!;
        var written = File.GetLastWriteTimeUtc(path);
        lock (_crlGate)
        {
            if (_crl is not null && written == _crlWritten) return;
            try
            {
                var crl = CertificateRevocationList.Load(path, _clientCa!);
                var now = _time.GetUtcNow();
                if (atStart && crl.IsStale(now))
                    throw new ArgumentException($"Broker:CrlFile '{path}' is stale: its next update was {crl.NextUpdate:u}. Renew it (bash broker-config/renew-crl.sh CERT_DIR) before starting the broker.");
                if (crl.NeedsRenewal(now, _options.CrlRenewalMargin))
                    _log.LogWarning("broker: the CRL {Path} expires at {Next:u}; renew it (broker-config/renew-crl.sh) before every client is refused.", path, crl.NextUpdate);
                _crl = crl;
                _crlWritten = written;
            }
            catch (InvalidDataException e) when (!atStart)
            {
                _log.LogError("broker: {Error}; keeping the CRL read before.", e.Message);
                _crlWritten = written;
            }
            catch (InvalidDataException e)
            {
                throw new ArgumentException($"Broker:CrlFile: {e.Message}", e);
            }
        }
    }

    private Task LoadRetained(LoadingRetainedMessagesEventArgs e)
    {
        var (messages, skipped) = _retainedStore!.Load();
        foreach (var reason in skipped) _log.LogWarning("broker: skipped retained-message file {Reason}.", reason);
        e.LoadedRetainedMessages = messages;
        RestoredRetainedMessages = messages.Count;
        SkippedRetainedFiles = skipped;
        if (messages.Count > 0) _log.LogInformation("broker: restored {Count} retained messages from {Folder}.", messages.Count, _retainedStore.Folder);
        return Task.CompletedTask;
    }

    private async Task SaveRetained(RetainedMessageChangedEventArgs e)
    {
        string topic = e.ChangedRetainedMessage.Topic;
        try
        {
            // MQTTnet updates its in-memory copy under a lock and calls this handler afterwards, one at a time: writing the
            // message current now (not the one in the event) keeps the file right when two changes of a topic overtake.
            var current = await _server.GetRetainedMessageAsync(topic).ConfigureAwait(false);
            if (current is null || current.Payload.IsEmpty) _retainedStore!.Delete(topic);
            else _retainedStore!.Save(current);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            Interlocked.Increment(ref _retainedStoreFailures);
            _log.LogError(ex, "broker: could not store the retained message of '{Topic}' in {Folder}.", topic, _retainedStore!.Folder);
        }
    }

    private static bool FixedTimeEquals(string? a, string b) =>
        a is not null && System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(System.Text.Encoding.UTF8.GetBytes(a), System.Text.Encoding.UTF8.GetBytes(b));

    /// <summary>A TCP port free on loopback right now.</summary>
    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
