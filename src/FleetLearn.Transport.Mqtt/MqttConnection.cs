// Long (over 450 lines) because it is the whole MQTTnet client boundary in one place: connect and backoff, resubscribe,
// retained republish after reconnects, in-flight limits, message conversion and TLS.
using System.Buffers;
using System.Collections.Concurrent;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using MQTTnet;
using MQTTnet.Adapter;
using MQTTnet.Exceptions;
using MQTTnet.Packets;
using MQTTnet.Protocol;
using Polly;
using Polly.CircuitBreaker;
using Polly.Retry;

namespace FleetLearn.Transport.Mqtt;

/// <summary>The broker refused a connect, subscribe or publish (e.g. not authorized). Not transient.</summary>
public sealed class MqttRefusedException(string message) : Exception(message);

/// <summary>
/// The connection supervisor that MQTTnet v5 no longer ships (no managed client, issue #2243): connects with a Polly
/// pipeline (jittered exponential backoff around a circuit breaker), checks <c>ConnectAsync</c>'s result code (v5 does
/// not throw on refusal), reconnects after every disconnect, resubscribes, and limits in-flight QoS 1 publishes to
/// stay under the broker's Receive Maximum. Sessions are persistent (Clean Start off, session expiry), so the broker
/// queues QoS 1 messages for a vehicle while it is away. MQTTnet never resends a publish that failed on disconnect
/// (issue #1096): durability is the caller's outbox, which republishes until the application-level ack. Retained
/// messages are the publisher's state, not the broker's: the connection remembers the last one per topic and publishes
/// them again after a reconnect (<see cref="MqttTransportOptions.RepublishRetainedOnReconnect"/>), so that a broker that
/// lost them in a restart serves them again.
/// </summary>
public sealed class MqttConnection : IAsyncDisposable
{
    private readonly MqttTransportOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _log;
    private readonly IMqttClient _client;
    private readonly MqttClientOptions _clientOptions;
    private readonly ResiliencePipeline _connectPipeline;
    private readonly SemaphoreSlim _inFlight;
    private readonly ConcurrentDictionary<string, MqttQualityOfServiceLevel> _subscriptions = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, RetainedEntry> _retained = new(StringComparer.Ordinal);
    private readonly string? _presenceTopic;
    private readonly object _gate = new();
    private TaskCompletionSource _connected = NewSignal();
    private TaskCompletionSource _disconnected = NewSignal();
    private CancellationTokenSource? _stop;
    private volatile bool _stopping;
    private Task? _loop;
    private long _connects;
    private long _retainedRepublished;
    private long _retainedSequence;

    /// <summary>Creates a supervisor; nothing connects before <see cref="Start"/>. <paramref name="presenceTopic"/> gets "online" (retained) and a delayed "offline" will.</summary>
    public MqttConnection(MqttTransportOptions options, TimeProvider? time = null, ILogger? logger = null, string? presenceTopic = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
        _time = time ?? TimeProvider.System;
        _log = logger ?? NullLogger.Instance;
        _presenceTopic = presenceTopic;
        Topics = new FleetTopics(options.Fleet);
        _inFlight = new SemaphoreSlim(options.MaxInFlight, options.MaxInFlight);
        _client = new MqttClientFactory().CreateMqttClient();
        _clientOptions = BuildClientOptions(options, presenceTopic);
        _client.DisconnectedAsync += e =>
        {
            lock (_gate)
            {
                // MQTTnet raises this event on a background task, also for a failed connect attempt, so it can arrive after
                // the next connection is up: that event is stale and must not tear the new session down.
                if (_client.IsConnected) return Task.CompletedTask;
                _disconnected.TrySetResult();
                if (_connected.Task.IsCompleted) _connected = NewSignal();
            }
            // Our own StopAsync, or a peer that ends the session normally, is how a run ends: information, not a warning.
            if (e.ClientWasConnected)
                _log.Log(IsExpectedDisconnect(e.Reason) ? LogLevel.Information : LogLevel.Warning, "MQTT {Client}: disconnected ({Reason}).", options.ClientId, e.Reason);
            return Task.CompletedTask;
        };
        _client.ApplicationMessageReceivedAsync += async e =>
        {
            var handler = MessageReceived;
            if (handler is null) return;
            var m = e.ApplicationMessage;
            var message = new MqttIncoming(m.Topic, m.Payload.ToArray(), m.Retain)
            {
                ExpiresIn = m.MessageExpiryInterval > 0 ? TimeSpan.FromSeconds(m.MessageExpiryInterval) : null,
                Properties = m.UserProperties is { Count: > 0 } p ? [.. p.Select(u => (u.Name, u.ReadValueAsString()))] : [],
            };
            try
            {
                // The PUBACK goes out after the handler returns: a handler that hands the message to a bounded channel
                // applies back-pressure to the broker instead of buffering without limit.
                await handler(message).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                HandlerFailures++;
                _log.LogError(ex, "MQTT {Client}: handler failed on {Topic}.", options.ClientId, message.Topic);
            }
        };
        _connectPipeline = new ResiliencePipelineBuilder { TimeProvider = _time }
            .AddRetry(new RetryStrategyOptions
            {
                ShouldHandle = new PredicateBuilder().Handle<Exception>(e => e is not OperationCanceledException),
                BackoffType = DelayBackoffType.Exponential,
                UseJitter = true,
                Delay = options.ReconnectDelay,
                MaxDelay = options.MaxReconnectDelay,
                MaxRetryAttempts = int.MaxValue,
                OnRetry = args =>
                {
                    _log.LogInformation("MQTT {Client}: connect attempt {Attempt} failed ({Error}); next in {Delay}.", options.ClientId, args.AttemptNumber + 1, args.Outcome.Exception?.Message, args.RetryDelay);
                    return default;
                },
            })
            .AddCircuitBreaker(new CircuitBreakerStrategyOptions
            {
                ShouldHandle = new PredicateBuilder().Handle<Exception>(e => e is not OperationCanceledException),
                FailureRatio = 1.0,
                MinimumThroughput = options.BreakAfterFailures,
                SamplingDuration = TimeSpan.FromMinutes(10),
                BreakDuration = options.BreakDuration,
            })
            .Build();
    }

    /// <summary>Topic layout of this connection's fleet.</summary>
    public FleetTopics Topics { get; }

    /// <summary>The options in use.</summary>
    public MqttTransportOptions Options => _options;

    /// <summary>Called for every application message, in order per connection; the PUBACK waits for it.</summary>
    public event Func<MqttIncoming, Task>? MessageReceived;

    /// <summary>True while connected.</summary>
    public bool IsConnected => _client.IsConnected;

    /// <summary>Successful connects so far (1 + reconnects).</summary>
    public long Connects => Interlocked.Read(ref _connects);

    /// <summary>Retained messages published again after reconnects.</summary>
    public long RetainedRepublished => Interlocked.Read(ref _retainedRepublished);

    /// <summary>Message handlers that threw.</summary>
    public long HandlerFailures { get; private set; }

    /// <summary>Starts the supervisor loop (connect, resubscribe, wait for a disconnect, repeat).</summary>
    public void Start(CancellationToken cancellationToken = default)
    {
        lock (_gate)
        {
            if (_loop is not null) throw new InvalidOperationException("Already started.");
            _stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            _loop = Task.Run(() => SuperviseAsync(_stop.Token), CancellationToken.None);
        }
    }

    /// <summary>Completes when the client is connected and subscribed.</summary>
    public Task WaitUntilConnectedAsync(CancellationToken cancellationToken)
    {
        lock (_gate) return _connected.Task.WaitAsync(cancellationToken);
    }

    /// <summary>Adds a subscription (QoS 1) that survives reconnects; subscribes now when connected. Throws <see cref="MqttRefusedException"/> when the broker refuses it.</summary>
    public async Task SubscribeAsync(string filter, CancellationToken cancellationToken)
    {
        _subscriptions[filter] = MqttQualityOfServiceLevel.AtLeastOnce;
        if (_client.IsConnected) await SubscribeNowAsync(filter, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Removes a subscription made with <see cref="SubscribeAsync"/>: not renewed after reconnects, and unsubscribed now when connected.</summary>
    public async Task UnsubscribeAsync(string filter, CancellationToken cancellationToken)
    {
        if (!_subscriptions.TryRemove(filter, out _) || !_client.IsConnected) return;
        try
        {
            await _client.UnsubscribeAsync(filter, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (IsTransient(e))
        {
            // The connection dropped meanwhile: the broker's next session of this client no longer has it either once it is gone,
            // and the reconnect does not renew it.
        }
    }

    /// <summary>
    /// Publishes once (QoS 1) after waiting for a connection; at most <see cref="MqttTransportOptions.MaxInFlight"/> at a
    /// time. Throws <see cref="MqttRefusedException"/> when the broker refuses, an MQTTnet exception when the connection drops.
    /// </summary>
    public async Task PublishAsync(string topic, ReadOnlyMemory<byte> payload, bool retain = false, TimeSpan? expiry = null,
        IReadOnlyList<(string Name, string Value)>? properties = null, CancellationToken cancellationToken = default)
    {
        var builder = new MqttApplicationMessageBuilder()
            .WithTopic(topic)
            .WithPayload(payload.ToArray())
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
            .WithRetainFlag(retain);
        if (expiry is { } e) builder.WithMessageExpiryInterval((uint)Math.Clamp(Math.Ceiling(e.TotalSeconds), 1, uint.MaxValue));
        if (properties is not null)
        {
            foreach (var (name, value) in properties) builder.WithUserProperty(name, System.Text.Encoding.UTF8.GetBytes(value).AsMemory());
        }
        var message = builder.Build();
        if (retain && _options.RepublishRetainedOnReconnect)
        {
            // Recorded before the send: a reconnect that overtakes this publish republishes it too (harmless), and one that
            // comes after it cannot republish an older message, because the supervisor republishes before it signals
            // "connected" and this publish waits for that signal.
            if (payload.IsEmpty) _retained.TryRemove(topic, out _);
            else _retained[topic] = new RetainedEntry(message, Interlocked.Increment(ref _retainedSequence), expiry is { } x ? _time.GetUtcNow() + x : null);
        }
        await WaitUntilConnectedAsync(cancellationToken).ConfigureAwait(false);
        await _inFlight.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var result = await _client.PublishAsync(message, cancellationToken).ConfigureAwait(false);
            if (!result.IsSuccess && result.ReasonCode != MqttClientPublishReasonCode.NoMatchingSubscribers)
            {
                if (retain && _retained.TryGetValue(topic, out var entry) && ReferenceEquals(entry.Message, message)) _retained.TryRemove(topic, out _);
                throw new MqttRefusedException($"Broker refused the publish to '{topic}': {result.ReasonCode} {result.ReasonString}".TrimEnd());
            }
        }
        finally
        {
            _inFlight.Release();
        }
    }

    /// <summary>Like <see cref="PublishAsync"/> but retries over reconnects until the broker acknowledges (or refuses, or the token fires).</summary>
    public async Task PublishReliablyAsync(string topic, ReadOnlyMemory<byte> payload, bool retain = false, TimeSpan? expiry = null, CancellationToken cancellationToken = default)
    {
        while (true)
        {
            try
            {
                await PublishAsync(topic, payload, retain, expiry, null, cancellationToken).ConfigureAwait(false);
                return;
            }
            catch (Exception e) when (IsTransient(e) && !cancellationToken.IsCancellationRequested)
            {
                _log.LogDebug("MQTT {Client}: publish to {Topic} failed ({Error}); retrying after reconnect.", _options.ClientId, topic, e.Message);
                await Task.Delay(TimeSpan.FromMilliseconds(50), _time, cancellationToken).ConfigureAwait(false);
            }
        }
    }

    /// <summary>True for failures a reconnect may cure (connection lost, timeout), false for refusals and cancellation.</summary>
    public static bool IsTransient(Exception e) => e is MqttCommunicationException or MqttClientNotConnectedException or ObjectDisposedException or IOException or TimeoutException;

    /// <summary>A disconnect that ends a session as intended: this side stopping, or a normal disconnection.</summary>
    private bool IsExpectedDisconnect(MqttClientDisconnectReason reason) => _stopping || reason == MqttClientDisconnectReason.NormalDisconnection;

    /// <summary>Stops the loop, publishes nothing more, and disconnects cleanly (the delayed will is then not sent).</summary>
    public async Task StopAsync()
    {
        Task? loop;
        _stopping = true;
        lock (_gate)
        {
            loop = _loop;
            _stop?.Cancel();
        }
        if (loop is not null)
        {
            try
            {
                await loop.ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
        }
        if (_client.IsConnected)
        {
            try
            {
                if (_presenceTopic is not null)
                {
                    using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(2));
                    await _client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(_presenceTopic).WithPayload("offline"u8.ToArray())
                        .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).WithRetainFlag().Build(), cts.Token).ConfigureAwait(false);
                }
                await _client.DisconnectAsync(new MqttClientDisconnectOptionsBuilder().WithReason(MqttClientDisconnectOptionsReason.NormalDisconnection).Build()).ConfigureAwait(false);
            }
            catch (Exception e) when (IsTransient(e) || e is OperationCanceledException or MqttRefusedException)
            {
            }
        }
    }

    /// <summary>Drops the TCP connection without a DISCONNECT packet, as a vehicle losing coverage would (tests).</summary>
    internal async Task DropConnectionForTestAsync()
    {
        // Disconnect with reason "disconnect with will message" mimics an abnormal loss for the broker.
        await _client.DisconnectAsync(new MqttClientDisconnectOptionsBuilder().WithReason(MqttClientDisconnectOptionsReason.DisconnectWithWillMessage).Build()).ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync().ConfigureAwait(false);
        _client.Dispose();
        _stop?.Dispose();
        _inFlight.Dispose();
    }

    private async Task SuperviseAsync(CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                await _connectPipeline.ExecuteAsync(ConnectOnceAsync, cancellationToken).ConfigureAwait(false);
                Task disconnected;
                lock (_gate) disconnected = _disconnected.Task;
                foreach (var filter in _subscriptions.Keys) await SubscribeNowAsync(filter, cancellationToken).ConfigureAwait(false);
                if (_presenceTopic is not null)
                {
                    await _client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(_presenceTopic).WithPayload("online"u8.ToArray())
                        .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).WithRetainFlag().Build(), cancellationToken).ConfigureAwait(false);
                }
                if (Interlocked.Read(ref _connects) > 0) await RepublishRetainedAsync(cancellationToken).ConfigureAwait(false);
                Interlocked.Increment(ref _connects);
                lock (_gate)
                {
                    if (!disconnected.IsCompleted) _connected.TrySetResult();
                }
                while (true)
                {
                    await disconnected.WaitAsync(cancellationToken).ConfigureAwait(false);
                    if (!_client.IsConnected) break;
                    // A stale disconnect event (see the handler) that slipped past its check: keep this session. Checked again
                    // after the new signal exists, so a real disconnect in between is not lost.
                    lock (_gate)
                    {
                        if (ReferenceEquals(_disconnected.Task, disconnected)) _disconnected = NewSignal();
                        disconnected = _disconnected.Task;
                    }
                    if (!_client.IsConnected) break;
                    lock (_gate)
                    {
                        if (!disconnected.IsCompleted) _connected.TrySetResult();
                    }
                }
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                // Subscribing or announcing failed (e.g. the connection dropped meanwhile): go round again.
                _log.LogWarning("MQTT {Client}: session setup failed ({Error}); reconnecting.", _options.ClientId, e.Message);
                if (_client.IsConnected)
                {
                    try
                    {
                        await _client.DisconnectAsync(cancellationToken: CancellationToken.None).ConfigureAwait(false);
                    }
                    catch (Exception inner) when (IsTransient(inner))
                    {
                    }
                }
                // Jittered (0.5 to 1.5 × the delay): clients that lost their sessions together do not all come back in the same instant.
                await Task.Delay(_options.ReconnectDelay * (0.5 + Random.Shared.NextDouble()), _time, cancellationToken).ConfigureAwait(false);
            }
        }
    }

    /// <summary>Publishes the remembered retained messages on the new connection, before anything else may publish.</summary>
    private async Task RepublishRetainedAsync(CancellationToken cancellationToken)
    {
        if (_retained.IsEmpty) return;
        int count = 0;
        // In the order they were last published (the model's chunks before the plan that names them).
        foreach (var (topic, entry) in _retained.ToArray().OrderBy(p => p.Value.Sequence))
        {
            if (entry.ExpiresAt is { } expiresAt)
            {
                // An expiring message goes back with what is left of its interval (a round plan's remaining time), or not at all.
                var left = expiresAt - _time.GetUtcNow();
                if (left <= TimeSpan.Zero)
                {
                    _retained.TryRemove(new KeyValuePair<string, RetainedEntry>(topic, entry));
                    continue;
                }
                entry.Message.MessageExpiryInterval = (uint)Math.Clamp(Math.Ceiling(left.TotalSeconds), 1, uint.MaxValue);
            }
            var result = await _client.PublishAsync(entry.Message, cancellationToken).ConfigureAwait(false);
            if (!result.IsSuccess && result.ReasonCode != MqttClientPublishReasonCode.NoMatchingSubscribers)
            {
                _retained.TryRemove(new KeyValuePair<string, RetainedEntry>(topic, entry));
                _log.LogWarning("MQTT {Client}: broker refused the retained message on {Topic} after reconnect: {Reason}; no longer republished.", _options.ClientId, topic, result.ReasonCode);
                continue;
            }
            count++;
        }
        Interlocked.Add(ref _retainedRepublished, count);
        _log.LogInformation("MQTT {Client}: republished {Count} retained messages after reconnecting.", _options.ClientId, count);
    }

    private async ValueTask ConnectOnceAsync(CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            if (_disconnected.Task.IsCompleted) _disconnected = NewSignal();
        }
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_options.ConnectTimeout);
        MqttClientConnectResult result;
        try
        {
            result = await _client.ConnectAsync(_clientOptions, timeout.Token).ConfigureAwait(false);
        }
        catch (MqttConnectingFailedException e)
        {
            throw new MqttRefusedException($"Broker {_options.Host}:{_options.Port} refused client '{_options.ClientId}': {e.Message}");
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new TimeoutException($"Connecting to {_options.Host}:{_options.Port} took longer than {_options.ConnectTimeout}.");
        }
        if (result.ResultCode != MqttClientConnectResultCode.Success)
            throw new MqttRefusedException($"Broker {_options.Host}:{_options.Port} refused client '{_options.ClientId}': {result.ResultCode} {result.ReasonString}".TrimEnd());
        _log.LogInformation("MQTT {Client}: connected to {Host}:{Port} (session present: {Session}).", _options.ClientId, _options.Host, _options.Port, result.IsSessionPresent);
    }

    private async Task SubscribeNowAsync(string filter, CancellationToken cancellationToken)
    {
        // MQTT 5 Retain Handling (§3.8.3.1): the first connect of this process takes every retained message (it holds no state
        // yet); a reconnect takes them only where the broker no longer had the subscription (a broker that lost the session),
        // so a vehicle that drops off coverage every few minutes is not sent the same retained models again each time.
        var retain = Interlocked.Read(ref _connects) == 0 ? MqttRetainHandling.SendAtSubscribe : MqttRetainHandling.SendAtSubscribeIfNewSubscriptionOnly;
        var options = new MqttClientSubscribeOptionsBuilder().WithTopicFilter(f => f.WithTopic(filter).WithAtLeastOnceQoS().WithRetainHandling(retain)).Build();
        var result = await _client.SubscribeAsync(options, cancellationToken).ConfigureAwait(false);
        foreach (var item in result.Items)
        {
            if (item.ResultCode is not (MqttClientSubscribeResultCode.GrantedQoS0 or MqttClientSubscribeResultCode.GrantedQoS1 or MqttClientSubscribeResultCode.GrantedQoS2))
            {
                _subscriptions.TryRemove(filter, out _);
                throw new MqttRefusedException($"Broker refused the subscription to '{filter}': {item.ResultCode}.");
            }
        }
    }

    private sealed record RetainedEntry(MqttApplicationMessage Message, long Sequence, DateTimeOffset? ExpiresAt);

    private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    internal static MqttClientOptions BuildClientOptions(MqttTransportOptions o, string? presenceTopic)
    {
        var builder = new MqttClientOptionsBuilder()
            .WithTcpServer(o.Host, o.Port)
            .WithProtocolVersion(MQTTnet.Formatter.MqttProtocolVersion.V500)
            .WithClientId(o.ClientId)
            .WithCredentials(o.EffectiveUsername, o.Password)
            .WithCleanStart(false)
            .WithSessionExpiryInterval((uint)Math.Min(o.SessionExpirySeconds, uint.MaxValue))
            .WithKeepAlivePeriod(TimeSpan.FromSeconds(o.KeepAliveSeconds))
            .WithMaximumPacketSize((uint)o.MaxPacketSize)
            .WithReceiveMaximum((ushort)Math.Min(o.MaxInFlight * 4, ushort.MaxValue))
            .WithTimeout(o.ConnectTimeout);
        if (presenceTopic is not null)
        {
            builder.WithWillTopic(presenceTopic).WithWillPayload("offline"u8.ToArray()).WithWillRetain()
                .WithWillQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
                .WithWillDelayInterval((uint)Math.Min(o.WillDelaySeconds, uint.MaxValue));
        }
        if (o.UseTls)
        {
            X509Certificate2? ca = o.CaFile is null ? null : X509CertificateLoader.LoadCertificateFromFile(o.CaFile);
            X509Certificate2? client = null;
            if (o.CertFile is not null)
            {
                using var pem = X509Certificate2.CreateFromPemFile(o.CertFile, o.KeyFile);
                // SslStream wants a key it can persist; re-import through PKCS#12.
                client = X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null);
            }
            builder.WithTlsOptions(t =>
            {
                t.UseTls().WithTargetHost(o.TlsServerName ?? o.Host);
                if (client is not null) t.WithClientCertificates(new X509Certificate2Collection(client));
                if (ca is not null) t.WithCertificateValidationHandler(args => ValidateAgainstCa(args.Certificate, args.SslPolicyErrors, ca));
            });
        }
        var built = builder.Build();
        if (built.ChannelOptions is MqttClientTcpOptions tcp) tcp.BufferSize = o.SocketBufferBytes; // MQTTnet's 8 KiB caps the TCP window (MqttTransportOptions.SocketBufferBytes)
        return built;
    }

    /// <summary>Accepts the broker's certificate only when it chains to the configured CA and its name matches.</summary>
    internal static bool ValidateAgainstCa(X509Certificate? presented, SslPolicyErrors errors, X509Certificate2 ca)
    {
        if (presented is null || (errors & (SslPolicyErrors.RemoteCertificateNameMismatch | SslPolicyErrors.RemoteCertificateNotAvailable)) != 0) return false;
        using var leaf = X509CertificateLoader.LoadCertificate(presented.GetRawCertData());
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(ca);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        return chain.Build(leaf);
    }
}
