using System.Text.RegularExpressions;

namespace FleetLearn.Reporting.Tests;

public sealed partial class HtmlReportTests
{
    private static LineChart Chart() => new()
    {
        Title = "Accuracy",
        Series = [ChartSeries.FromXY("FedAvg", [1, 2, 3], [0.5, 0.7, 0.8])],
        Reference = new ReferenceLine(0.85, "target"),
    };

    private static HtmlReport FullReport() => new HtmlReport("Run 42")
        .AddSummary("Rounds", 3)
        .AddSummary("Final accuracy", 0.8)
        .AddSection("Accuracy")
        .AddText("First paragraph.\n\nSecond paragraph.")
        .AddChart(Chart())
        .AddSection("Traffic")
        .AddPng(PngChartRenderer.Render(Chart(), 300, 200), "accuracy chart")
        .AddTable(["round", "bytes"], [[1, 1000L], [2, 2000L]]);

    [Fact]
    public void ToHtml_FullReport_IsHtml5WithNoExternalResources()
    {
        var html = FullReport().ToHtml();

        Assert.StartsWith("<!DOCTYPE html>\n<html lang=\"en\">", html);
        Assert.Contains("<meta charset=\"utf-8\">", html);
        Assert.Empty(ExternalReference().Matches(html));
        Assert.DoesNotContain("<link", html);
        Assert.DoesNotContain("<script", html);
        Assert.DoesNotContain("@import", html);
        Assert.DoesNotContain("url(http", html);
        Assert.Contains("default-src 'none'", html);
    }

    [Fact]
    public void ToHtml_FullReport_HasBalancedBlocksAndAllParts()
    {
        var html = FullReport().ToHtml();

        foreach (var tag in new[] { "section", "table", "figure", "svg", "p", "tr" })
            Assert.Equal(Regex.Count(html, $"<{tag}[ >]"), Regex.Count(html, $"</{tag}>"));
        Assert.Equal(2, Regex.Count(html, "<section>"));
        Assert.Equal(2, Regex.Count(html, "<p>"));
        Assert.Contains("<th scope=\"row\">Final accuracy</th><td>0.8</td>", html);
        Assert.Contains("<td class=\"num\">2000</td>", html);
        Assert.Contains("<svg ", html);
    }

    [Fact]
    public void ToHtml_UserTextWithMarkup_IsEscapedEverywhere()
    {
        const string evil = "<script>alert(\"x\")</script>&";
        var html = new HtmlReport(evil)
            .AddSummary(evil, evil)
            .AddSection(evil)
            .AddText(evil)
            .AddTable([evil], [[evil]], caption: evil)
            .AddChart(new LineChart { Title = evil })
            .AddPng(PngChartRenderer.Render(Chart(), 120, 100), evil)
            .ToHtml();

        Assert.DoesNotContain("<script", html);
        Assert.DoesNotContain("&\"", html);
        Assert.Contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;", html);
    }

    [Fact]
    public void AddPng_Bytes_EmbeddedAsDecodableDataUri()
    {
        var png = PngChartRenderer.Render(Chart(), 200, 120);

        var html = new HtmlReport("r").AddPng(png, "chart").ToHtml();
        var match = Regex.Match(html, "src=\"data:image/png;base64,([A-Za-z0-9+/=]+)\"");

        Assert.True(match.Success);
        Assert.Equal(png, Convert.FromBase64String(match.Groups[1].Value));
    }

    [Fact]
    public void AddTable_NumericAndTextColumns_AlignsNumbersRight()
    {
        var html = new HtmlReport("r").AddTable(["round", "note"], [[1, "a"], [2, null]]).ToHtml();

        Assert.Contains("<th scope=\"col\" class=\"num\">round</th><th scope=\"col\">note</th>", html);
        Assert.Contains("<td class=\"num\">1</td><td>a</td>", html);
    }

    [Fact]
    public void AddPng_NotAPng_Throws()
    {
        Assert.Throws<ArgumentException>(() => new HtmlReport("r").AddPng([1, 2, 3, 4, 5, 6, 7, 8, 9], "x"));
    }

    [Fact]
    public void AddChart_TwoCharts_GetDistinctIds()
    {
        var html = new HtmlReport("r").AddChart(Chart()).AddChart(Chart()).ToHtml();

        var ids = Regex.Matches(html, " id=\"([^\"]+)\"").Select(m => m.Groups[1].Value).ToList();
        Assert.Equal(ids.Count, ids.Distinct().Count());
        Assert.Equal(2, Regex.Matches(html, "<svg").Count);
    }

    [GeneratedRegex("""(?:src|href)\s*=\s*["']?\s*(?:https?:|//)""", RegexOptions.IgnoreCase)]
    private static partial Regex ExternalReference();
}
