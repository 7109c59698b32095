using System.Globalization;

namespace FleetLearn.Simulation.Traces;

/// <summary>
/// Recorded traces as CSV: a header <c>vehicle,start,end,state</c>, then one segment per line; start and end are ISO 8601
/// instants with an offset (e.g. <c>2026-01-05T07:30:00Z</c>), state is <c>drive</c>, <c>park</c>, <c>charge</c> or
/// <c>depot</c> (parked, charging and on depot Wi-Fi: the only state that trains). Hour 0 is the earliest start; vehicles
/// keep the order of their first line. Bad input is refused with its line number.
/// </summary>
public static class TraceCsv
{
    /// <summary>The header line.</summary>
    public const string Header = "vehicle,start,end,state";

    /// <summary>Largest file accepted (a 10,000-vehicle year is about 1 GB; larger traces should be split).</summary>
    public const long MaxBytes = 2L << 30;

    /// <summary>Longest line accepted.</summary>
    public const int MaxLineLength = 512;

    /// <summary>Reads a trace file.</summary>
    public static AvailabilityTrace Load(string path)
    {
        var info = new FileInfo(path);
        if (!info.Exists) throw new FileNotFoundException($"Trace file '{path}' does not exist.", path);
        if (info.Length > MaxBytes) throw new InvalidDataException($"Trace file '{path}' is {info.Length} bytes; at most {MaxBytes} are read.");
        using var reader = new StreamReader(path);
        return Read(reader, Path.GetFileName(path));
    }

    /// <summary>Reads a trace from <paramref name="reader"/>.</summary>
    public static AvailabilityTrace Read(TextReader reader, string name = "trace")
    {
        ArgumentNullException.ThrowIfNull(reader);
        var header = reader.ReadLine();
        if (header is null || header.Trim().TrimStart('\uFEFF') != Header)
            throw new InvalidDataException($"{name}: line 1 must be the header '{Header}'.");
        var order = new Dictionary<string, int>(StringComparer.Ordinal);
        var rows = new List<List<(DateTimeOffset Start, DateTimeOffset End, VehicleActivity State, int Line)>>();
        int line = 1;
        for (string? text; (text = reader.ReadLine()) is not null;)
        {
            line++;
            if (text.Length > MaxLineLength) throw new InvalidDataException($"{name}: line {line} is longer than {MaxLineLength} characters.");
            if (string.IsNullOrWhiteSpace(text)) continue;
            var f = text.Split(',');
            if (f.Length != 4) throw new InvalidDataException($"{name}: line {line} has {f.Length} fields; expected vehicle,start,end,state.");
            string id = f[0].Trim();
            if (id.Length == 0 || id.Length > 256) throw new InvalidDataException($"{name}: line {line}: the vehicle id must be 1–256 characters.");
            var start = Instant(f[1], name, line, "start");
            var end = Instant(f[2], name, line, "end");
            if (end <= start) throw new InvalidDataException($"{name}: line {line}: end {f[2].Trim()} is not after start {f[1].Trim()}.");
            var state = f[3].Trim().ToLowerInvariant() switch
            {
                "drive" => VehicleActivity.Drive,
                "park" => VehicleActivity.Park,
                "charge" => VehicleActivity.Charge,
                "depot" => VehicleActivity.Depot,
                _ => throw new InvalidDataException($"{name}: line {line}: state '{f[3].Trim()}' is not drive, park, charge or depot."),
            };
            if (!order.TryGetValue(id, out int v))
            {
                order[id] = v = rows.Count;
                rows.Add([]);
            }
            rows[v].Add((start, end, state, line));
        }
        if (rows.Count == 0) throw new InvalidDataException($"{name}: no segments after the header.");
        var origin = rows.SelectMany(r => r).Min(r => r.Start);
        double hours = (rows.SelectMany(r => r).Max(r => r.End) - origin).TotalHours;
        var segments = new TraceSegment[rows.Count][];
        var ids = new string[rows.Count];
        foreach (var (id, v) in order) ids[v] = id;
        for (int v = 0; v < rows.Count; v++)
        {
            var sorted = rows[v].OrderBy(r => r.Start).ToList();
            for (int i = 1; i < sorted.Count; i++)
                if (sorted[i].Start < sorted[i - 1].End)
                    throw new InvalidDataException($"{name}: line {sorted[i].Line}: vehicle {ids[v]}'s segment overlaps the one on line {sorted[i - 1].Line}.");
            segments[v] = [.. sorted.Select(r => new TraceSegment((r.Start - origin).TotalHours, (r.End - origin).TotalHours, r.State))];
        }
        return new AvailabilityTrace(ids, segments, hours, origin, name);
    }

    /// <summary>Writes <paramref name="trace"/> in the format <see cref="Read"/> accepts (instants to the second, UTC).</summary>
    public static void Write(AvailabilityTrace trace, TextWriter writer)
    {
        ArgumentNullException.ThrowIfNull(trace);
        ArgumentNullException.ThrowIfNull(writer);
        writer.WriteLine(Header);
        for (int v = 0; v < trace.Vehicles; v++)
            foreach (var s in trace.Segments(v))
                writer.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{trace.VehicleIds[v]},{Format(trace.Origin.AddHours(s.Start))},{Format(trace.Origin.AddHours(s.End))},{s.State.ToString().ToLowerInvariant()}"));
    }

    private static string Format(DateTimeOffset t) => new DateTimeOffset(t.UtcTicks / TimeSpan.TicksPerSecond * TimeSpan.TicksPerSecond, TimeSpan.Zero).ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture);

    private static DateTimeOffset Instant(string text, string name, int line, string field)
    {
        if (!DateTimeOffset.TryParse(text.Trim(), CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out var t))
            throw new InvalidDataException($"{name}: line {line}: {field} '{text.Trim()}' is not an ISO 8601 instant.");
        return t;
    }
}
