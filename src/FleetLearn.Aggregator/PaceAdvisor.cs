using System.Security.Cryptography;
using FleetLearn.Core.Rounds;
using FleetLearn.Transport.Mqtt;
using Microsoft.Extensions.Logging;

namespace FleetLearn.Aggregator;

/// <summary>Pace steering over MQTT: on an accepted check-in, asks <see cref="PaceSteering"/> for the vehicle's next check-in window and sends it, signed, to its inbox.</summary>
internal sealed class PaceAdvisor(AggregatorOptions options, MqttConnection mqtt, AggregatorStatus status, ECDsa signingKey, TimeProvider time, ILogger logger)
{
    private readonly PaceSteering _steering = new(new PaceSteeringOptions { MinInterval = options.PaceMinInterval, Seed = options.Seed }, time);
    private readonly Dictionary<string, (PaceAdvice Advice, byte[] Signed)> _sent = new(StringComparer.Ordinal);
    private DateTimeOffset _nextExpiry;

    /// <summary>Suggestions outstanding per UTC hour of day.</summary>
    public IReadOnlyList<int> Load => _steering.Load;

    /// <summary>
    /// <paramref name="vehicle"/>'s check-in was accepted: a withdrawal or a check-in without its eligibility gets nothing; one
    /// before the window it holds opens gets that window again (the suggestion was lost, or an agent that does not steer
    /// checked in: its hours are not counted twice); any other gets a new window.
    /// </summary>
    public async Task CheckedInAsync(string vehicle, Checkin checkin, MqttIncoming message, CancellationToken cancellationToken)
    {
        if (checkin.Samples == 0 || checkin.EligibleFor is not { } eligibleFor) return;
        var now = time.GetUtcNow();
        DateTimeOffset? sentAt = long.TryParse(message.Property(Checkin.SentAtProperty), System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out long ms)
            && ms is >= 0 and <= 253_402_300_799_999 ? DateTimeOffset.FromUnixTimeMilliseconds(ms) : null;
        if (now >= _nextExpiry)
        {
            _steering.Expire(); // windows that passed unused free their hour (at most once a minute: it walks every suggestion)
            _nextExpiry = now + TimeSpan.FromMinutes(1);
        }
        bool repeated = _sent.TryGetValue(vehicle, out var sent) && now < sent.Advice.From;
        if (!repeated)
        {
            if (_steering.CheckIn(vehicle, now + eligibleFor) is not { } suggestion)
            {
                status.ReportPace(new PaceEvent(vehicle, now, sentAt, eligibleFor, null, false));
                return;
            }
            var fresh = new PaceAdvice(mqtt.Topics.Fleet, vehicle, now, suggestion.From, suggestion.Until);
            _sent[vehicle] = sent = (fresh, fresh.Sign(signingKey)); // signed once, however often it is sent again
        }
        var (advice, bytes) = sent;
        // Not retained: the vehicle's persistent session keeps it while the vehicle is away, and it expires with its window.
        await mqtt.PublishReliablyAsync(mqtt.Topics.Inbox(vehicle, PaceAdvice.InboxKind), bytes, expiry: advice.Until - now, cancellationToken: cancellationToken).ConfigureAwait(false);
        status.Sent(bytes.Length);
        logger.LogDebug("aggregator: {Vehicle} (eligible for {Eligible}) is asked to check in next between {From:O} and {Until:O}{Again}.", vehicle, eligibleFor, advice.From, advice.Until, repeated ? " (again)" : "");
        status.ReportPace(new PaceEvent(vehicle, now, sentAt, eligibleFor, advice.Suggestion, repeated));
    }
}

/// <summary>What pace steering did with one accepted check-in.</summary>
/// <param name="Vehicle">The vehicle that checked in.</param>
/// <param name="At">When the aggregator handled it (its clock).</param>
/// <param name="SentAt">When the vehicle sent it (the vehicle's clock, as stamped on the check-in; null when not stamped).</param>
/// <param name="EligibleFor">How long it reported it stays eligible.</param>
/// <param name="Suggestion">The window sent, or null when none of its hours is known.</param>
/// <param name="Repeated">The vehicle checked in before the window it held opened, and was sent that window again.</param>
public sealed record PaceEvent(string Vehicle, DateTimeOffset At, DateTimeOffset? SentAt, TimeSpan EligibleFor, PaceSuggestion? Suggestion, bool Repeated);

/// <summary>Pace steering's part of the status.</summary>
public sealed partial class AggregatorStatus
{
    private long _paceSuggestions;

    /// <summary>Pace suggestions sent (Aggregator:PaceSteering), windows sent again included.</summary>
    public long PaceSuggestions => Interlocked.Read(ref _paceSuggestions);

    /// <summary>Raised on the aggregator's loop after pace steering handled a check-in that reported its eligibility.</summary>
    public event Action<PaceEvent>? PaceAdvised;

    internal void ReportPace(PaceEvent e)
    {
        if (e.Suggestion is not null) Interlocked.Increment(ref _paceSuggestions);
        PaceAdvised?.Invoke(e);
    }
}
