namespace FleetLearn.Simulation;

/// <summary>
/// The aggregator's clock in an MQTT simulation: real time plus the time skipped so far. When the simulated fleet knows that
/// nobody else will answer a phase, <see cref="Skip"/> jumps to the phase's deadline — as the in-process simulator advances its
/// fake clock — instead of waiting for it in real time; timers made by this clock fire at their due times on the skipped clock.
/// </summary>
public sealed class SkippingClock : TimeProvider
{
    private readonly Lock _lock = new();
    private readonly HashSet<SkippableTimer> _timers = [];
    private long _skippedTicks;

    /// <summary>Time skipped so far.</summary>
    public TimeSpan Skipped => TimeSpan.FromTicks(Interlocked.Read(ref _skippedTicks));

    /// <inheritdoc/>
    public override DateTimeOffset GetUtcNow() => System.GetUtcNow() + Skipped;

    /// <summary>Moves the clock forward by <paramref name="by"/>; timers due by then fire now.</summary>
    public void Skip(TimeSpan by)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(by, TimeSpan.Zero);
        SkippableTimer[] timers;
        lock (_lock)
        {
            Interlocked.Add(ref _skippedTicks, by.Ticks);
            timers = [.. _timers];
        }
        foreach (var timer in timers) timer.Reschedule();
    }

    /// <inheritdoc/>
    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        ArgumentNullException.ThrowIfNull(callback);
        var timer = new SkippableTimer(this, callback, state);
        lock (_lock) _timers.Add(timer);
        timer.Change(dueTime, period);
        return timer;
    }

    /// <summary>A real-time timer that remembers its due instant on the skipped clock, so that a skip can bring it forward.</summary>
    private sealed class SkippableTimer : ITimer
    {
        private readonly SkippingClock _clock;
        private readonly TimerCallback _callback;
        private readonly object? _state;
        private readonly ITimer _inner;
        private readonly Lock _lock = new();
        private DateTimeOffset? _dueAt;
        private TimeSpan _period = Timeout.InfiniteTimeSpan;

        public SkippableTimer(SkippingClock clock, TimerCallback callback, object? state)
        {
            (_clock, _callback, _state) = (clock, callback, state);
            _inner = System.CreateTimer(_ => Fire(), null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        }

        private void Fire()
        {
            lock (_lock) _dueAt = _period == Timeout.InfiniteTimeSpan ? null : _clock.GetUtcNow() + _period;
            _callback(_state);
        }

        public bool Change(TimeSpan dueTime, TimeSpan period)
        {
            lock (_lock)
            {
                _period = period;
                _dueAt = dueTime == Timeout.InfiniteTimeSpan ? null : _clock.GetUtcNow() + dueTime;
                return _inner.Change(dueTime, period);
            }
        }

        public void Reschedule()
        {
            lock (_lock)
            {
                if (_dueAt is not { } at) return;
                var left = at - _clock.GetUtcNow();
                _inner.Change(left < TimeSpan.Zero ? TimeSpan.Zero : left, _period);
            }
        }

        public void Dispose()
        {
            lock (_clock._lock) _clock._timers.Remove(this);
            _inner.Dispose();
        }

        public ValueTask DisposeAsync()
        {
            Dispose();
            return ValueTask.CompletedTask;
        }
    }
}
