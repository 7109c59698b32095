using System.Text.RegularExpressions;

namespace FleetLearn.Reporting;

/// <summary>Renders a <see cref="LineChart"/> as a standalone SVG element through ScottPlot (same layout as the PNG), for inlining in HTML.</summary>
public static partial class SvgChartRenderer
{
    /// <summary>Renders the chart as an &lt;svg&gt; element; <paramref name="idPrefix"/> keeps ids unique when several charts share a page.</summary>
    public static string Render(LineChart chart, int width = 900, int height = 500, string idPrefix = "chart")
    {
        ArgumentNullException.ThrowIfNull(chart);
        ArgumentException.ThrowIfNullOrWhiteSpace(idPrefix);
        if (!idPrefix.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_') || !char.IsAsciiLetter(idPrefix[0]))
            throw new ArgumentException("The id prefix must start with a letter and hold only ASCII letters, digits, '-' and '_'.", nameof(idPrefix));
        using var plot = ChartRenderer.Build(chart, width, height);
        string svg = plot.GetSvgXml(width, height);
        // Drop the XML declaration (not allowed inside HTML) and scope every id (clip paths) to this chart.
        svg = XmlDeclaration().Replace(svg, "");
        svg = IdAttribute().Replace(svg, m => $"id=\"{idPrefix}-{m.Groups[1].Value}\"");
        svg = IdReference().Replace(svg, m => $"url(#{idPrefix}-{m.Groups[1].Value})");
        return svg.Trim();
    }

    [GeneratedRegex(@"<\?xml[^>]*\?>")]
    private static partial Regex XmlDeclaration();

    [GeneratedRegex(@"\bid=""([^""]+)""")]
    private static partial Regex IdAttribute();

    [GeneratedRegex(@"url\(#([^)]+)\)")]
    private static partial Regex IdReference();
}
