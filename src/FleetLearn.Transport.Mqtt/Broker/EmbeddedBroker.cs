using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using MQTTnet.Protocol;
using MQTTnet.Server;

namespace FleetLearn.Transport.Mqtt.Broker;

/// <summary>
/// The embedded MQTT 5 broker (MQTTnet.Server) with persistent sessions and the per-vehicle rules of
/// <see cref="TopicAccessPolicy"/>: client id = username = vehicle id; refused publishes get PUBACK 0x87 (not
/// authorized) and are dropped, refused subscriptions SUBACK 0x87.
/// </summary>
public sealed class EmbeddedBroker : IAsyncDisposable
{
    private readonly EmbeddedBrokerOptions _options;
    private readonly ILogger _log;
    private readonly MqttServer _server;
    private readonly TopicAccessPolicy _policy;
    private long _refusedPublishes;
    private long _refusedSubscriptions;
    private long _refusedConnections;

    /// <summary>Creates a stopped broker.</summary>
    public EmbeddedBroker(EmbeddedBrokerOptions options, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        _options = options;
        _log = logger ?? NullLogger.Instance;
        foreach (var id in options.AggregatorIdentities) VehicleId.Validate(id, "aggregator identity");
        Port = options.Port == 0 ? FreePort() : options.Port;
        _policy = new TopicAccessPolicy(options.AggregatorIdentities);
        var builder = new MqttServerFactory().CreateServerOptionsBuilder()
            .WithDefaultEndpoint()
            .WithDefaultEndpointPort(Port)
            .WithDefaultEndpointReuseAddress()
            .WithPersistentSessions()
            .WithMaxPendingMessagesPerClient(options.MaxPendingMessagesPerClient);
        if (options.LoopbackOnly) builder.WithDefaultEndpointBoundIPAddress(IPAddress.Loopback).WithDefaultEndpointBoundIPV6Address(IPAddress.None);
        _server = new MqttServerFactory().CreateMqttServer(builder.Build());
        _server.ValidatingConnectionAsync += ValidateConnection;
        _server.InterceptingPublishAsync += InterceptPublish;
        _server.InterceptingSubscriptionAsync += InterceptSubscription;
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
        if (!VehicleId.IsValid(e.ClientId) || e.ClientId != user) refuse = MqttConnectReasonCode.ClientIdentifierNotValid;
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
        if (!_policy.CanPublish(e.ClientId, e.ApplicationMessage.Topic))
        {
            e.ProcessPublish = false;
            e.Response.ReasonCode = MqttPubAckReasonCode.NotAuthorized;
            Interlocked.Increment(ref _refusedPublishes);
            _log.LogWarning("broker: refused publish by '{Client}' to '{Topic}'.", e.ClientId, e.ApplicationMessage.Topic);
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
