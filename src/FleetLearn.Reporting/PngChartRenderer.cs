namespace FleetLearn.Reporting;

/// <summary>Renders a <see cref="LineChart"/> to PNG bytes through ScottPlot.</summary>
public static class PngChartRenderer
{
    /// <summary>Renders the chart as a PNG of the given size in pixels (at least 100 × 80).</summary>
    public static byte[] Render(LineChart chart, int width = 900, int height = 500)
    {
        using var plot = ChartRenderer.Build(chart, width, height);
        return plot.GetImageBytes(width, height, ScottPlot.ImageFormat.Png);
    }
}
