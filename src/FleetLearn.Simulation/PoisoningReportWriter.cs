using System.Globalization;
using System.Text;
using FleetLearn.Reporting;

namespace FleetLearn.Simulation;

/// <summary>Writes a <see cref="PoisoningReport"/> as a Markdown table and SVG charts (docs/robustness.md).</summary>
public static class PoisoningReportWriter
{
    /// <summary>The table: one row per attack × fraction, per defence "clean accuracy / backdoor success" in percent.</summary>
    public static string Markdown(PoisoningReport report)
    {
        ArgumentNullException.ThrowIfNull(report);
        var defences = report.Baselines.Select(b => b.Defence).ToArray();
        var sb = new StringBuilder();
        sb.Append("| attack | malicious |");
        foreach (var d in defences) sb.Append(CultureInfo.InvariantCulture, $" {d} |");
        sb.AppendLine();
        sb.Append("|---|---|");
        foreach (var _ in defences) sb.Append("---|");
        sb.AppendLine();
        sb.Append("| none | 0 |");
        foreach (var b in report.Baselines) sb.Append(CultureInfo.InvariantCulture, $" {b.CleanAccuracy * 100:F1} / {b.BackdoorSuccess * 100:F1} |");
        sb.AppendLine();
        foreach (var group in report.Results.GroupBy(r => (r.Attack, r.Fraction)))
        {
            var first = group.First();
            sb.Append(CultureInfo.InvariantCulture, $"| {first.Attack} | {first.Fraction * 100:0.#}% ({first.MaliciousVehicles}) |");
            foreach (var d in defences)
            {
                var r = group.FirstOrDefault(x => x.Defence == d);
                sb.Append(r is null ? " – |" : string.Create(CultureInfo.InvariantCulture, $" {r.CleanAccuracy * 100:F1} / {r.BackdoorSuccess * 100:F1} |"));
            }
            sb.AppendLine();
        }
        return sb.ToString();
    }

    /// <summary>A chart of <paramref name="attack"/>'s backdoor success (or clean accuracy) against the malicious fraction, one line per defence.</summary>
    public static string Chart(PoisoningReport report, string attack, bool backdoor)
    {
        ArgumentNullException.ThrowIfNull(report);
        var series = report.Baselines.Select((b, i) =>
        {
            var points = new List<ChartPoint> { new(0, (backdoor ? b.BackdoorSuccess : b.CleanAccuracy) * 100) };
            points.AddRange(report.Results.Where(r => r.Attack == attack && r.Defence == b.Defence)
                .Select(r => new ChartPoint(r.Fraction * 100, (backdoor ? r.BackdoorSuccess : r.CleanAccuracy) * 100)));
            return new ChartSeries(b.Defence, points, LineChartPalette(i));
        }).ToArray();
        var chart = new LineChart
        {
            Title = $"{attack}: {(backdoor ? "backdoor success" : "clean accuracy")} by share of malicious vehicles",
            XLabel = "malicious vehicles (%)",
            YLabel = backdoor ? "backdoor success (%)" : "clean accuracy (%)",
            Series = series,
            YMin = 0,
            YMax = 100,
        };
        return SvgChartRenderer.Render(chart, idPrefix: backdoor ? "backdoor" : "clean");
    }

    private static ChartColor LineChartPalette(int i) => ChartColor.Palette[i % ChartColor.Palette.Count];
}
