using System.Diagnostics.Metrics;

namespace FleetLearn.EdgeAgent;

/// <summary>
/// The agents' uplink counters as instruments of the meter <see cref="MeterName"/> (first sends, resends, their bytes, outbox
/// reads of a stored payload), process-wide: one vehicle has one agent; a simulator adds up its agents (docs/scale.md).
/// </summary>
public static class UplinkMetrics
{
    /// <summary>Meter name (for OpenTelemetry or dotnet-counters: <c>--counters FleetLearn.EdgeAgent</c>).</summary>
    public const string MeterName = "FleetLearn.EdgeAgent";

    private static readonly Meter Meter = new(MeterName);
    private static long _sends, _resends, _sentBytes, _resentBytes, _payloadReads, _paced;

    static UplinkMetrics()
    {
        Meter.CreateObservableCounter("fleetlearn.agent.sends", () => Sends, description: "Messages sent for the first time.");
        Meter.CreateObservableCounter("fleetlearn.agent.resends", () => Resends, description: "Messages sent again (no acknowledgement yet, or asking again).");
        Meter.CreateObservableCounter("fleetlearn.agent.resent_bytes", () => ResentBytes, unit: "By", description: "Bytes of resent messages.");
        Meter.CreateObservableCounter("fleetlearn.agent.paced", () => Paced, description: "Resends held back because the aggregator asked vehicles to slow down.");
    }

    /// <summary>First sends.</summary>
    public static long Sends => Interlocked.Read(ref _sends);

    /// <summary>Resends.</summary>
    public static long Resends => Interlocked.Read(ref _resends);

    /// <summary>Bytes of first sends.</summary>
    public static long SentBytes => Interlocked.Read(ref _sentBytes);

    /// <summary>Bytes of resends.</summary>
    public static long ResentBytes => Interlocked.Read(ref _resentBytes);

    /// <summary>Payloads read back from an outbox file (to resend them).</summary>
    public static long PayloadReads => Interlocked.Read(ref _payloadReads);

    /// <summary>Resends held back by the aggregator's pace.</summary>
    public static long Paced => Interlocked.Read(ref _paced);

    internal static void Sent(bool resend, int bytes)
    {
        Interlocked.Increment(ref resend ? ref _resends : ref _sends);
        Interlocked.Add(ref resend ? ref _resentBytes : ref _sentBytes, bytes);
    }

    internal static void PayloadRead() => Interlocked.Increment(ref _payloadReads);

    internal static void HeldBack() => Interlocked.Increment(ref _paced);
}
