using FleetLearn.Reporting.Rendering;

namespace FleetLearn.Reporting;

/// <summary>Renders a <see cref="LineChart"/> to PNG bytes with no native libraries and no system fonts.</summary>
public static class PngChartRenderer
{
    /// <summary>Renders the chart as an RGB PNG of the given size in pixels (at least 100 × 80).</summary>
    public static byte[] Render(LineChart chart, int width = 900, int height = 500)
    {
        ArgumentNullException.ThrowIfNull(chart);
        var canvas = new RasterCanvas(width, height);
        ChartPainter.Paint(chart, canvas, width, height);
        return PngEncoder.Encode(width, height, canvas.ToRgb(), chart.Title);
    }
}
