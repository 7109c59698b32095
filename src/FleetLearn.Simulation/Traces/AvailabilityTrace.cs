using System.Globalization;

namespace FleetLearn.Simulation.Traces;

/// <summary>What a vehicle is doing during a trace segment; only <see cref="Depot"/> lets it train.</summary>
public enum VehicleActivity
{
    /// <summary>Driving (CSV <c>drive</c>).</summary>
    Drive,

    /// <summary>Parked, not charging (CSV <c>park</c>).</summary>
    Park,

    /// <summary>Parked and charging without Wi-Fi: a public fast charger, a workplace charger (CSV <c>charge</c>).</summary>
    Charge,

    /// <summary>Parked, charging and on depot (or home) Wi-Fi: eligible to train and upload (CSV <c>depot</c>).</summary>
    Depot,
}

/// <summary>One segment of a vehicle's trace, in hours since the trace's origin.</summary>
public readonly record struct TraceSegment(double Start, double End, VehicleActivity State);

/// <summary>
/// Each vehicle's activity over a span of hours (a generated vehicle day, <see cref="VehicleDayModel"/>, or a recorded trace,
/// <see cref="TraceCsv"/>), and the windows in which it may train: its <see cref="VehicleActivity.Depot"/> segments, merged.
/// </summary>
public sealed class AvailabilityTrace
{
    private readonly TraceSegment[][] _segments;
    private readonly (double Start, double End)[][] _windows;

    /// <summary>Creates a trace from per-vehicle segments (each vehicle's sorted, non-overlapping).</summary>
    public AvailabilityTrace(IReadOnlyList<string> vehicleIds, TraceSegment[][] segments, double hours, DateTimeOffset origin, string description)
    {
        ArgumentNullException.ThrowIfNull(vehicleIds);
        ArgumentNullException.ThrowIfNull(segments);
        if (vehicleIds.Count != segments.Length) throw new ArgumentException("One segment list per vehicle is required.");
        if (!(hours > 0)) throw new ArgumentOutOfRangeException(nameof(hours), hours, "A trace spans a positive number of hours.");
        VehicleIds = vehicleIds;
        _segments = segments;
        Hours = hours;
        Origin = origin;
        Description = description;
        _windows = new (double, double)[segments.Length][];
        for (int v = 0; v < segments.Length; v++)
        {
            var windows = new List<(double Start, double End)>();
            foreach (var s in segments[v])
            {
                if (s.State != VehicleActivity.Depot) continue;
                double start = Math.Max(0, s.Start), end = Math.Min(hours, s.End);
                if (end <= start) continue;
                if (windows.Count > 0 && windows[^1].End >= start) windows[^1] = (windows[^1].Start, Math.Max(windows[^1].End, end));
                else windows.Add((start, end));
            }
            _windows[v] = [.. windows];
        }
    }

    /// <summary>Vehicles in the trace.</summary>
    public int Vehicles => _segments.Length;

    /// <summary>Each vehicle's id (the CSV's, or its index for a generated trace).</summary>
    public IReadOnlyList<string> VehicleIds { get; }

    /// <summary>Hours the trace spans from <see cref="Origin"/>.</summary>
    public double Hours { get; }

    /// <summary>The wall-clock instant of hour 0 (UTC).</summary>
    public DateTimeOffset Origin { get; }

    /// <summary>Where the trace came from (the generator's settings, or the file).</summary>
    public string Description { get; }

    /// <summary>The vehicle's segments, sorted.</summary>
    public IReadOnlyList<TraceSegment> Segments(int vehicle) => _segments[vehicle];

    /// <summary>The vehicle's eligible windows (hours since origin), sorted and disjoint.</summary>
    public IReadOnlyList<(double Start, double End)> Windows(int vehicle) => _windows[vehicle];

    /// <summary>The end of the eligible window that contains <paramref name="hour"/>, or null when the vehicle is not eligible then.</summary>
    public double? WindowEndAt(int vehicle, double hour)
    {
        var w = _windows[vehicle];
        int lo = 0, hi = w.Length - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            if (w[mid].End <= hour) lo = mid + 1;
            else if (w[mid].Start > hour) hi = mid - 1;
            else return w[mid].End;
        }
        return null;
    }

    /// <summary>Fraction of the fleet eligible at <paramref name="hour"/>.</summary>
    public double EligibleFraction(double hour)
    {
        int n = 0;
        for (int v = 0; v < Vehicles; v++) if (WindowEndAt(v, hour) is not null) n++;
        return n / (double)Vehicles;
    }

    /// <summary>Mean eligible hours per vehicle per day.</summary>
    public double EligibleHoursPerDay => _windows.Sum(w => w.Sum(x => x.End - x.Start)) / Vehicles / (Hours / 24);

    /// <summary>The first <paramref name="vehicles"/> vehicles of the trace.</summary>
    public AvailabilityTrace Take(int vehicles)
    {
        if (vehicles > Vehicles)
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"The trace has {Vehicles} vehicles; the fleet asks for {vehicles}."));
        return vehicles == Vehicles ? this : new AvailabilityTrace(VehicleIds.Take(vehicles).ToArray(), _segments[..vehicles], Hours, Origin, Description);
    }
}
