using System.Xml.Linq;

namespace FleetLearn.Reporting.Tests;

public sealed class SvgChartRendererTests
{
    private static readonly XNamespace s_svg = "http://www.w3.org/2000/svg";

    [Fact]
    public void Render_TwoSeries_IsWellFormedSvgWithALinePerSeriesColour()
    {
        var chart = new LineChart
        {
            Title = "Loss",
            Series =
            [
                ChartSeries.FromXY("a", [1, 2, 3], [3, 2, 1], ChartColor.FromHex("#112233")),
                ChartSeries.FromXY("b", [1, 2, 3], [1, 2, 3], ChartColor.FromHex("#445566")),
            ],
        };

        var svg = XDocument.Parse(SvgChartRenderer.Render(chart, 640, 360));

        Assert.Equal(s_svg + "svg", svg.Root!.Name);
        Assert.Equal("640", svg.Root.Attribute("width")!.Value);
        var strokes = svg.Descendants(s_svg + "polyline").Select(p => p.Attribute("stroke")!.Value).ToList();
        Assert.Contains("#112233", strokes);
        Assert.Contains("#445566", strokes);
        Assert.Contains(svg.Descendants(s_svg + "text"), t => t.Value == "Loss");
    }

    [Fact]
    public void Render_UserText_IsEscaped()
    {
        var chart = new LineChart { Title = "<script>alert('x')</script> & co", XLabel = "a\"b" };

        var text = SvgChartRenderer.Render(chart);
        var svg = XDocument.Parse(text);

        Assert.DoesNotContain("<script>", text);
        Assert.Contains(svg.Descendants(s_svg + "text"), t => t.Value == "<script>alert('x')</script> & co");
    }

    [Fact]
    public void Render_NaNPoints_SplitLineAndWriteNoNaN()
    {
        var chart = new LineChart { Series = [ChartSeries.FromXY("s", [1, 2, 3, 4, 5], [1, 2, double.NaN, 4, 5])] };

        var text = SvgChartRenderer.Render(chart);
        var svg = XDocument.Parse(text);

        Assert.DoesNotContain("NaN", text);
        Assert.DoesNotContain("Infinity", text);
        Assert.Equal(2, svg.Descendants(s_svg + "polyline").Count(p => p.Attribute("stroke")!.Value == ChartColor.Palette[0].ToHex()));
    }

    [Fact]
    public void Render_BadIdPrefix_Throws()
    {
        Assert.Throws<ArgumentException>(() => SvgChartRenderer.Render(new LineChart(), idPrefix: "a\" onload=\"x"));
    }
}
