using FleetLearn.Transport.Mqtt;
using Microsoft.Extensions.Logging;

namespace FleetLearn.Aggregator;

/// <summary>
/// The aggregator's half of the "slow down" signal (<see cref="UplinkPace"/>): when what it reads has waited in its inbox
/// for a second or more, it asks every vehicle, on the retained <c>round/slowdown</c>, to hold its resends for twice that wait
/// (a power of two in seconds, 2 s to 5 min). A resend sooner would only queue another copy behind the first: at 1,000
/// agents, copies made 2.94 GiB of the 650 MB of masked inputs (docs/transport.md). Raised at once, lowered at most every
/// 2 s, refreshed at half its hold (the retained message expires with the hold), cleared (an empty retained message) when
/// reads wait under a second again. First sends are never held.
/// </summary>
internal sealed class PaceSignal(TimeProvider time)
{
    private static readonly TimeSpan Threshold = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan MinInterval = TimeSpan.FromSeconds(2);
    private TimeSpan _current;
    private DateTimeOffset _publishedAt = DateTimeOffset.MinValue;

    /// <summary>The hold vehicles are asked for now (zero: none).</summary>
    public TimeSpan Current => _current;

    /// <summary>Pace signals published so far.</summary>
    public int Published { get; private set; }

    /// <summary>The hold for reads that waited <paramref name="wait"/>: zero under a second, else the power of two seconds at or above twice the wait, 2 s to <see cref="UplinkPace.MaxHold"/>.</summary>
    public static TimeSpan HoldFor(TimeSpan wait)
    {
        if (wait < Threshold) return TimeSpan.Zero;
        double seconds = 2;
        while (seconds < 2 * wait.TotalSeconds && seconds < UplinkPace.MaxHold.TotalSeconds) seconds *= 2;
        return TimeSpan.FromSeconds(Math.Min(seconds, UplinkPace.MaxHold.TotalSeconds));
    }

    /// <summary>The hold to publish after a read that waited <paramref name="wait"/>, or null when the published one stands.</summary>
    public TimeSpan? Observe(TimeSpan wait)
    {
        var now = time.GetUtcNow();
        var target = HoldFor(wait);
        var since = now - _publishedAt;
        bool publish = target > _current // raised at once
            || target < _current && since >= MinInterval // lowered, not faster than every 2 s
            || target == _current && target > TimeSpan.Zero && since >= target / 2; // refreshed before it expires
        if (!publish) return null;
        (_current, _publishedAt) = (target, now);
        Published++;
        return target;
    }

    /// <summary>Observes a read and publishes the resulting signal, if any (retained, expiring with its hold; empty to clear).</summary>
    public async Task AfterReadAsync(TimeSpan wait, MqttConnection mqtt, ILogger logger, CancellationToken cancellationToken)
    {
        if (Observe(wait) is not { } hold) return;
        logger.Log(hold > TimeSpan.Zero ? LogLevel.Information : LogLevel.Debug, "aggregator: messages waited {Wait:F1} s in the inbox; vehicles asked to hold resends for {Hold:F0} s.", wait.TotalSeconds, hold.TotalSeconds);
        try
        {
            if (hold > TimeSpan.Zero) await mqtt.PublishAsync(mqtt.Topics.RoundSlowDown, UplinkPace.Encode(hold), retain: true, expiry: hold, cancellationToken: cancellationToken).ConfigureAwait(false);
            else await mqtt.PublishAsync(mqtt.Topics.RoundSlowDown, ReadOnlyMemory<byte>.Empty, retain: true, cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (MqttConnection.IsTransient(e))
        {
            logger.LogDebug("aggregator: pace signal not published ({Error}); the next read tries again.", e.Message);
            _publishedAt = DateTimeOffset.MinValue;
        }
    }
}
