using System.Globalization;
using FleetLearn.Core.Rounds;
using FleetLearn.Transport.Mqtt;
using Microsoft.Extensions.Logging;

namespace FleetLearn.Aggregator;

/// <summary>Reports vehicles whose check-in timestamps are off the aggregator's clock by more than a tolerance (issue 14 item 6).</summary>
/// <remarks>
/// Rounds no longer depend on the clocks agreeing: vehicles measure a plan's time as a duration from its arrival
/// (<see cref="PlanTiming"/>). A skewed clock still matters elsewhere on the vehicle, for example to certificate checks
/// and logs, so it is reported. The estimate counts a check-in's transit, including any wait at the broker, as the
/// vehicle being behind. That is why the tolerance is a minute by default and not seconds.
/// </remarks>
internal sealed class ClockSkewMonitor(AggregatorStatus status, TimeProvider time, ILogger logger, TimeSpan tolerance)
{
    private readonly HashSet<string> _skewed = new(StringComparer.Ordinal);

    /// <summary>Takes the check-in <paramref name="message"/> of <paramref name="vehicle"/>; returns its skew, or null when it carries no usable stamp.</summary>
    public TimeSpan? Observe(string vehicle, MqttIncoming message)
    {
        if (!long.TryParse(message.Property(Checkin.SentAtProperty), NumberStyles.Integer, CultureInfo.InvariantCulture, out long sentMs)
            || sentMs is < 0 or > 253_402_300_799_999) return null; // no stamp (an older agent), or not a time
        var skew = PlanTiming.Skew(DateTimeOffset.FromUnixTimeMilliseconds(sentMs), time.GetUtcNow());
        status.VehicleClock(vehicle, skew);
        bool off = skew.Duration() > tolerance;
        if (off && _skewed.Add(vehicle))
            logger.LogWarning("aggregator: {Vehicle}'s clock is {Skew:F0} s {Direction} the aggregator's (tolerance {Tolerance} s, Aggregator:ClockSkewTolerance); its rounds are unaffected (deadlines travel as durations), but check its time sync.",
                vehicle, skew.Duration().TotalSeconds, skew > TimeSpan.Zero ? "ahead of" : "behind", tolerance.TotalSeconds);
        else if (!off && _skewed.Remove(vehicle))
            logger.LogInformation("aggregator: {Vehicle}'s clock is within {Tolerance} s of the aggregator's again.", vehicle, tolerance.TotalSeconds);
        status.ClockSkewedVehicles = _skewed.Count;
        return skew;
    }
}
