using System.Globalization;
using FleetLearn.Reporting;

namespace FleetLearn.Simulation.Traces;

/// <summary>
/// A trace run's files: <c>{label}-points.csv</c> (every evaluation) and charts redrawn from every run in the folder, so that a
/// sync and a FedBuff run written to the same <c>--out</c> share one accuracy-vs-hours chart.
/// </summary>
public static class TraceArtifacts
{
    /// <summary>Writes the run's points and its staleness and participation charts, then redraws <c>accuracy-vs-hours.png</c>; returns the names written.</summary>
    public static IReadOnlyList<string> Write(string folder, string label, TraceRunResult result, double target)
    {
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
            }, written);
        }
        var counts = result.Participations.GroupBy(c => c).OrderBy(g => g.Key).ToList();
        Chart(folder, $"{label}-participation.png", new LineChart
        {
            Title = $"{label}: vehicles by number of contributions",
            XLabel = "contributions per vehicle",
            YLabel = "vehicles",
            LogY = true,
            Series = [ChartSeries.FromXY(label, counts.Select(g => (double)g.Key), counts.Select(g => (double)g.Count()))],
        }, written);
        var runs = Directory.GetFiles(folder, "*-points.csv").Order(StringComparer.Ordinal).Select(path => (Name: Path.GetFileName(path)[..^"-points.csv".Length], Points: Read(path))).ToList();
        Chart(folder, "accuracy-vs-hours.png", new LineChart
        {
            Title = "Test accuracy against simulated hours, same trace",
            XLabel = "simulated hours",
            YLabel = "test accuracy",
            Series = [.. runs.Select(r => ChartSeries.FromXY(r.Name, r.Points.Select(p => p.Hours), r.Points.Select(p => p.Accuracy)))],
            Reference = new ReferenceLine(target, string.Create(CultureInfo.InvariantCulture, $"target {target:0.##}")),
        }, written);
        return written;
    }

    private static void Chart(string folder, string name, LineChart chart, List<string> written)
    {
        File.WriteAllBytes(Path.Combine(folder, name), PngChartRenderer.Render(chart));
        written.Add(name);
    }

    private static List<(double Hours, double Accuracy)> Read(string path) =>
        [.. File.ReadLines(path).Skip(1).Where(l => l.Length > 0).Select(l => l.Split(','))
            .Select(f => (double.Parse(f[0], CultureInfo.InvariantCulture), double.Parse(f[2], CultureInfo.InvariantCulture)))];
}
