using System.Globalization;
using FleetLearn.Reporting;

namespace FleetLearn.Simulation.Traces;

/// <summary>
/// A trace run's files: <c>{label}-points.csv</c> (every evaluation), its charts and <c>{label}-report.html</c> (summary, waste
/// by cause, the same charts), and <c>accuracy-vs-hours.png</c> redrawn from every run in the folder, so that a sync and a
/// FedBuff run written to the same <c>--out</c> share one chart.
/// </summary>
public static class TraceArtifacts
{
    /// <summary>Writes the run's points, charts and report, then redraws <c>accuracy-vs-hours.png</c>; returns the names written.</summary>
    /// <param name="folder">The --out folder.</param>
    /// <param name="label">The run's name in file names and legends.</param>
    /// <param name="result">The run.</param>
    /// <param name="target">The target accuracy (a reference line).</param>
    /// <param name="summary">Key/value lines for the report's summary table.</param>
    public static IReadOnlyList<string> Write(string folder, string label, TraceRunResult result, double target, IEnumerable<(string Key, object? Value)>? summary = null)
    {
        var report = new HtmlReport($"{label}: {result.Mode.ToString().ToLowerInvariant()} over an availability trace");
        foreach (var (key, value) in summary ?? []) report.AddSummary(key, value);
        report.AddSection("Waste");
        report.AddTable(["cause", "updates", "share of decided"],
            result.WastedUpdates.Select(p => new object?[] { p.Key.ToString().ToLowerInvariant(), p.Value, result.Decided == 0 ? 0 : p.Value / (double)result.Decided }),
            string.Create(CultureInfo.InvariantCulture, $"{result.UsedUpdates} updates used, {result.Decided} decided; vehicle compute hours used {result.ComputeHours.Used:F1}, wasted {result.ComputeHours.Wasted:F1}"));
        report.AddSection("Charts");
        report.AddChart(new LineChart
        {
            Title = $"{label}: test accuracy against simulated hours",
            XLabel = "simulated hours",
            YLabel = "test accuracy",
            Series = [ChartSeries.FromXY(label, result.Points.Select(p => p.Hours), result.Points.Select(p => p.Accuracy))],
            Reference = new ReferenceLine(target, string.Create(CultureInfo.InvariantCulture, $"target {target:0.##}")),
        });
        Directory.CreateDirectory(folder);
        var written = new List<string>();
        string points = $"{label}-points.csv";
        using (var writer = new StreamWriter(Path.Combine(folder, points)))
        {
            var csv = new CsvWriter(writer, ["hours", "version", "accuracy", "loss", "applied_updates", "wasted_updates"]);
            foreach (var p in result.Points) csv.WriteRow(p.Hours, p.Version, p.Accuracy, p.Loss, p.Applied, p.Wasted);
        }
        written.Add(points);
        if (result.Staleness.Count > 1 || !result.Staleness.ContainsKey(0))
        {
            Chart(folder, $"{label}-staleness.png", new LineChart
            {
                Title = $"{label}: accepted updates by staleness τ",
                XLabel = "staleness τ (versions behind)",
                YLabel = "updates",
                Series = [ChartSeries.FromXY(label, result.Staleness.Keys.Order().Select(k => (double)k), result.Staleness.OrderBy(p => p.Key).Select(p => (double)p.Value))],
            }, written, report);
        }
        var counts = result.Participations.GroupBy(c => c).OrderBy(g => g.Key).ToList();
        Chart(folder, $"{label}-participation.png", new LineChart
        {
            Title = $"{label}: vehicles by number of contributions",
            XLabel = "contributions per vehicle",
            YLabel = "vehicles",
            LogY = true,
            Series = [ChartSeries.FromXY(label, counts.Select(g => (double)g.Key), counts.Select(g => (double)g.Count()))],
        }, written, report);
        if (result.CheckInsPerHour is { Count: > 0 } load)
        {
            string loadCsv = $"{label}-checkins.csv";
            using (var writer = new StreamWriter(Path.Combine(folder, loadCsv)))
            {
                var csv = new CsvWriter(writer, ["hour", "checkins"]);
                for (int h = 0; h < load.Count; h++) csv.WriteRow(h, load[h]);
            }
            written.Add(loadCsv);
            Chart(folder, $"{label}-checkins.png", new LineChart
            {
                Title = string.Create(CultureInfo.InvariantCulture, $"{label}: check-ins per simulated hour (peak {load.Max():N0}, mean {load.Average():N0})"),
                XLabel = "simulated hours",
                YLabel = "check-ins",
                Series = [ChartSeries.FromXY(label, Enumerable.Range(0, load.Count).Select(h => (double)h), load.Select(c => (double)c))],
            }, written, report);
        }
        if (result.Secure is { } secure)
        {
            report.AddSection("Secure aggregation");
            report.AddTable(["groups", "aborted", "mean members", "key phases (s)", "masked input (h)", "unmasking (s)", "masks rebuilt"],
                [[secure.Groups, secure.Aborted, secure.Members / (double)Math.Max(1, secure.Groups), secure.KeyPhaseHours * 3600 / Math.Max(1, secure.Groups),
                  secure.InputPhaseHours / Math.Max(1, secure.Groups), secure.UnmaskPhaseHours * 3600 / Math.Max(1, secure.Groups), secure.MasksRebuilt]],
                "per group means; members whose window closed before they sent each phase's message: "
                + string.Join(", ", secure.DroppedIn.Select(p => string.Create(CultureInfo.InvariantCulture, $"{p.Key} {p.Value}"))));
        }
        string html = $"{label}-report.html";
        File.WriteAllText(Path.Combine(folder, html), report.ToHtml());
        written.Add(html);
        var runs = Directory.GetFiles(folder, "*-points.csv").Order(StringComparer.Ordinal).Select(path => (Name: Path.GetFileName(path)[..^"-points.csv".Length], Points: Read(path))).ToList();
        Chart(folder, "accuracy-vs-hours.png", new LineChart
        {
            Title = "Test accuracy against simulated hours, same trace",
            XLabel = "simulated hours",
            YLabel = "test accuracy",
            Series = [.. runs.Select(r => ChartSeries.FromXY(r.Name, r.Points.Select(p => p.Hours), r.Points.Select(p => p.Accuracy)))],
            Reference = new ReferenceLine(target, string.Create(CultureInfo.InvariantCulture, $"target {target:0.##}")),
        }, written);
        var loads = Directory.GetFiles(folder, "*-checkins.csv").Order(StringComparer.Ordinal).Select(path => (Name: Path.GetFileName(path)[..^"-checkins.csv".Length], Load: Read(path, 1))).ToList();
        if (loads.Count > 0)
        {
            Chart(folder, "checkins-per-hour.png", new LineChart
            {
                Title = "Check-ins per simulated hour, same trace",
                XLabel = "simulated hours",
                YLabel = "check-ins",
                Series = [.. loads.Select(r => ChartSeries.FromXY(r.Name, r.Load.Select(p => p.X), r.Load.Select(p => p.Y)))],
            }, written);
        }
        return written;
    }

    private static void Chart(string folder, string name, LineChart chart, List<string> written, HtmlReport? report = null)
    {
        report?.AddChart(chart);
        File.WriteAllBytes(Path.Combine(folder, name), PngChartRenderer.Render(chart));
        written.Add(name);
    }

    private static List<(double Hours, double Accuracy)> Read(string path) =>
        [.. Read(path, 2).Select(p => (p.X, p.Y))];

    private static List<(double X, double Y)> Read(string path, int column) =>
        [.. File.ReadLines(path).Skip(1).Where(l => l.Length > 0).Select(l => l.Split(','))
            .Select(f => (double.Parse(f[0], CultureInfo.InvariantCulture), double.Parse(f[column], CultureInfo.InvariantCulture)))];
}
