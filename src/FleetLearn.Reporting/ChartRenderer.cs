using ScottPlot;
using ScottPlot.Plottables;

namespace FleetLearn.Reporting;

/// <summary>Turns a <see cref="LineChart"/> into a ScottPlot <see cref="Plot"/>: the one place the chart style lives.</summary>
internal static class ChartRenderer
{
    /// <summary>Smallest size that leaves room for the title, axis labels and a plot area.</summary>
    public const int MinWidth = 100, MinHeight = 80;

    private const string FontName = "DejaVu Sans";
    private static readonly Lock FontLock = new();
    private static bool _fontsLoaded;

    /// <summary>Builds the plot (caller disposes it).</summary>
    public static Plot Build(LineChart chart, int width, int height)
    {
        ArgumentNullException.ThrowIfNull(chart);
        if (width < MinWidth || height < MinHeight)
            throw new ArgumentOutOfRangeException(nameof(width), $"A chart needs at least {MinWidth} × {MinHeight} pixels, got {width} × {height}.");
        EnsureFonts();
        var plot = new Plot();
        plot.Font.Set(FontName);
        plot.Title(chart.Title);
        plot.XLabel(chart.XLabel);
        plot.YLabel(chart.YLabel);
        plot.Axes.Title.Label.FontSize = 16;
        plot.Axes.Bottom.Label.FontSize = 13;
        plot.Axes.Left.Label.FontSize = 13;
        plot.Grid.MajorLineColor = Colors.Black.WithAlpha(0.08);

        double Y(double y) => chart.LogY ? (y > 0 ? Math.Log10(y) : double.NaN) : y;
        int colour = 0;
        bool any = false;
        foreach (var series in chart.Series)
        {
            var c = series.Color ?? ChartColor.Palette[colour++ % ChartColor.Palette.Count];
            bool markers = series.ShowMarkers ?? series.Points.Count <= 40;
            // A non-finite point breaks the line: each finite run is its own scatter, the legend entry on the first.
            bool labelled = false;
            foreach (var run in Runs(series.Points.Select(p => new ChartPoint(p.X, Y(p.Y)))))
            {
                var scatter = plot.Add.Scatter(run.Select(p => p.X).ToArray(), run.Select(p => p.Y).ToArray());
                scatter.Color = new Color(c.R, c.G, c.B);
                scatter.LineWidth = 2;
                scatter.MarkerSize = markers || run.Count == 1 ? 6 : 0;
                if (!labelled && chart.Series.Count > 1) scatter.LegendText = series.Name;
                labelled = true;
                any = true;
            }
        }
        HorizontalLine? referenceLine = null;
        if (chart.Reference is { } reference && double.IsFinite(Y(reference.Y)))
        {
            referenceLine = plot.Add.HorizontalLine(Y(reference.Y));
            var c = reference.Color ?? new ChartColor(0x44, 0x44, 0x44);
            referenceLine.Color = new Color(c.R, c.G, c.B);
            referenceLine.LineWidth = 1.5f;
            referenceLine.LinePattern = LinePattern.Dashed;
        }
        if (chart.LogY)
        {
            plot.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic
            {
                MinorTickGenerator = new ScottPlot.TickGenerators.LogMinorTickGenerator(),
                IntegerTicksOnly = true,
                LabelFormatter = y => Math.Abs(y) <= 4
                    ? Math.Pow(10, y).ToString("0.####", System.Globalization.CultureInfo.InvariantCulture)
                    : "1e" + y.ToString("0", System.Globalization.CultureInfo.InvariantCulture),
            };
        }
        if (!any) plot.Add.Annotation("no data", Alignment.MiddleCenter);
        if (chart.Series.Count > 1) plot.ShowLegend(Alignment.LowerRight);
        plot.Axes.AutoScale();
        var limits = plot.Axes.GetLimits();
        double yMin = chart.YMin is { } lo ? Y(lo) : limits.Bottom, yMax = chart.YMax is { } hi ? Y(hi) : limits.Top;
        var finite = chart.Series.SelectMany(s => s.Points).Where(p => double.IsFinite(p.X) && double.IsFinite(Y(p.Y))).ToArray();
        if (chart.YMin is not null && chart.YMax is null && finite.Length > 0)
        {
            // A fixed floor: leave headroom above the highest point, as autoscaling does.
            double top = finite.Max(p => Y(p.Y));
            yMax = top + 0.06 * Math.Max(top - yMin, Math.Abs(top) * 1e-9);
        }
        if (finite.Length > 0 && finite.All(p => p.X == Math.Round(p.X)))
        {
            // Rounds and model versions: whole-number ticks only.
            plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { IntegerTicksOnly = true };
        }
        if (chart.Reference is { } r && double.IsFinite(Y(r.Y)))
        {
            // The reference line is always inside the y range, with a margin so that its label shows.
            double pad = 0.05 * Math.Max(yMax - yMin, 1e-9);
            yMin = Math.Min(yMin, Y(r.Y) - pad);
            yMax = Math.Max(yMax, Y(r.Y) + pad);
        }
        if (!(yMax > yMin)) yMax = yMin + 1;
        plot.Axes.SetLimitsY(yMin, yMax);
        double xMin = chart.XMin ?? limits.Left, xMax = chart.XMax ?? limits.Right;
        if (!(xMax > xMin)) xMax = xMin + 1;
        plot.Axes.SetLimitsX(xMin, xMax);
        if (referenceLine is not null && chart.Reference!.Label.Length > 0)
        {
            // The label sits just above the line at its right end, in the line's colour.
            var label = plot.Add.Text(chart.Reference.Label, xMax, referenceLine.Y);
            label.Alignment = Alignment.LowerRight;
            label.LabelFontColor = referenceLine.Color;
            label.LabelFontSize = 12;
            label.OffsetX = -6;
            label.OffsetY = -2;
        }
        return plot;
    }

    /// <summary>The finite runs of <paramref name="points"/>, in order.</summary>
    internal static IEnumerable<List<ChartPoint>> Runs(IEnumerable<ChartPoint> points)
    {
        var run = new List<ChartPoint>();
        foreach (var p in points)
        {
            if (double.IsFinite(p.X) && double.IsFinite(p.Y))
            {
                run.Add(p);
                continue;
            }
            if (run.Count > 0) yield return run;
            run = [];
        }
        if (run.Count > 0) yield return run;
    }

    /// <summary>
    /// Registers DejaVu Sans from the system's font folder with ScottPlot: Skia's dependency-free Linux build has no
    /// fontconfig to find fonts by name (Debian: fonts-dejavu-core; scripts/install-deps.sh installs it).
    /// </summary>
    private static void EnsureFonts()
    {
        lock (FontLock)
        {
            if (_fontsLoaded) return;
            string[] folders = ["/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/dejavu", "/usr/local/share/fonts", "/Library/Fonts", @"C:\Windows\Fonts"];
            var regular = folders.Select(f => Path.Combine(f, "DejaVuSans.ttf")).FirstOrDefault(File.Exists);
            var bold = folders.Select(f => Path.Combine(f, "DejaVuSans-Bold.ttf")).FirstOrDefault(File.Exists);
            if (regular is not null) Fonts.AddFontFile(FontName, regular, bold: false, italic: false);
            if (bold is not null) Fonts.AddFontFile(FontName, bold, bold: true, italic: false);
            _fontsLoaded = true;
        }
    }
}
