using FleetLearn.Core.Random;

namespace FleetLearn.Core.Rounds;

/// <summary>Pace steering's settings.</summary>
public sealed record PaceSteeringOptions
{
    /// <summary>How soon after a check-in the next suggested one may start (one check-in a day by default).</summary>
    public TimeSpan MinInterval { get; init; } = TimeSpan.FromHours(20);

    /// <summary>Width of a suggested check-in window (one hour-of-day bin).</summary>
    public TimeSpan Width { get; init; } = TimeSpan.FromHours(1);

    /// <summary>An hour is one of the vehicle's usual hours when it was eligible in it on at least this fraction of its most-seen hour's days.</summary>
    public double UsualFraction { get; init; } = 0.5;

    /// <summary>Seed of the tie-break between equally loaded hours.</summary>
    public ulong Seed { get; init; }
}

/// <summary>A suggested check-in window: check in at or after <paramref name="From"/>, before <paramref name="Until"/>.</summary>
public sealed record PaceSuggestion(DateTimeOffset From, DateTimeOffset Until);

/// <summary>
/// Pace steering for synchronous rounds (Bonawitz et al. 2019, "Towards Federated Learning at Scale", §2.3): when a vehicle
/// checks in, the aggregator suggests when it should check in next, so that check-ins spread evenly over the hours the fleet
/// is eligible instead of piling up when most vehicles plug in. It learns each vehicle's usual eligible hours (UTC hour of day)
/// from the windows vehicles report at check-in, and hands each vehicle the least-loaded of its usual hours (the load: the
/// suggestions outstanding for that hour), at least <see cref="PaceSteeringOptions.MinInterval"/> ahead. Pure; time injected.
/// </summary>
public sealed class PaceSteering
{
    private readonly PaceSteeringOptions _options;
    private readonly TimeProvider _time;
    private readonly Dictionary<string, double[]> _seen = new(StringComparer.Ordinal);
    private readonly Dictionary<string, (int Hour, DateTimeOffset Until)> _outstanding = new(StringComparer.Ordinal);
    private readonly int[] _load = new int[24];
    private readonly DeterministicRandom _rng;

    /// <summary>Starts with no history.</summary>
    public PaceSteering(PaceSteeringOptions options, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(time);
        if (options.Width <= TimeSpan.Zero || options.Width > TimeSpan.FromHours(24)) throw new ArgumentException("The suggested window's width must be within (0, 24] hours.", nameof(options));
        if (options.MinInterval < TimeSpan.Zero) throw new ArgumentException("The minimum interval must be ≥ 0.", nameof(options));
        if (!(options.UsualFraction > 0 && options.UsualFraction <= 1)) throw new ArgumentException("The usual fraction must be within (0, 1].", nameof(options));
        _options = options;
        _time = time;
        _rng = DeterministicRandom.Derive(options.Seed, 0xBACE);
    }

    /// <summary>Suggestions outstanding per UTC hour of day (the load the aggregator balances).</summary>
    public IReadOnlyList<int> Load => _load;

    /// <summary>
    /// <paramref name="vehicle"/> checked in now, eligible until <paramref name="eligibleUntil"/>: its window is learned and it is
    /// handed the start of its next check-in window (null while none of its hours is known).
    /// </summary>
    public PaceSuggestion? CheckIn(string vehicle, DateTimeOffset eligibleUntil)
    {
        ArgumentException.ThrowIfNullOrEmpty(vehicle);
        var now = _time.GetUtcNow();
        Release(vehicle);
        if (!_seen.TryGetValue(vehicle, out var hours)) _seen[vehicle] = hours = new double[24];
        for (var t = Floor(now); t < eligibleUntil; t = t.AddHours(1))
        {
            // The fraction of this hour the vehicle was eligible in (its first and last hours are partial).
            double from = Math.Max(0, (now - t).TotalHours), until = Math.Min(1, (eligibleUntil - t).TotalHours);
            if (until > from) hours[t.Hour] += until - from;
        }
        return Suggest(vehicle, now);
    }

    /// <summary>Drops the vehicle's outstanding suggestion (it checked in, or left the fleet); false when it had none.</summary>
    public bool Release(string vehicle)
    {
        if (!_outstanding.Remove(vehicle, out var s)) return false;
        _load[s.Hour]--;
        return true;
    }

    /// <summary>Frees the load of suggestions whose window has passed unused.</summary>
    public int Expire()
    {
        var now = _time.GetUtcNow();
        var gone = _outstanding.Where(p => p.Value.Until <= now).Select(p => p.Key).ToList();
        foreach (var v in gone) Release(v);
        return gone.Count;
    }

    private PaceSuggestion? Suggest(string vehicle, DateTimeOffset now)
    {
        var hours = _seen[vehicle];
        double most = hours.Max();
        if (!(most > 0)) return null;
        int best = -1;
        double bestKey = double.MaxValue;
        for (int h = 0; h < 24; h++)
        {
            if (hours[h] < _options.UsualFraction * most) continue;
            double key = _load[h] + _rng.NextDouble() * 0.5; // ties broken at random, seeded
            if (key < bestKey)
            {
                bestKey = key;
                best = h;
            }
        }
        var earliest = now + _options.MinInterval;
        var from = Floor(earliest).AddHours((best - Floor(earliest).Hour + 24) % 24);
        if (from < earliest) from = from.AddDays(1); // its hour has begun: the next day's
        var until = from + _options.Width;
        _outstanding[vehicle] = (best, until);
        _load[best]++;
        return new PaceSuggestion(from, until);
    }

    private static DateTimeOffset Floor(DateTimeOffset t) => new(t.UtcDateTime.Date.AddHours(t.UtcDateTime.Hour), TimeSpan.Zero);
}
