using CsCheck;
using FleetLearn.Simulation.Traces;

namespace FleetLearn.Simulation.Tests;

/// <summary>The vehicle-day model (seeded, profiles, time zones), the CSV loader, and the per-vehicle resource distributions.</summary>
public sealed class AvailabilityTraceTests
{
    [Fact]
    public void Generate_SameSeedSameTrace_OtherSeedOther()
    {
        var model = VehicleDayModel.Parse("mixed");
        var a = model.Generate(200, 72, 5);
        var b = model.Generate(200, 72, 5);
        var c = model.Generate(200, 72, 6);
        for (int v = 0; v < 200; v++) Assert.Equal(a.Segments(v), b.Segments(v));
        Assert.Contains(Enumerable.Range(0, 200), v => !a.Segments(v).SequenceEqual(c.Segments(v)));
    }

    [Theory]
    [InlineData("commuter")]
    [InlineData("delivery")]
    [InlineData("taxi")]
    [InlineData("mixed")]
    [InlineData("mixed:-8")]
    public void Generate_FirstDayDoesNotDependOnTheHorizon(string name)
    {
        // A longer run must replay the shorter run's hours: the first 24 h of --hours 72 are --hours 24's trace.
        var model = VehicleDayModel.Parse(name);
        var day = model.Generate(500, 24, 7);
        var three = model.Generate(500, 72, 7);
        var differ = Enumerable.Range(0, 500).Where(v => !day.Segments(v).SequenceEqual(ClipTo(three.Segments(v), 24))).ToList();
        Assert.Empty(differ);
        for (int v = 0; v < 500; v++) Assert.Equal(day.Windows(v), three.Windows(v).Where(w => w.Start < 24).Select(w => (w.Start, Math.Min(w.End, 24.0))));
        // And the 48 h horizon's first two days are the 72 h horizon's.
        var two = model.Generate(500, 48, 7);
        Assert.All(Enumerable.Range(0, 500), v => Assert.Equal(two.Segments(v), ClipTo(three.Segments(v), 48)));
    }

    private static List<TraceSegment> ClipTo(IReadOnlyList<TraceSegment> segments, double hours) =>
        [.. segments.Where(s => s.Start < hours).Select(s => s with { End = Math.Min(s.End, hours) })];

    [Theory]
    [InlineData("commuter")]
    [InlineData("delivery")]
    [InlineData("taxi")]
    [InlineData("mixed:+9")]
    public void Segments_ContiguousSortedWithinTheSpan(string name)
    {
        var trace = VehicleDayModel.Parse(name).Generate(100, 50, 1);
        for (int v = 0; v < trace.Vehicles; v++)
        {
            var s = trace.Segments(v);
            Assert.Equal(0, s[0].Start);
            Assert.Equal(50, s[^1].End, 9);
            for (int i = 1; i < s.Count; i++)
            {
                Assert.Equal(s[i - 1].End, s[i].Start, 9);
                Assert.True(s[i].End > s[i].Start);
            }
            foreach (var (start, end) in trace.Windows(v))
                Assert.All(s.Where(x => x.Start < end && x.End > start), x => Assert.Equal(VehicleActivity.Depot, x.State));
        }
    }

    [Fact]
    public void Commuters_TrainAtNightOnly_InTheirOwnTimeZone()
    {
        // All in UTC+0: nobody at noon (at work), a share at 01:00 (charging at home on Wi-Fi).
        var utc = VehicleDayModel.Parse("commuter:+0").Generate(2000, 48, 3);
        Assert.Equal(0, utc.EligibleFraction(24 + 12));
        Assert.InRange(utc.EligibleFraction(24 + 1), 0.1, 0.5);
        // UTC−5: the same local night is five hours later in UTC.
        var east = VehicleDayModel.Parse("commuter:-5").Generate(2000, 48, 3);
        Assert.Equal(0, east.EligibleFraction(24 + 17));
        Assert.InRange(east.EligibleFraction(24 + 6), 0.1, 0.5);
    }

    [Fact]
    public void Taxis_TrainAtHandovers_DeliveryVansOvernight()
    {
        var taxi = VehicleDayModel.Parse("taxi:+0").Generate(2000, 48, 2);
        Assert.InRange(taxi.EligibleFraction(24 + 6.5), 0.3, 0.9);
        Assert.Equal(0, taxi.EligibleFraction(24 + 12.5) + taxi.EligibleFraction(24 + 1));
        Assert.InRange(taxi.EligibleHoursPerDay, 1, 3);
        var vans = VehicleDayModel.Parse("delivery:+0").Generate(2000, 48, 2);
        Assert.Equal(0, vans.EligibleFraction(24 + 10));
        Assert.InRange(vans.EligibleFraction(24 + 23), 0.5, 1);
    }

    [Fact]
    public void Mixed_ProfileAndZoneShares()
    {
        var model = VehicleDayModel.Parse("mixed");
        var draws = Enumerable.Range(0, 20_000).Select(v => model.Draw(v, 9)).ToList();
        Assert.InRange(draws.Count(d => d.Profile == VehicleProfile.Commuter) / 20_000.0, 0.48, 0.52);
        Assert.InRange(draws.Count(d => d.Profile == VehicleProfile.Taxi) / 20_000.0, 0.18, 0.22);
        Assert.InRange(draws.Count(d => d.OffsetHours == -5) / 20_000.0, 0.28, 0.32);
        Assert.InRange(draws.Count(d => d.OffsetHours == 8) / 20_000.0, 0.08, 0.12);
    }

    [Fact]
    public void WindowEndAt_InsideAndOutside()
    {
        var trace = TraceCsv.Read(new StringReader("""
            vehicle,start,end,state
            a,2026-01-05T00:00:00Z,2026-01-05T01:00:00Z,park
            a,2026-01-05T01:00:00Z,2026-01-05T02:30:00Z,depot
            a,2026-01-05T02:30:00Z,2026-01-05T03:00:00Z,depot
            a,2026-01-05T03:00:00Z,2026-01-05T04:00:00Z,drive
            """));
        Assert.Null(trace.WindowEndAt(0, 0.5));
        Assert.Equal(3, trace.WindowEndAt(0, 1)); // adjacent depot segments merge into one window
        Assert.Equal(3, trace.WindowEndAt(0, 2.9));
        Assert.Null(trace.WindowEndAt(0, 3));
        Assert.Equal([(1.0, 3.0)], trace.Windows(0));
        Assert.Equal(4, trace.Hours);
    }

    [Fact]
    public void Csv_RoundTripsAGeneratedTrace()
    {
        var trace = VehicleDayModel.Parse("mixed").Generate(50, 30, 4);
        var text = new StringWriter();
        TraceCsv.Write(trace, text);
        var back = TraceCsv.Read(new StringReader(text.ToString()));
        Assert.Equal(trace.VehicleIds, back.VehicleIds);
        Assert.Equal(VehicleDayModel.Origin, back.Origin);
        for (int v = 0; v < 50; v++)
        {
            Assert.Equal(trace.Windows(v).Count, back.Windows(v).Count);
            foreach (var (w, b) in trace.Windows(v).Zip(back.Windows(v)))
            {
                Assert.Equal(w.Start, b.Start, 1.0 / 3600);
                Assert.Equal(w.End, b.End, 1.0 / 3600);
            }
        }
    }

    [Theory]
    [InlineData("vehicle,from,to,state\n", "t: line 1 must be the header 'vehicle,start,end,state'.")]
    [InlineData("vehicle,start,end,state\na,2026-01-05T01:00:00Z,2026-01-05T00:00:00Z,park\n", "t: line 2: end 2026-01-05T00:00:00Z is not after start 2026-01-05T01:00:00Z.")]
    [InlineData("vehicle,start,end,state\na,2026-01-05T00:00:00Z,2026-01-05T01:00:00Z,sleep\n", "t: line 2: state 'sleep' is not drive, park, charge or depot.")]
    [InlineData("vehicle,start,end,state\na,yesterday,2026-01-05T01:00:00Z,park\n", "t: line 2: start 'yesterday' is not an ISO 8601 instant.")]
    [InlineData("vehicle,start,end,state\na,2026-01-05T00:00:00Z,2026-01-05T02:00:00Z,park\nb,2026-01-05T00:00:00Z,2026-01-05T02:00:00Z,park\na,2026-01-05T01:00:00Z,2026-01-05T03:00:00Z,depot\n", "t: line 4: vehicle a's segment overlaps the one on line 2.")]
    [InlineData("vehicle,start,end,state\na,2026-01-05T00:00:00Z,park\n", "t: line 2 has 3 fields; expected vehicle,start,end,state.")]
    [InlineData("vehicle,start,end,state\n", "t: no segments after the header.")]
    public void Csv_BadInput_RefusedWithLine(string text, string message) =>
        Assert.Equal(message, Assert.Throws<InvalidDataException>(() => TraceCsv.Read(new StringReader(text), "t")).Message);

    [Fact]
    public void Take_MoreVehiclesThanTheTraceHolds_Refused()
    {
        var trace = VehicleDayModel.Parse("taxi").Generate(10, 24, 1);
        Assert.Equal(5, trace.Take(5).Vehicles);
        Assert.Equal("The trace has 10 vehicles; the fleet asks for 11.", Assert.Throws<ArgumentException>(() => trace.Take(11)).Message);
    }

    [Fact]
    public void Resources_MediansAsStated()
    {
        var r = new VehicleResources(UpdateMinutes: 10, ComputeSpread: 0.6, MedianMbps: 20, BandwidthSpread: 1);
        var compute = Enumerable.Range(0, 20_001).Select(v => r.ComputeHours(3, v) * 60).Order().ToArray();
        var mbps = Enumerable.Range(0, 20_001).Select(v => r.Mbps(3, v)).Order().ToArray();
        Assert.InRange(compute[10_000], 9.7, 10.3);
        Assert.InRange(mbps[10_000], 19.4, 20.6);
        // σ of ln: the 84th percentile is e^σ times the median.
        Assert.InRange(compute[16_800] / compute[10_000], Math.Exp(0.6) * 0.95, Math.Exp(0.6) * 1.05);
        // 800 KB down and up at 20 Mbit/s: 0.64 s on top of the compute.
        Assert.Equal(r.ComputeHours(3, 7) + 1_600_000 * 8.0 / (r.Mbps(3, 7) * 1e6) / 3600, r.TaskHours(3, 7, 800_000, 800_000), 12);
    }
}

/// <summary>The trace CSV decoder under generated input: segments round-trip exactly, and anything malformed is refused with InvalidDataException, never another exception.</summary>
public sealed class TraceCsvPropertyTests
{
    private static readonly string[] States = ["drive", "park", "charge", "depot"];

    [Fact]
    public void Read_GeneratedSegments_RoundTripToTheSecond()
    {
        // Per vehicle: contiguous segments of 1..600 minutes with random states, from a random start in the first day.
        var genVehicle = Gen.Select(Gen.Int[0, 1439], Gen.Select(Gen.Int[1, 600], Gen.Int[0, 3]).Array[1, 8]);
        genVehicle.Array[1, 5].Sample(vehicles =>
        {
            var origin = new DateTimeOffset(2026, 3, 1, 0, 0, 0, TimeSpan.Zero);
            var text = new StringWriter();
            text.WriteLine(TraceCsv.Header);
            var expected = new List<List<(double, double, string)>>();
            for (int v = 0; v < vehicles.Length; v++)
            {
                var (start, segments) = vehicles[v];
                var list = new List<(double, double, string)>();
                int t = start;
                foreach (var (minutes, state) in segments)
                {
                    text.WriteLine($"car-{v},{origin.AddMinutes(t):yyyy-MM-ddTHH:mm:ssZ},{origin.AddMinutes(t + minutes):yyyy-MM-ddTHH:mm:ssZ},{States[state]}");
                    list.Add((t, t + minutes, States[state]));
                    t += minutes;
                }
                expected.Add(list);
            }
            var trace = TraceCsv.Read(new StringReader(text.ToString()));
            double first = vehicles.Min(x => x.Item1);
            Assert.Equal(vehicles.Length, trace.Vehicles);
            for (int v = 0; v < vehicles.Length; v++)
            {
                Assert.Equal($"car-{v}", trace.VehicleIds[v]);
                Assert.Equal(expected[v].Select(e => ((e.Item1 - first) / 60, (e.Item2 - first) / 60, e.Item3)),
                    trace.Segments(v).Select(s => (s.Start, s.End, s.State.ToString().ToLowerInvariant())));
            }
        });
    }

    [Fact]
    public void Read_ArbitraryLines_RefusedOnlyWithInvalidData()
    {
        var field = Gen.OneOf(Gen.String[Gen.Char[' ', '~'], 0, 30], Gen.OneOfConst("2026-01-05T00:00:00Z", "2026-01-05T01:00:00Z", "depot", "park", "car", ""));
        var line = Gen.OneOf(field.Array[0, 6].Select(f => string.Join(',', f)), Gen.String[Gen.Char, 0, 600]);
        line.Array[0, 6].Sample(lines =>
        {
            string text = TraceCsv.Header + "\n" + string.Join("\n", lines);
            try
            {
                var trace = TraceCsv.Read(new StringReader(text));
                Assert.True(trace.Vehicles >= 1 && trace.Hours > 0);
            }
            catch (InvalidDataException)
            {
                // refused, with a line number: the only allowed failure
            }
        });
    }
}
