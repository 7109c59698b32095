using FleetLearn.Core.Rounds;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Simulation.Traces;

/// <summary>
/// Which vehicles have checked in with the aggregator over a trace, and the check-in load per simulated hour. Without pace
/// steering a vehicle checks in when its eligible window opens. With it (<see cref="PaceSteering"/>), a vehicle that holds a
/// suggestion checks in at the suggested time if it is eligible then — not at the window's opening — and falls back to checking
/// in at its next window's opening once its suggestion has passed unused; every check-in reports the window's end and takes
/// the next suggestion. A checked-in vehicle is a candidate for selection until its window closes.
/// </summary>
internal sealed class PacedCheckIns
{
    private enum Kind { Open, CheckIn, Close }

    private readonly AvailabilityTrace _trace;
    private readonly PaceSteering? _pace;
    private readonly ManualTimeProvider? _clock;
    private readonly PriorityQueue<(Kind Kind, int Vehicle), (double, long)> _queue = new();
    private readonly double[] _windowEnd;
    private readonly bool[] _checkedIn;
    private readonly PaceSuggestion?[] _suggestion;
    private readonly long[] _perHour;
    private long _sequence;
    private double _now;
    private int _expired = -1;

    /// <summary>Check-ins of the first <paramref name="vehicles"/> vehicles over <paramref name="hours"/>; steered when <paramref name="pace"/> is set.</summary>
    public PacedCheckIns(AvailabilityTrace trace, int vehicles, double hours, bool pace, ulong seed)
    {
        _trace = trace;
        _windowEnd = new double[vehicles];
        _checkedIn = new bool[vehicles];
        _suggestion = new PaceSuggestion?[vehicles];
        _perHour = new long[(int)Math.Ceiling(hours) + 1];
        if (pace)
        {
            _clock = new ManualTimeProvider(trace.Origin);
            _pace = new PaceSteering(new PaceSteeringOptions { Seed = seed }, _clock);
        }
        for (int v = 0; v < vehicles; v++)
            foreach (var (start, _) in trace.Windows(v))
                if (start < hours) Schedule(start, Kind.Open, v);
    }

    /// <summary>Check-ins per simulated hour (index = hour since the origin).</summary>
    public IReadOnlyList<long> PerHour => _perHour;

    /// <summary>Whether <paramref name="vehicle"/> has checked in during its current window.</summary>
    public bool CheckedIn(int vehicle) => _checkedIn[vehicle];

    /// <summary>Processes every check-in up to <paramref name="hour"/>.</summary>
    public void AdvanceTo(double hour)
    {
        while (_queue.TryPeek(out _, out var at) && at.Item1 <= hour)
        {
            var (kind, v) = _queue.Dequeue();
            _now = at.Item1;
            _clock?.Advance(_trace.Origin + TimeSpan.FromHours(_now) - _clock.GetUtcNow());
            switch (kind)
            {
                case Kind.Open:
                    _windowEnd[v] = _trace.WindowEndAt(v, _now) ?? _now;
                    Schedule(_windowEnd[v], Kind.Close, v);
                    var s = _suggestion[v];
                    if (s is null || Hours(s.Until) <= _now) CheckIn(v);
                    else if (Math.Max(_now, Hours(s.From)) < _windowEnd[v]) Schedule(Math.Max(_now, Hours(s.From)), Kind.CheckIn, v);
                    break;
                case Kind.CheckIn:
                    if (_windowEnd[v] > _now && !_checkedIn[v]) CheckIn(v);
                    break;
                case Kind.Close:
                    if (_windowEnd[v] <= _now) _checkedIn[v] = false;
                    break;
            }
        }
    }

    private void CheckIn(int v)
    {
        _checkedIn[v] = true;
        int bin = (int)_now;
        if (bin < _perHour.Length) _perHour[bin]++;
        if (_pace is null) return;
        if (bin != _expired)
        {
            _pace.Expire(); // suggestions that passed unused free their hour's load (once per simulated hour)
            _expired = bin;
        }
        _suggestion[v] = _pace.CheckIn(v.ToString(System.Globalization.CultureInfo.InvariantCulture), _trace.Origin + TimeSpan.FromHours(_windowEnd[v]));
    }

    private double Hours(DateTimeOffset t) => (t - _trace.Origin).TotalHours;

    private void Schedule(double hour, Kind kind, int vehicle) => _queue.Enqueue((kind, vehicle), (hour, _sequence++));
}
