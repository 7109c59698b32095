namespace FleetLearn.Core.Rounds;

/// <summary>A round's time as durations: the vehicle measures them from the plan's arrival, so clock skew to the aggregator plays no part.</summary>
/// <remarks>
/// A plan's deadline and issue time are both instants on the aggregator's clock, so their difference is a duration that
/// means the same on any clock. The plan is published with an MQTT 5 message expiry that ends at its deadline. A broker
/// that forwards a message, retained ones included, sends the expiry interval less the time the message waited (MQTT 5
/// §3.3.2.3.3). So a plan that reaches a vehicle late carries the time that is really left. Mosquitto does this; the embedded
/// broker forwards the interval unchanged, and then the whole duration counts from arrival.
/// </remarks>
public static class PlanTiming
{
    /// <summary>The round's whole duration (deadline − issued, both on the aggregator's clock).</summary>
    public static TimeSpan Duration(RoundPlan plan)
    {
        ArgumentNullException.ThrowIfNull(plan);
        return TimeSpan.FromMilliseconds(Math.Max(0, plan.DeadlineUnixMs - plan.IssuedUnixMs));
    }

    /// <summary>Time left when the plan arrived: its duration, capped by the message expiry the broker delivered with it (null: none).</summary>
    public static TimeSpan Remaining(RoundPlan plan, TimeSpan? deliveredExpiry)
    {
        var duration = Duration(plan);
        return deliveredExpiry is { } left && left < duration ? left : duration;
    }

    /// <summary>How far <paramref name="sentAt"/> (the sender's clock) is ahead of <paramref name="receivedAt"/> (ours); negative: behind. Transit delay counts as "behind".</summary>
    public static TimeSpan Skew(DateTimeOffset sentAt, DateTimeOffset receivedAt) => sentAt - receivedAt;
}
