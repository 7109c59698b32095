namespace FleetLearn.Reporting.Rendering;

/// <summary>Lays out a <see cref="LineChart"/> and draws it on a canvas; shared by the PNG and SVG renderers.</summary>
internal static class ChartPainter
{
    public const double LineWidth = 2.25;
    public const double MarkerRadius = 3.25;
    public const int MarkerThreshold = 40;

    private static readonly ChartColor s_background = new(255, 255, 255);
    private static readonly ChartColor s_grid = new(232, 232, 232);
    private static readonly ChartColor s_minorGrid = new(244, 244, 244);
    private static readonly ChartColor s_axis = new(80, 80, 80);
    private static readonly ChartColor s_tickText = new(64, 64, 64);
    private static readonly ChartColor s_text = new(34, 34, 34);
    private static readonly ChartColor s_legendBorder = new(204, 204, 204);
    private static readonly ChartColor s_reference = new(96, 96, 96);
    private static readonly ChartColor s_muted = new(150, 150, 150);

    private const int TickLength = 5;
    private const int Pad = 12;

    /// <summary>The computed geometry of a chart: plot rectangle and axes.</summary>
    internal sealed record Layout(RectD Plot, Axis X, Axis Y)
    {
        public PointD Map(double x, double y) => new(
            Plot.X + X.Fraction(x) * Plot.Width,
            Plot.Bottom - Y.Fraction(y) * Plot.Height);
    }

    public static Layout Paint(LineChart chart, IChartCanvas canvas, int width, int height)
    {
        ArgumentNullException.ThrowIfNull(chart);
        if (width < 100 || height < 80)
            throw new ArgumentOutOfRangeException(nameof(width), $"A chart needs at least 100 × 80 pixels, got {width} × {height}.");

        var layout = ComputeLayout(chart, width, height);
        var plot = layout.Plot;
        var tick = GlyphAtlas.Face(FontRole.Tick).Metrics;

        canvas.FillRect(new RectD(0, 0, width, height), s_background);

        // Grid first (minor under major), so data draws over it.
        foreach (var t in layout.Y.Ticks.OrderBy(t => t.Major))
        {
            var y = Snap(layout.Map(layout.X.Min, t.Value).Y);
            if (y >= plot.Y - 0.5 && y <= plot.Bottom + 0.5)
                canvas.FillRect(new RectD(plot.X, y - 0.5, plot.Width, 1), t.Major ? s_grid : s_minorGrid);
        }
        foreach (var t in layout.X.Ticks)
        {
            var x = Snap(layout.Map(t.Value, layout.Y.Min).X);
            if (x >= plot.X - 0.5 && x <= plot.Right + 0.5)
                canvas.FillRect(new RectD(x - 0.5, plot.Y, 1, plot.Height), s_grid);
        }

        var series = SeriesInfo(chart);
        var anyData = series.Any(s => s.Runs.Sum(r => r.Count) > 0);

        canvas.SetClip(plot.Inflate(MarkerRadius + 1));
        if (chart.Reference is { } reference && layout.Y.Accepts(reference.Y))
        {
            var y = layout.Map(layout.X.Min, reference.Y).Y;
            canvas.Polyline([new PointD(plot.X, y), new PointD(plot.Right, y)], reference.Color ?? s_reference, 1.5, [7, 5]);
        }
        foreach (var s in series)
        {
            foreach (var run in s.Runs)
            {
                var pts = run.Select(p => layout.Map(p.X, p.Y)).ToArray();
                if (pts.Length > 1)
                    canvas.Polyline(pts, s.Color, LineWidth);
                if (s.Markers || pts.Length == 1)
                {
                    foreach (var p in pts)
                        canvas.FillCircle(p, MarkerRadius, s.Color);
                }
            }
        }
        canvas.SetClip(null);

        // Axes: left and bottom spines with outward ticks.
        var left = Snap(plot.X);
        var bottom = Snap(plot.Bottom);
        canvas.FillRect(new RectD(left - 0.5, plot.Y, 1, plot.Height + 0.5), s_axis);
        canvas.FillRect(new RectD(left - 0.5, bottom - 0.5, plot.Width + 0.5, 1), s_axis);
        foreach (var t in layout.Y.Ticks.Where(t => t.Major))
        {
            var y = Snap(layout.Map(layout.X.Min, t.Value).Y);
            canvas.FillRect(new RectD(left - 0.5 - TickLength, y - 0.5, TickLength, 1), s_axis);
            canvas.Text(t.Label, left - TickLength - 4, y + CapHeight(tick) / 2.0, FontRole.Tick, TextAnchor.End, s_tickText);
        }
        foreach (var t in layout.X.Ticks.Where(t => t.Major))
        {
            var x = Snap(layout.Map(t.Value, layout.Y.Min).X);
            canvas.FillRect(new RectD(x - 0.5, bottom + 0.5, 1, TickLength), s_axis);
            canvas.Text(t.Label, x, bottom + TickLength + 4 + tick.Ascent, FontRole.Tick, TextAnchor.Middle, s_tickText);
        }

        if (!anyData)
            canvas.Text("No data", plot.X + plot.Width / 2, plot.Y + plot.Height / 2, FontRole.Label, TextAnchor.Middle, s_muted);

        var samples = Samples(series, layout);
        var legend = series.Count > 1 ? PlaceLegend(series, layout, samples) : (RectD?)null;
        if (chart.Reference is { Label.Length: > 0 } refLabel && layout.Y.Accepts(refLabel.Y))
            DrawReferenceLabel(canvas, refLabel, layout, legend, samples);
        if (legend is { } box)
            DrawLegend(canvas, series, box);

        var label = GlyphAtlas.Face(FontRole.Label).Metrics;
        if (chart.XLabel.Length > 0)
            canvas.Text(chart.XLabel, plot.X + plot.Width / 2, height - Pad - label.Descent, FontRole.Label, TextAnchor.Middle, s_text);
        if (chart.YLabel.Length > 0)
            canvas.Text(chart.YLabel, Pad + label.Ascent, plot.Y + plot.Height / 2, FontRole.Label, TextAnchor.Middle, s_text, vertical: true);
        if (chart.Title.Length > 0)
        {
            var title = GlyphAtlas.Face(FontRole.Title).Metrics;
            canvas.Text(chart.Title, plot.X + plot.Width / 2, Pad + title.Ascent, FontRole.Title, TextAnchor.Middle, s_text);
        }
        return layout;
    }

    internal static Layout ComputeLayout(LineChart chart, int width, int height)
    {
        var tickFace = GlyphAtlas.Face(FontRole.Tick);
        var tick = tickFace.Metrics;
        var label = GlyphAtlas.Face(FontRole.Label).Metrics;
        var title = GlyphAtlas.Face(FontRole.Title).Metrics;

        var top = Pad + (chart.Title.Length > 0 ? title.Ascent + title.Descent + 10 : 4);
        var bottom = TickLength + 4 + tick.Ascent + tick.Descent + Pad + (chart.XLabel.Length > 0 ? label.Ascent + label.Descent + 6 : 0);
        var plotHeight = Math.Max(20, height - top - bottom);

        var finite = chart.Series.SelectMany(s => s.Points)
            .Where(p => double.IsFinite(p.X) && double.IsFinite(p.Y) && (!chart.LogY || p.Y > 0))
            .ToArray();
        double xMin = double.NaN, xMax = double.NaN, yMin = double.NaN, yMax = double.NaN;
        if (finite.Length > 0)
        {
            xMin = finite.Min(p => p.X);
            xMax = finite.Max(p => p.X);
            yMin = finite.Min(p => p.Y);
            yMax = finite.Max(p => p.Y);
        }
        if (chart.Reference is { } r && double.IsFinite(r.Y) && (!chart.LogY || r.Y > 0))
        {
            yMin = double.IsNaN(yMin) ? r.Y : Math.Min(yMin, r.Y);
            yMax = double.IsNaN(yMax) ? r.Y : Math.Max(yMax, r.Y);
        }
        var yTicks = Math.Clamp(plotHeight / 70 + 1, 3, 10);
        var yAxis = chart.LogY
            ? Axis.Log10(yMin, yMax, chart.YMin, chart.YMax, yTicks)
            : Axis.Linear(yMin, yMax, chart.YMin, chart.YMax, yTicks, integerSteps: false);

        var yLabelWidth = yAxis.Ticks.Where(t => t.Major).Select(t => tickFace.Measure(t.Label)).DefaultIfEmpty(0).Max();
        var left = Pad + (chart.YLabel.Length > 0 ? label.Ascent + label.Descent + 8 : 0) + (int)Math.Ceiling(yLabelWidth) + 4 + TickLength;
        var right = Pad + 12;
        var plotWidth = Math.Max(20, width - left - right);
        var integerX = finite.Length > 0 && finite.All(p => p.X == Math.Round(p.X));
        var xAxis = Axis.Linear(xMin, xMax, chart.XMin, chart.XMax, Math.Clamp(plotWidth / 80 + 1, 3, 12), integerX);

        // The last x tick label is centred on the right edge: keep it inside the image.
        var lastLabel = xAxis.Ticks.LastOrDefault(t => t.Major).Label ?? "";
        var overflow = tickFace.Measure(lastLabel) / 2 + 4 - right;
        if (overflow > 0)
            plotWidth -= (int)Math.Ceiling(overflow);

        return new Layout(new RectD(left, top, plotWidth, plotHeight), xAxis, yAxis);
    }

    /// <summary>A series reduced to drawable runs (split at gaps) with its resolved colour.</summary>
    private sealed record DrawSeries(string Name, ChartColor Color, bool Markers, List<List<ChartPoint>> Runs);

    private static List<DrawSeries> SeriesInfo(LineChart chart)
    {
        var result = new List<DrawSeries>();
        var paletteIndex = 0;
        foreach (var s in chart.Series)
        {
            var color = s.Color ?? ChartColor.Palette[paletteIndex++ % ChartColor.Palette.Count];
            var runs = new List<List<ChartPoint>>();
            var current = new List<ChartPoint>();
            foreach (var p in s.Points ?? [])
            {
                if (double.IsFinite(p.X) && double.IsFinite(p.Y) && (!chart.LogY || p.Y > 0))
                {
                    current.Add(p);
                }
                else if (current.Count > 0)
                {
                    runs.Add(current);
                    current = [];
                }
            }
            if (current.Count > 0)
                runs.Add(current);
            var count = runs.Sum(r => r.Count);
            result.Add(new DrawSeries(s.Name ?? "", color, s.ShowMarkers ?? count <= MarkerThreshold, runs));
        }
        return result;
    }

    /// <summary>Points along every drawn line, a few pixels apart, to find free space for the legend and labels.</summary>
    private static List<PointD> Samples(List<DrawSeries> series, Layout layout)
    {
        var samples = new List<PointD>();
        foreach (var run in series.SelectMany(s => s.Runs))
        {
            for (var i = 0; i < run.Count; i++)
            {
                var p = layout.Map(run[i].X, run[i].Y);
                samples.Add(p);
                if (i + 1 < run.Count)
                {
                    var q = layout.Map(run[i + 1].X, run[i + 1].Y);
                    var n = (int)Math.Min(200, Math.Ceiling(Math.Sqrt((q.X - p.X) * (q.X - p.X) + (q.Y - p.Y) * (q.Y - p.Y)) / 4));
                    for (var k = 1; k < n; k++)
                        samples.Add(new PointD(p.X + (q.X - p.X) * k / n, p.Y + (q.Y - p.Y) * k / n));
                }
            }
        }
        return samples;
    }

    private const int LegendRow = 18;
    private const int LegendSwatch = 24;
    private const int LegendPad = 8;

    /// <summary>Puts the legend in the plot corner that hides the fewest data samples (ties: upper right first).</summary>
    private static RectD PlaceLegend(List<DrawSeries> series, Layout layout, List<PointD> samples)
    {
        var face = GlyphAtlas.Face(FontRole.Tick);
        var w = LegendPad * 2 + LegendSwatch + 6 + series.Max(s => face.Measure(s.Name));
        var h = LegendPad * 2 - 4 + LegendRow * series.Count;
        var plot = layout.Plot;
        const int inset = 10;
        RectD[] candidates =
        [
            new(plot.Right - inset - w, plot.Y + inset, w, h),
            new(plot.X + inset, plot.Y + inset, w, h),
            new(plot.Right - inset - w, plot.Bottom - inset - h, w, h),
            new(plot.X + inset, plot.Bottom - inset - h, w, h),
        ];

        var best = candidates[0];
        var bestScore = int.MaxValue;
        foreach (var c in candidates)
        {
            var inflated = c.Inflate(4);
            var score = samples.Count(inflated.Contains);
            if (score < bestScore)
                (best, bestScore) = (c, score);
        }
        return best;
    }

    private static void DrawLegend(IChartCanvas canvas, List<DrawSeries> series, RectD box)
    {
        var tick = GlyphAtlas.Face(FontRole.Tick).Metrics;
        canvas.FillRect(box, s_background);
        canvas.StrokeRect(box, s_legendBorder, 1);
        for (var i = 0; i < series.Count; i++)
        {
            var cy = box.Y + LegendPad - 2 + LegendRow * i + LegendRow / 2.0;
            var x0 = box.X + LegendPad;
            canvas.Polyline([new PointD(x0, cy), new PointD(x0 + LegendSwatch, cy)], series[i].Color, LineWidth);
            if (series[i].Markers)
                canvas.FillCircle(new PointD(x0 + LegendSwatch / 2.0, cy), MarkerRadius, series[i].Color);
            canvas.Text(series[i].Name, x0 + LegendSwatch + 6, cy + CapHeight(tick) / 2.0, FontRole.Tick, TextAnchor.Start, s_text);
        }
    }

    /// <summary>
    /// Labels the reference line just above (or below) it, at the right or left end: whichever of
    /// the four spots covers the fewest data samples and stays clear of the legend and plot edges.
    /// </summary>
    private static void DrawReferenceLabel(IChartCanvas canvas, ReferenceLine reference, Layout layout, RectD? legend, List<PointD> samples)
    {
        var face = GlyphAtlas.Face(FontRole.Tick);
        var m = face.Metrics;
        var plot = layout.Plot;
        var y = layout.Map(layout.X.Min, reference.Y).Y;
        var w = face.Measure(reference.Label);
        const int gap = 5, inset = 8;
        (double X, double Baseline, TextAnchor Anchor, RectD Box)[] spots =
        [
            (plot.Right - inset, y - gap, TextAnchor.End, new RectD(plot.Right - inset - w, y - gap - m.Ascent, w, m.Ascent + m.Descent)),
            (plot.X + inset, y - gap, TextAnchor.Start, new RectD(plot.X + inset, y - gap - m.Ascent, w, m.Ascent + m.Descent)),
            (plot.Right - inset, y + gap + m.Ascent, TextAnchor.End, new RectD(plot.Right - inset - w, y + gap, w, m.Ascent + m.Descent)),
            (plot.X + inset, y + gap + m.Ascent, TextAnchor.Start, new RectD(plot.X + inset, y + gap, w, m.Ascent + m.Descent)),
        ];
        var best = spots[0];
        var bestScore = long.MaxValue;
        foreach (var spot in spots)
        {
            var box = spot.Box.Inflate(3);
            long score = samples.Count(box.Contains);
            if (legend is { } l && l.Intersects(box))
                score += 1_000_000;
            if (spot.Box.Y < plot.Y || spot.Box.Bottom > plot.Bottom)
                score += 10_000_000;
            if (score < bestScore)
                (best, bestScore) = (spot, score);
        }
        canvas.Text(reference.Label, best.X, best.Baseline, FontRole.Tick, best.Anchor, reference.Color ?? s_reference);
    }

    /// <summary>Height of capital letters, used to centre labels vertically on a tick.</summary>
    private static int CapHeight(FontMetrics m) => (int)Math.Round(m.Size * 0.73);

    /// <summary>Moves a coordinate to the nearest pixel centre so 1-px lines stay crisp.</summary>
    private static double Snap(double v) => Math.Floor(v) + 0.5;
}
