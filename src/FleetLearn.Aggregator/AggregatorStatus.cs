using System.Threading.Channels;
using FleetLearn.Storage;

namespace FleetLearn.Aggregator;

/// <summary>A closed round and the global model after it.</summary>
public sealed record RoundClosed(RoundRecord Record, float[] Model);

/// <summary>What the aggregator is doing, for the HTTP surface, the CLI and tests. Thread-safe.</summary>
public sealed class AggregatorStatus
{
    private readonly Channel<RoundClosed> _closed = Channel.CreateUnbounded<RoundClosed>();
    private readonly List<RoundRecord> _rounds = [];
    private long _accepted, _duplicates, _rejected;

    /// <summary>Rounds closed, in order (with their model).</summary>
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
        if (model is not null) _closed.Writer.TryWrite(new RoundClosed(record, model));
    }

    internal void Accepted() => Interlocked.Increment(ref _accepted);

    internal void Duplicate() => Interlocked.Increment(ref _duplicates);

    internal void Rejected() => Interlocked.Increment(ref _rejected);
}
