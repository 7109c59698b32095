using FleetLearn.Reporting.Rendering;

namespace FleetLearn.Reporting;

/// <summary>Renders a <see cref="LineChart"/> as a standalone SVG element (same layout as the PNG), for inlining in HTML.</summary>
public static class SvgChartRenderer
{
    /// <summary>Renders the chart as an &lt;svg&gt; element; <paramref name="idPrefix"/> keeps ids unique when several charts share a page.</summary>
    public static string Render(LineChart chart, int width = 900, int height = 500, string idPrefix = "chart")
    {
        ArgumentNullException.ThrowIfNull(chart);
        ArgumentException.ThrowIfNullOrWhiteSpace(idPrefix);
        if (!idPrefix.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_') || !char.IsAsciiLetter(idPrefix[0]))
            throw new ArgumentException("The id prefix must start with a letter and hold only ASCII letters, digits, '-' and '_'.", nameof(idPrefix));
        var canvas = new SvgCanvas(idPrefix);
        ChartPainter.Paint(chart, canvas, width, height);
        return canvas.ToSvg(width, height, chart.Title);
    }
}
