using System.Globalization;
using System.Text.Json;
using System.Threading.Channels;
using FleetLearn.Core.Rounds;
using FleetLearn.Storage;
using FleetLearn.Transport.Mqtt;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace FleetLearn.Aggregator;

/// <summary>
/// This instance's single-writer lease on its fleet, kept as a retained message on the broker (issue 15 item 5): acquired
/// before the aggregator touches the fleet's retained plan, renewed every third of its TTL, released on a clean stop.
/// </summary>
internal sealed class FleetLeaseHolder(MqttConnection mqtt, LiteDbRoundStore store, AggregatorOptions options, FleetEpochs epochs, TimeProvider time, ILogger logger, IHostApplicationLifetime? lifetime) : IAsyncDisposable
{
    private const int MaxClaimBytes = 4096;
    private readonly Channel<LeaseClaim> _seen = Channel.CreateUnbounded<LeaseClaim>();
    private readonly CancellationTokenSource _stop = new();
    private LeaseClaim? _mine;
    private Task _renewing = Task.CompletedTask;

    /// <summary>The lease topic (subscribe before the connection starts).</summary>
    public string Topic => mqtt.Topics.AggregatorLease;

    /// <summary>Handles a message on <see cref="Topic"/>: during acquisition it is read in order; later a claim that outranks ours stops this instance.</summary>
    public Task ObserveAsync(MqttIncoming message)
    {
        if (Decode(message.Payload) is not { } claim) return Task.CompletedTask;
        if (_mine is { } mine && FleetLeaseRules.Outranks(claim, mine))
        {
            logger.LogCritical("aggregator: fleet '{Fleet}' is claimed by instance {Instance} ({Holder}), which outranks this one: stopping (one fleet, one writer).", mqtt.Topics.Fleet, claim.Instance, claim.Holder);
            lifetime?.StopApplication();
        }
        if (_mine is null) _seen.Writer.TryWrite(claim); // read only while acquiring
        return Task.CompletedTask;
    }

    /// <summary>
    /// Finds the retained claim (a probe's echo follows it on the same topic), refuses to start while another instance holds
    /// an unexpired claim, then claims the fleet and starts renewing.
    /// </summary>
    public async Task AcquireAsync(CancellationToken cancellationToken)
    {
        string instance = store.GetMeta("instance") ?? Guid.NewGuid().ToString("N");
        store.SetMeta("instance", instance);
        string holder = string.Create(CultureInfo.InvariantCulture, $"{Environment.MachineName} pid {Environment.ProcessId}, database {store.Path}");
        var probe = new LeaseClaim(LeaseClaim.Probe, instance, Guid.NewGuid().ToString("N"), 0, 0, epochs.State.Epoch);
        await mqtt.PublishAsync(Topic, JsonSerializer.SerializeToUtf8Bytes(probe), cancellationToken: cancellationToken).ConfigureAwait(false);
        LeaseClaim? retained = null;
        using (var wait = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
        {
            wait.CancelAfter(options.LeaseTtl);
            try
            {
                await foreach (var claim in _seen.Reader.ReadAllAsync(wait.Token).ConfigureAwait(false))
                {
                    if (claim == probe) break;
                    if (claim.Kind == LeaseClaim.Claim) retained = claim;
                }
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                throw new InvalidOperationException($"The lease probe on '{Topic}' did not come back within {options.LeaseTtl}: the broker must let the aggregator read and write its fleet's aggregator/ topics (see broker-config/acl).");
            }
        }
        var now = time.GetUtcNow();
        if (FleetLeaseRules.Blocking(retained, instance, now) is { } other)
            throw new InvalidOperationException(string.Create(CultureInfo.InvariantCulture,
                $"The fleet '{mqtt.Topics.Fleet}' is held by another aggregator: instance {other.Instance} ({other.Holder}), since {DateTimeOffset.FromUnixTimeMilliseconds(other.AcquiredUnixMs):u}, its lease valid until {DateTimeOffset.FromUnixTimeMilliseconds(other.ExpiresUnixMs):u}. One fleet, one writer: stop that instance first, or wait for its lease to lapse (Aggregator:LeaseTtl = {options.LeaseTtl}). This instance does not start."));
        _mine = new LeaseClaim(LeaseClaim.Claim, instance, holder, now.ToUnixTimeMilliseconds(), 0, epochs.State.Epoch);
        await RenewAsync(cancellationToken).ConfigureAwait(false);
        logger.LogInformation("aggregator: holds the lease of fleet '{Fleet}' as instance {Instance} (renewed every {Period}).", mqtt.Topics.Fleet, instance, options.LeaseTtl / 3);
        _renewing = RenewLoopAsync(_stop.Token);
    }

    private Task RenewAsync(CancellationToken cancellationToken)
    {
        _mine = _mine! with { ExpiresUnixMs = (time.GetUtcNow() + options.LeaseTtl).ToUnixTimeMilliseconds(), Epoch = epochs.State.Epoch };
        return mqtt.PublishAsync(Topic, JsonSerializer.SerializeToUtf8Bytes(_mine), retain: true, expiry: options.LeaseTtl, cancellationToken: cancellationToken);
    }

    private async Task RenewLoopAsync(CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(options.LeaseTtl / 3, time);
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false))
            {
                try
                {
                    await RenewAsync(cancellationToken).ConfigureAwait(false);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    logger.LogWarning("aggregator: lease renewal failed ({Error}); retrying in {Period}.", e.Message, options.LeaseTtl / 3);
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private static LeaseClaim? Decode(byte[] payload)
    {
        if (payload.Length is 0 or > MaxClaimBytes) return null;
        try
        {
            return JsonSerializer.Deserialize<LeaseClaim>(payload) is { Instance: not null, Kind: LeaseClaim.Probe or LeaseClaim.Claim } c ? c : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>Stops renewing and, on a clean stop, releases the lease (clears the retained claim) so that another instance may start at once.</summary>
    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        await _renewing.ConfigureAwait(false);
        if (_mine is not null)
        {
            try
            {
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
                await mqtt.PublishAsync(Topic, ReadOnlyMemory<byte>.Empty, retain: true, cancellationToken: timeout.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or InvalidOperationException || e.GetType().Namespace?.StartsWith("MQTTnet", StringComparison.Ordinal) == true)
            {
                logger.LogWarning("aggregator: could not release the fleet lease ({Error}); it lapses after {Ttl}.", e.Message, options.LeaseTtl);
            }
        }
        _stop.Dispose();
    }
}
