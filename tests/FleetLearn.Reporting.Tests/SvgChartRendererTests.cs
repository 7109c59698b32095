using System.Xml.Linq;

namespace FleetLearn.Reporting.Tests;

/// <summary>SVG charts through ScottPlot: well-formed, escaped, gaps at NaN, ids scoped per chart.</summary>
public sealed class SvgChartRendererTests
{
    private static readonly XNamespace s_svg = "http://www.w3.org/2000/svg";

    [Fact]
    public void Render_TwoSeries_IsWellFormedSvgWithTheSeriesColoursAndTitle()
    {
        var chart = new LineChart
        {
            Title = "Loss",
            Series =
            [
                ChartSeries.FromXY("a", [1, 2, 3], [3, 2, 1], ChartColor.FromHex("#1a2b3c")),
                ChartSeries.FromXY("b", [1, 2, 3], [1, 2, 3], ChartColor.FromHex("#4d5e6f")),
            ],
        };

        string text = SvgChartRenderer.Render(chart, 640, 360);
        var svg = XDocument.Parse(text);

        Assert.Equal(s_svg + "svg", svg.Root!.Name);
        Assert.Equal("640", svg.Root.Attribute("width")!.Value);
        Assert.Contains("#1a2b3c", text, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("#4d5e6f", text, StringComparison.OrdinalIgnoreCase);
        Assert.Contains(svg.Descendants(s_svg + "text"), t => t.Value.Contains("Loss", StringComparison.Ordinal));
    }

    [Fact]
    public void Render_UserText_IsEscaped()
    {
        var chart = new LineChart { Title = "<script>alert('x')</script> & co", XLabel = "a\"b", Series = [ChartSeries.FromXY("s", [1, 2], [1, 2])] };

        var text = SvgChartRenderer.Render(chart);
        var svg = XDocument.Parse(text);

        Assert.DoesNotContain("<script>", text, StringComparison.Ordinal);
        Assert.Contains(svg.Descendants(s_svg + "text"), t => t.Value.Contains("<script>alert('x')</script> & co", StringComparison.Ordinal));
    }

    [Fact]
    public void Render_NaNPoints_WriteNoNaN()
    {
        var chart = new LineChart { Series = [ChartSeries.FromXY("s", [1, 2, 3, 4, 5], [1, 2, double.NaN, 4, 5])] };

        var text = SvgChartRenderer.Render(chart);

        XDocument.Parse(text);
        Assert.DoesNotContain("NaN", text, StringComparison.Ordinal);
        Assert.DoesNotContain("Infinity", text, StringComparison.Ordinal);
    }

    [Fact]
    public void Render_IdsAndReferences_CarryThePrefix()
    {
        var text = SvgChartRenderer.Render(PngChartRendererTests.AccuracyChart(), idPrefix: "c7");
        var svg = XDocument.Parse(text);
        var ids = svg.Descendants().Select(e => e.Attribute("id")?.Value).OfType<string>().ToList();
        Assert.All(ids, id => Assert.StartsWith("c7-", id, StringComparison.Ordinal));
        Assert.DoesNotMatch(@"url\(#(?!c7-)", text);
    }

    [Fact]
    public void Render_BadIdPrefix_Throws()
    {
        Assert.Throws<ArgumentException>(() => SvgChartRenderer.Render(new LineChart(), idPrefix: "a\" onload=\"x"));
    }
}
