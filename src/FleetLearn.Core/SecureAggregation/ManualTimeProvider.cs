namespace FleetLearn.Core.SecureAggregation;

/// <summary>A clock that moves only when told to (in-process simulation, benchmarks and tests).</summary>
public sealed class ManualTimeProvider(DateTimeOffset start) : TimeProvider
{
    private DateTimeOffset _now = start;

    /// <summary>Starts at 2025-01-01T00:00Z.</summary>
    public ManualTimeProvider() : this(new DateTimeOffset(2025, 1, 1, 0, 0, 0, TimeSpan.Zero)) { }

    /// <inheritdoc/>
    public override DateTimeOffset GetUtcNow() => _now;

    /// <summary>The monotonic clock moves with <see cref="Advance"/> too (in ticks of 100 ns), so durations measured on it are simulated time.</summary>
    public override long GetTimestamp() => _now.UtcTicks;

    /// <inheritdoc/>
    public override long TimestampFrequency => TimeSpan.TicksPerSecond;

    /// <summary>Moves the clock forward.</summary>
    public void Advance(TimeSpan delta)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(delta, TimeSpan.Zero);
        _now += delta;
    }
}
