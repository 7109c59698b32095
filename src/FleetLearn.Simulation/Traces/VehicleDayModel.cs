using System.Globalization;
using FleetLearn.Core.Random;

namespace FleetLearn.Simulation.Traces;

/// <summary>How a vehicle's day goes.</summary>
public enum VehicleProfile
{
    /// <summary>Drives to work and back; trains only while charging at home on home Wi-Fi (70% have it), a few hours a night.</summary>
    Commuter,

    /// <summary>A depot van: drives a day shift with stops; charges overnight at the depot (on its Wi-Fi), start staggered by the depot's load management.</summary>
    Delivery,

    /// <summary>Runs around the clock in two shifts; trains only during the 0.4–1.5 h depot charge at each handover (its mid-shift fast charge has no Wi-Fi).</summary>
    Taxi,
}

/// <summary>
/// A seeded vehicle-day model: each vehicle draws a profile and a time zone, then every day its drives, stops, charging and
/// Wi-Fi from the distributions in <see cref="Generate"/> (docs/async.md lists them). Each local day is drawn from its own
/// stream keyed by (seed, vehicle, day), so a fleet replays exactly and a longer horizon only appends days.
/// </summary>
/// <param name="Name">The trace's name (<c>commuter</c>, <c>delivery</c>, <c>taxi</c>, <c>mixed</c>).</param>
/// <param name="Profiles">Profiles and their shares of the fleet.</param>
/// <param name="TimeZones">UTC offsets in hours and their shares of the fleet.</param>
public sealed record VehicleDayModel(string Name, IReadOnlyList<(VehicleProfile Profile, double Weight)> Profiles, IReadOnlyList<(double OffsetHours, double Weight)> TimeZones)
{
    /// <summary>Hour 0 of generated traces: Monday 2026-01-05 00:00 UTC.</summary>
    public static DateTimeOffset Origin { get; } = new(2026, 1, 5, 0, 0, 0, TimeSpan.Zero);

    /// <summary>The default zone mix of a fleet on three continents: UTC−8 20%, UTC−5 30%, UTC 10%, UTC+1 30%, UTC+8 10%.</summary>
    public static IReadOnlyList<(double OffsetHours, double Weight)> DefaultTimeZones { get; } = [(-8, 0.2), (-5, 0.3), (0, 0.1), (1, 0.3), (8, 0.1)];

    /// <summary>
    /// <c>commuter</c>, <c>delivery</c>, <c>taxi</c> or <c>mixed</c> (50% commuters, 30% delivery vans, 20% taxis), optionally
    /// <c>:±H</c> to put the whole fleet in one UTC offset (default: <see cref="DefaultTimeZones"/>).
    /// </summary>
    public static VehicleDayModel Parse(string text)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(text);
        var parts = text.Trim().ToLowerInvariant().Split(':', 2);
        IReadOnlyList<(VehicleProfile, double)> profiles = parts[0] switch
        {
            "commuter" => [(VehicleProfile.Commuter, 1)],
            "delivery" => [(VehicleProfile.Delivery, 1)],
            "taxi" => [(VehicleProfile.Taxi, 1)],
            "mixed" => [(VehicleProfile.Commuter, 0.5), (VehicleProfile.Delivery, 0.3), (VehicleProfile.Taxi, 0.2)],
            _ => throw new ArgumentException($"--trace '{text}': expected commuter, delivery, taxi or mixed (optionally :±H for one UTC offset), or a CSV file (vehicle,start,end,state)."),
        };
        var zones = DefaultTimeZones;
        if (parts.Length == 2)
        {
            if (!double.TryParse(parts[1], NumberStyles.AllowLeadingSign | NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out double offset) || offset < -12 || offset > 14)
                throw new ArgumentException($"--trace '{text}': the UTC offset '{parts[1]}' must be a number of hours within -12..+14.");
            zones = [(offset, 1)];
        }
        return new VehicleDayModel(text.Trim().ToLowerInvariant(), profiles, zones);
    }

    /// <summary>Generates <paramref name="vehicles"/> vehicles over <paramref name="hours"/> hours from <see cref="Origin"/>.</summary>
    public AvailabilityTrace Generate(int vehicles, double hours, ulong seed)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(vehicles, 1);
        if (!(hours > 0) || hours > 24 * 366) throw new ArgumentOutOfRangeException(nameof(hours), hours, "--hours must be within (0, 8784].");
        var segments = new TraceSegment[vehicles][];
        Parallel.For(0, vehicles, v => segments[v] = Vehicle(v, hours, seed));
        var ids = Enumerable.Range(0, vehicles).Select(v => v.ToString(CultureInfo.InvariantCulture)).ToArray();
        return new AvailabilityTrace(ids, segments, hours, Origin, string.Create(CultureInfo.InvariantCulture, $"{Name} (vehicle-day model, seed {seed})"));
    }

    /// <summary>The profile and UTC offset of vehicle <paramref name="vehicle"/>.</summary>
    public (VehicleProfile Profile, double OffsetHours) Draw(int vehicle, ulong seed)
    {
        var rng = DeterministicRandom.Derive(seed, 0x7ACE, (ulong)vehicle);
        return (Pick(Profiles, rng.NextDouble()), Pick(TimeZones, rng.NextDouble()));
    }

    private static T Pick<T>(IReadOnlyList<(T Value, double Weight)> options, double u)
    {
        double total = options.Sum(o => o.Weight), acc = 0;
        foreach (var (value, weight) in options)
        {
            acc += weight / total;
            if (u < acc) return value;
        }
        return options[^1].Value;
    }

    private TraceSegment[] Vehicle(int vehicle, double hours, ulong seed)
    {
        var (profile, offset) = Draw(vehicle, seed);
        var day = new DayBuilder(DeterministicRandom.Derive(seed, 0x7ACF, (ulong)vehicle), DeterministicRandom.Derive(seed, 0x7AD0, (ulong)vehicle).NextUInt64());
        // Local time L = UTC + offset: build local days that cover UTC [0, hours], then shift and clip.
        int first = (int)Math.Floor(offset / 24) - 1, last = (int)Math.Ceiling((hours + offset) / 24) + 1;
        switch (profile)
        {
            case VehicleProfile.Commuter: day.Commuter(first, last); break;
            case VehicleProfile.Delivery: day.Delivery(first, last); break;
            default: day.Taxi(first, last); break;
        }
        var result = new List<TraceSegment>(day.Segments.Count);
        foreach (var s in day.Segments)
        {
            double start = Math.Max(0, s.Start - offset), end = Math.Min(hours, s.End - offset);
            if (end > start) result.Add(new TraceSegment(start, end, s.State));
        }
        return [.. result];
    }

    /// <summary>Appends contiguous local-time segments; every distribution of the model is in here.</summary>
    /// <remarks>
    /// The vehicle's own traits (home Wi-Fi, a charging timer) come from <paramref name="vehicleRng"/>; everything of local day d
    /// from streams keyed by (<paramref name="dayKey"/>, d): its anchor (departure, shift start, handovers) and its body. Drawing
    /// the anchors up front from one stream made every day depend on how many days the horizon held (issue 19).
    /// </remarks>
    private sealed class DayBuilder(DeterministicRandom vehicleRng, ulong dayKey)
    {
        private const ulong Anchor = 1, Body = 2;
        private DeterministicRandom rng = vehicleRng;

        public List<TraceSegment> Segments { get; } = [];

        /// <summary>Switches the draws to local day <paramref name="day"/>'s stream for <paramref name="part"/>.</summary>
        private void On(int day, ulong part) => rng = DeterministicRandom.Derive(dayKey, part, unchecked((ulong)(long)day));

        private double End => Segments.Count == 0 ? double.NegativeInfinity : Segments[^1].End;

        private double U(double a, double b) => a + (b - a) * rng.NextDouble();

        private double N(double mean, double sd, double lo, double hi) => Math.Clamp(mean + sd * rng.NextGaussian(), lo, hi);

        private void Add(double start, double end, VehicleActivity state)
        {
            if (Segments.Count > 0) start = Math.Max(start, End);
            if (end <= start) return;
            if (Segments.Count > 0 && Segments[^1].State == state) Segments[^1] = Segments[^1] with { End = end };
            else Segments.Add(new TraceSegment(start, end, state));
        }

        /// <summary>Drives from <paramref name="start"/> to <paramref name="end"/> in legs of 12–36 min with 3–15 min parked stops.</summary>
        private void Route(double start, double end)
        {
            double t = start;
            while (t < end)
            {
                double leg = Math.Min(end, t + U(0.2, 0.6));
                Add(t, leg, VehicleActivity.Drive);
                double stop = Math.Min(end, leg + U(0.05, 0.25));
                Add(leg, stop, VehicleActivity.Park);
                t = stop;
            }
        }

        /// <summary>
        /// Leaves home at N(7.5, 0.5) h, 20–60 min commute, parked at work (15%: a workplace charger for 1–3 h, no Wi-Fi),
        /// leaves at N(17.25, 0.75) h, 20–70 min home. Home: 70% of vehicles have Wi-Fi; plugs in on 75% of nights, at arrival
        /// + 3–30 min or (40% of vehicles, an off-peak timer) at N(23, 0.25) h; charges 1.5–6 h (until full, or until it leaves).
        /// </summary>
        public void Commuter(int first, int last)
        {
            bool homeWifi = rng.NextDouble() < 0.7, timer = rng.NextDouble() < 0.4;
            var leave = new double[last - first + 2];
            for (int i = 0; i < leave.Length; i++)
            {
                On(first + i, Anchor);
                leave[i] = 24.0 * (first + i) + N(7.5, 0.5, 5.5, 10);
            }
            Add(24.0 * first - 24, leave[0], VehicleActivity.Park);
            for (int i = 0; i + 1 < leave.Length; i++)
            {
                On(first + i, Body);
                double b = 24.0 * (first + i), atWork = leave[i] + U(0.33, 1.0);
                Add(leave[i], atWork, VehicleActivity.Drive);
                double workEnd = Math.Max(atWork + 4, b + N(17.25, 0.75, 15, 21));
                if (rng.NextDouble() < 0.15)
                {
                    double cs = atWork + U(0, 2);
                    Add(atWork, cs, VehicleActivity.Park);
                    Add(cs, Math.Min(workEnd, cs + U(1, 3)), VehicleActivity.Charge);
                }
                Add(End, workEnd, VehicleActivity.Park);
                double home = workEnd + U(0.33, 1.17);
                Add(workEnd, home, VehicleActivity.Drive);
                double next = leave[i + 1];
                if (rng.NextDouble() < 0.75)
                {
                    double start = timer ? Math.Max(home + 0.05, b + N(23, 0.25, 22, 24)) : home + U(0.05, 0.5);
                    double stop = Math.Min(next, start + U(1.5, 6));
                    Add(home, start, VehicleActivity.Park);
                    Add(start, stop, homeWifi ? VehicleActivity.Depot : VehicleActivity.Charge);
                }
                Add(End, next, VehicleActivity.Park);
            }
        }

        /// <summary>
        /// Shift from N(7, 0.4) h to N(18.5, 0.75) h on the road (legs and stops, a 30–45 min lunch stop, 30% of days at the
        /// depot charging on its Wi-Fi); back at the depot, charging starts 0–4 h later (load management) and lasts 3–7 h.
        /// </summary>
        public void Delivery(int first, int last)
        {
            var shift = new double[last - first + 2];
            for (int i = 0; i < shift.Length; i++)
            {
                On(first + i, Anchor);
                shift[i] = 24.0 * (first + i) + N(7, 0.4, 5.5, 9);
            }
            Add(24.0 * first - 24, shift[0], VehicleActivity.Park);
            for (int i = 0; i + 1 < shift.Length; i++)
            {
                On(first + i, Body);
                double b = 24.0 * (first + i), lunch = b + N(12.5, 0.5, 11, 14), end = b + N(18.5, 0.75, 16.5, 21);
                Route(shift[i], lunch);
                double lunchEnd = lunch + U(0.5, 0.75);
                Add(lunch, lunchEnd, rng.NextDouble() < 0.3 ? VehicleActivity.Depot : VehicleActivity.Park);
                Route(lunchEnd, end);
                double start = end + U(0, 4), stop = Math.Min(shift[i + 1], start + U(3, 7));
                Add(end, start, VehicleActivity.Park);
                Add(start, stop, VehicleActivity.Depot);
                Add(End, shift[i + 1], VehicleActivity.Park);
            }
        }

        /// <summary>
        /// Handovers at N(6, 0.5) h and N(18, 0.5) h: 0.4–1.5 h charging at the depot on its Wi-Fi; each shift has one
        /// 20–40 min fast charge without Wi-Fi about halfway, otherwise legs and short stops.
        /// </summary>
        public void Taxi(int first, int last)
        {
            var handovers = new List<double>();
            for (int d = first; d <= last + 1; d++)
            {
                On(d, Anchor);
                handovers.Add(24.0 * d + N(6, 0.5, 4.5, 7.5));
                handovers.Add(24.0 * d + N(18, 0.5, 16.5, 19.5));
            }
            Add(handovers[0] - 1, handovers[0], VehicleActivity.Drive);
            for (int i = 0; i + 1 < handovers.Count; i++)
            {
                On(first + i / 2, Body + (ulong)(i % 2)); // the shift after the morning or the evening handover
                double depotEnd = handovers[i] + U(0.4, 1.5);
                Add(handovers[i], depotEnd, VehicleActivity.Depot);
                double mid = (depotEnd + handovers[i + 1]) / 2 + U(-1, 1), fastEnd = mid + U(0.33, 0.67);
                Route(depotEnd, mid);
                Add(mid, fastEnd, VehicleActivity.Charge);
                Route(fastEnd, handovers[i + 1]);
            }
        }
    }
}
