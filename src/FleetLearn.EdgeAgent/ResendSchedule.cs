namespace FleetLearn.EdgeAgent;

/// <summary>
/// When each unacknowledged message of the outbox is sent again, kept in memory beside the durable outbox so that a resend
/// pass reads no payload it will not send and queries no LiteDB file (at 500 agents in one process, the pass's outbox query
/// alone was 12 of 62 sampled threads: docs/scale.md). Exponential backoff per message (1, 2, 4, 8, 16 × the
/// interval after its first, second … send), and a fleet-wide hold while the aggregator asks vehicles to slow down
/// (<see cref="Transport.Mqtt.UplinkPace"/>). Thread-safe (the agent loop enqueues and acknowledges, the resend loop sends).
/// </summary>
internal sealed class ResendSchedule(TimeSpan interval, double jitter = 0)
{
    private readonly object _gate = new();
    private readonly Dictionary<Guid, Entry> _entries = [];
    private DateTimeOffset _heldUntil = DateTimeOffset.MinValue;

    /// <summary>Messages waiting for an acknowledgement.</summary>
    public int Count
    {
        get
        {
            lock (_gate) return _entries.Count;
        }
    }

    /// <summary>Until when resends are held (the aggregator's pace); <see cref="DateTimeOffset.MinValue"/> when not held.</summary>
    public DateTimeOffset HeldUntil
    {
        get
        {
            lock (_gate) return _heldUntil;
        }
    }

    /// <summary>Tracks a message (first seen now, or found in the outbox at start-up with <paramref name="attempts"/> sends behind it).</summary>
    public void Track(Guid id, DateTimeOffset expires, int attempts = 0)
    {
        lock (_gate) _entries.TryAdd(id, new Entry(expires, attempts, DateTimeOffset.MinValue));
    }

    /// <summary>The message was acknowledged (or dropped): no more resends. False when it was not tracked.</summary>
    public bool Forget(Guid id)
    {
        lock (_gate) return _entries.Remove(id);
    }

    /// <summary>Whether <paramref name="id"/> still waits for an acknowledgement.</summary>
    public bool IsPending(Guid id)
    {
        lock (_gate) return _entries.ContainsKey(id);
    }

    /// <summary>Records a send at <paramref name="now"/>: the next one is due 2^min(earlier sends, 4) intervals later (1, 2, 4, 8, 16). Returns whether it was a resend.</summary>
    public bool Sent(Guid id, DateTimeOffset now)
    {
        lock (_gate)
        {
            if (!_entries.TryGetValue(id, out var e)) return false;
            int attempts = e.Attempts + 1;
            _entries[id] = e with { Attempts = attempts, Due = now + interval * Math.Pow(2, Math.Min(e.Attempts, 4)) };
            return e.Attempts > 0;
        }
    }

    /// <summary>Messages whose deadline passed (the caller drops them from the outbox); they are forgotten here.</summary>
    public IReadOnlyList<Guid> Expired(DateTimeOffset now)
    {
        lock (_gate)
        {
            var expired = _entries.Where(p => p.Value.Expires <= now).Select(p => p.Key).ToList();
            foreach (var id in expired) _entries.Remove(id);
            return expired;
        }
    }

    /// <summary>Messages due for a resend at <paramref name="now"/>, oldest deadline first; none while held (<paramref name="held"/> counts those that waited).</summary>
    public IReadOnlyList<Guid> Due(DateTimeOffset now, out int held)
    {
        lock (_gate)
        {
            var due = _entries.Where(p => p.Value.Due <= now).OrderBy(p => p.Value.Expires).Select(p => p.Key).ToList();
            held = now < _heldUntil ? due.Count : 0;
            return held > 0 ? [] : due;
        }
    }

    /// <summary>Whether resends are held at <paramref name="now"/>.</summary>
    public bool IsHeld(DateTimeOffset now)
    {
        lock (_gate) return now < _heldUntil;
    }

    /// <summary>
    /// The aggregator asked vehicles to hold resends for <paramref name="hold"/> from <paramref name="now"/> (zero: release).
    /// This vehicle holds a little longer (1 + <c>jitter</c> × the hold, jitter in [0, 0.5) per vehicle), so that a fleet
    /// released by the same signal does not resend in one burst.
    /// </summary>
    public void Hold(TimeSpan hold, DateTimeOffset now)
    {
        lock (_gate) _heldUntil = hold <= TimeSpan.Zero ? DateTimeOffset.MinValue : now + hold * (1 + jitter);
    }

    private readonly record struct Entry(DateTimeOffset Expires, int Attempts, DateTimeOffset Due);
}
