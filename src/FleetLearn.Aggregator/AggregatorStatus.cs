using System.Threading.Channels;
using FleetLearn.Core.Rounds;
using FleetLearn.Storage;

namespace FleetLearn.Aggregator;

/// <summary>A closed round and the global model after it.</summary>
public sealed record RoundClosed(RoundRecord Record, float[] Model);

/// <summary>
/// What the aggregator is doing, for the HTTP surface, the CLI and tests. Thread-safe. The same numbers are OpenTelemetry
/// instruments of the meter <see cref="MeterName"/> (observable counters and gauges), so that any OpenTelemetry exporter —
/// OTLP to a collector when <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> is set — ships them.
/// </summary>
public sealed partial class AggregatorStatus : IDisposable
{
    /// <summary>Name of the aggregator's <see cref="System.Diagnostics.Metrics.Meter"/>.</summary>
    public const string MeterName = "FleetLearn.Aggregator";

    private readonly System.Diagnostics.Metrics.Meter _meter = new(MeterName);

    private readonly TimeProvider _time;

    /// <summary>Creates the status and its instruments; <paramref name="time"/> stamps last-seen times and progress (system clock when null).</summary>
    public AggregatorStatus(TimeProvider? time = null)
    {
        _time = time ?? TimeProvider.System;
        _meter.CreateObservableCounter("fleetlearn.aggregator.rounds", () => RoundsBy(), "{round}", "Rounds closed, by outcome.");
        _meter.CreateObservableCounter("fleetlearn.aggregator.updates.accepted", () => AcceptedUpdates, "{update}", "Updates folded into a round.");
        _meter.CreateObservableCounter("fleetlearn.aggregator.updates.duplicate", () => DuplicateUpdates, "{update}", "Resends recognised and not folded again.");
        _meter.CreateObservableCounter("fleetlearn.aggregator.messages.rejected",
            () => RejectedByReason.Select(p => new System.Diagnostics.Metrics.Measurement<long>(p.Value, new KeyValuePair<string, object?>("reason", p.Key))),
            "{message}", "Rejected messages, by reason.");
        _meter.CreateObservableCounter("fleetlearn.aggregator.bytes.received", () => BytesUp, "By", "Bytes of vehicle messages received.");
        _meter.CreateObservableCounter("fleetlearn.aggregator.bytes.published", () => BytesDown, "By", "Bytes published to vehicles.");
        _meter.CreateObservableGauge("fleetlearn.aggregator.inbox.bytes", () => InboxBytes, "By", "Bytes of vehicle messages waiting in the worker's inbox (bounded by Aggregator:InboxBytes).");
        _meter.CreateObservableGauge("fleetlearn.aggregator.vehicles.clock_skewed", () => ClockSkewedVehicles, "{vehicle}", "Vehicles whose last check-in was stamped further from the aggregator's clock than Aggregator:ClockSkewTolerance.");
        _meter.CreateObservableGauge("fleetlearn.aggregator.model.version", () => ModelVersion, "{version}", "Version of the current global model.");
        _meter.CreateObservableGauge("fleetlearn.aggregator.round.current", () => CurrentRound, "{round}", "Round in progress (0 when none).");
        _meter.CreateObservableGauge("fleetlearn.aggregator.vehicles.checked_in", () => CheckedIn, "{vehicle}", "Vehicles checked in and available.");
        _meter.CreateObservableGauge("fleetlearn.aggregator.vehicle.epsilon.max",
            () => double.IsFinite(MaxVehicleEpsilon) ? [new System.Diagnostics.Metrics.Measurement<double>(MaxVehicleEpsilon)] : Array.Empty<System.Diagnostics.Metrics.Measurement<double>>(),
            null, "Largest ε any vehicle has spent (aggregator's ledger).");
    }

    private IEnumerable<System.Diagnostics.Metrics.Measurement<long>> RoundsBy()
    {
        var rounds = Rounds;
        yield return new(rounds.Count(r => r.Status == RoundStatus.Applied), new KeyValuePair<string, object?>("status", "applied"));
        yield return new(rounds.Count(r => r.Status == RoundStatus.Aborted), new KeyValuePair<string, object?>("status", "aborted"));
    }

    /// <summary>Disposes the meter.</summary>
    public void Dispose() => _meter.Dispose();

    /// <summary>How many closed rounds (each with a copy of its model) wait for a reader before the oldest is dropped.</summary>
    public const int ClosedRoundsKept = 16;

    // Bounded: an aggregator that runs for months with nobody reading would otherwise keep every model it ever published.
    private readonly Channel<RoundClosed> _closed = Channel.CreateBounded<RoundClosed>(new BoundedChannelOptions(ClosedRoundsKept) { FullMode = BoundedChannelFullMode.DropOldest });
    private readonly List<RoundRecord> _rounds = [];
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, long> _rejectedBy = new(StringComparer.Ordinal);
    private long _accepted, _duplicates, _rejected, _bytesUp, _bytesDown;

    /// <summary>Rounds closed, in order (with their model); the newest <see cref="ClosedRoundsKept"/> when nobody reads them.</summary>
    public ChannelReader<RoundClosed> Closed => _closed.Reader;

    /// <summary>Every round record so far (including earlier runs from the store).</summary>
    public IReadOnlyList<RoundRecord> Rounds
    {
        get
        {
            lock (_rounds) return [.. _rounds];
        }
    }

    /// <summary>Updates folded.</summary>
    public long AcceptedUpdates => Interlocked.Read(ref _accepted);

    /// <summary>Resent updates recognised and not folded again.</summary>
    public long DuplicateUpdates => Interlocked.Read(ref _duplicates);

    /// <summary>Malformed, late, forged or out-of-cohort messages.</summary>
    public long RejectedMessages => Interlocked.Read(ref _rejected);

    /// <summary>Rejected messages by reason label (<see cref="Core.Rounds.RejectReasons"/>).</summary>
    public IReadOnlyDictionary<string, long> RejectedByReason => new Dictionary<string, long>(_rejectedBy, StringComparer.Ordinal);

    /// <summary>Bytes of vehicle messages received (updates, secure-aggregation messages, check-ins).</summary>
    public long BytesUp => Interlocked.Read(ref _bytesUp);

    /// <summary>Bytes sent to vehicles (model chunks, plans, secure-aggregation messages, acks).</summary>
    public long BytesDown => Interlocked.Read(ref _bytesDown);

    /// <summary>Bytes of vehicle messages waiting in the worker's inbox.</summary>
    public long InboxBytes => Inbox?.Bytes ?? 0;

    internal AggregatorInbox? Inbox { get; set; }

    /// <summary>Largest ε spent by any vehicle (aggregator's ledger; NaN without DP).</summary>
    public double MaxVehicleEpsilon { get; internal set; } = double.NaN;

    /// <summary>One line on what the worker is doing now (progress for people watching a long round).</summary>
    public string Activity { get; internal set; } = "starting";

    /// <summary>The round in progress, 0 when none.</summary>
    public long CurrentRound { get; internal set; }

    /// <summary>Version of the current global model (the newest stored one).</summary>
    public long ModelVersion { get; internal set; }

    /// <summary>True while the worker is connected and running rounds (the HTTP surface's health).</summary>
    public bool Running { get; internal set; }

    /// <summary>Vehicles checked in.</summary>
    public int CheckedIn { get; internal set; }

    /// <summary>Set once the worker has finished its configured rounds.</summary>
    public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    internal void Record(RoundRecord record, float[]? model)
    {
        lock (_rounds)
        {
            int i = _rounds.FindIndex(r => r.Round == record.Round);
            if (i >= 0) _rounds[i] = record;
            else _rounds.Add(record);
        }
        _fleet.RoundRecorded(record, BytesUp, BytesDown);
        if (model is not null) _closed.Writer.TryWrite(new RoundClosed(record, model));
    }

    internal void Accepted()
    {
        Interlocked.Increment(ref _accepted);
        _fleet.UpdateAccepted();
    }

    internal void Duplicate() => Interlocked.Increment(ref _duplicates);

    internal void Rejected(string reason)
    {
        Interlocked.Increment(ref _rejected);
        _rejectedBy.AddOrUpdate(reason, 1, (_, n) => n + 1);
    }

    internal void Received(long bytes) => Interlocked.Add(ref _bytesUp, bytes);

    internal void Sent(long bytes) => Interlocked.Add(ref _bytesDown, bytes);
}
