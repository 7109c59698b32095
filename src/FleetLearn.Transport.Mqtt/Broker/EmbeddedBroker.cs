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
/// authorized) and are dropped, refused subscriptions SUBACK 0x87. With <see cref="EmbeddedBrokerOptions.RetainedStorePath"/>
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
            // No WithDefaultEndpointReuseAddress: on Linux .NET maps it to SO_REUSEPORT as well, and a second broker then
            // shares the port with the first (clients split between them). .NET already sets SO_REUSEADDR on TCP binds, so
            // a restart is not blocked by connections in TIME_WAIT.
            .WithPersistentSessions()
            .WithMaxPendingMessagesPerClient(options.MaxPendingMessagesPerClient);
        if (options.LoopbackOnly) builder.WithDefaultEndpointBoundIPAddress(IPAddress.Loopback).WithDefaultEndpointBoundIPV6Address(IPAddress.None);
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
