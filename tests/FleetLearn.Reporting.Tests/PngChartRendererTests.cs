using SkiaSharp;

namespace FleetLearn.Reporting.Tests;

/// <summary>PNG charts through ScottPlot, read back with SkiaSharp and checked at the data's pixel positions.</summary>
public sealed class PngChartRendererTests
{
    private static readonly ChartColor s_blue = ChartColor.FromHex("#0072b2");
    private static readonly ChartColor s_red = ChartColor.FromHex("#d55e00");

    internal static LineChart AccuracyChart() => new()
    {
        Title = "Accuracy per round",
        XLabel = "Round",
        YLabel = "Accuracy",
        Series =
        [
            ChartSeries.FromXY("FedAvg", [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [0.2, 0.4, 0.55, 0.65, 0.72, 0.77, 0.8, 0.82, 0.84, 0.86], s_blue),
            ChartSeries.FromXY("FedProx", [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [0.1, 0.2, 0.3, 0.4, 0.5, 0.55, 0.6, 0.62, 0.64, 0.66], s_red),
        ],
        Reference = new ReferenceLine(0.85, "target 0.85"),
    };

    [Fact]
    public void Render_AccuracyChart_IsPngOfRequestedSize()
    {
        var png = PngChartRenderer.Render(AccuracyChart(), 640, 360);

        Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], png[..4]);
        using var bitmap = SKBitmap.Decode(png);
        Assert.Equal((640, 360), (bitmap.Width, bitmap.Height));
    }

    [Fact]
    public void Render_TwoSeries_PixelsAtDataPointsHaveSeriesColours()
    {
        var chart = AccuracyChart();
        using var plot = ChartRenderer.Build(chart, 640, 360);
        using var bitmap = SKBitmap.Decode(plot.GetImageBytes(640, 360, ScottPlot.ImageFormat.Png));

        foreach (var (series, colour) in new[] { (chart.Series[0], s_blue), (chart.Series[1], s_red) })
        {
            foreach (var p in series.Points)
            {
                var at = plot.GetPixel(new ScottPlot.Coordinates(p.X, p.Y));
                Assert.True(NearestDistance(bitmap, at.X, at.Y, colour) <= 2, $"{series.Name} at ({p.X}, {p.Y}) is not drawn in {colour.ToHex()}");
            }
        }
    }

    [Fact]
    public void Render_FarFromAnyLine_PixelIsBackground()
    {
        using var plot = ChartRenderer.Build(AccuracyChart(), 640, 360);
        using var bitmap = SKBitmap.Decode(plot.GetImageBytes(640, 360, ScottPlot.ImageFormat.Png));
        var at = plot.GetPixel(new ScottPlot.Coordinates(8.75, 0.33)); // well below both lines, between grid lines
        var c = bitmap.GetPixel((int)at.X, (int)at.Y);
        Assert.True(c.Red > 230 && c.Green > 230 && c.Blue > 230, $"pixel is {c}");
    }

    [Fact]
    public void Render_NaNInSeries_LeavesGapInLine()
    {
        var chart = new LineChart { Series = [ChartSeries.FromXY("s", [1, 2, 3, 4, 5], [0.2, 0.4, double.NaN, 0.6, 0.8], s_blue)], YMin = 0, YMax = 1 };
        using var plot = ChartRenderer.Build(chart, 640, 360);
        using var bitmap = SKBitmap.Decode(plot.GetImageBytes(640, 360, ScottPlot.ImageFormat.Png));

        var beforeGap = plot.GetPixel(new ScottPlot.Coordinates(1.5, 0.3));
        var inGap = plot.GetPixel(new ScottPlot.Coordinates(3, 0.5));
        Assert.True(NearestDistance(bitmap, beforeGap.X, beforeGap.Y, s_blue) <= 2);
        Assert.True(NearestDistance(bitmap, inGap.X, inGap.Y, s_blue) > 5, "the line was drawn across the NaN");
    }

    [Fact]
    public void Render_DegenerateSeries_ProducesPngWithoutThrowing()
    {
        LineChart[] charts =
        [
            new(),
            new() { Title = "empty series", Series = [new ChartSeries("none", [])] },
            new() { Series = [ChartSeries.FromXY("all NaN", [double.NaN, 1], [double.NaN, double.PositiveInfinity])] },
            new() { Series = [ChartSeries.FromXY("one point", [3], [0.5])] },
            new() { Series = [ChartSeries.FromXY("flat", [1, 2, 3], [0, 0, 0])] },
            new() { LogY = true, Series = [ChartSeries.FromXY("log with zeros", [1, 2, 3], [0, -1, 0])] },
            new() { LogY = true, Series = [ChartSeries.FromXY("log", [1, 2, 3], [1e-6, 1e-3, 1e4])] },
            new() { Series = [ChartSeries.FromXY("huge", [0, 1], [-1e300, 1e300])] },
            new() { XMin = 5, XMax = 1, YMin = 1, YMax = 1, Series = [ChartSeries.FromXY("bad limits", [1, 2], [1, 2])] },
            new() { Reference = new ReferenceLine(double.NaN, "nan ref") },
        ];

        foreach (var chart in charts)
        {
            using var bitmap = SKBitmap.Decode(PngChartRenderer.Render(chart, 320, 200));
            Assert.Equal((320, 200), (bitmap.Width, bitmap.Height));
        }
    }

    [Fact]
    public void Render_WithTitle_DrawsDarkTextPixelsAboveThePlot()
    {
        using var withTitle = SKBitmap.Decode(PngChartRenderer.Render(AccuracyChart(), 600, 400));
        using var withoutTitle = SKBitmap.Decode(PngChartRenderer.Render(new LineChart { Series = AccuracyChart().Series }, 600, 400));

        Assert.True(DarkPixels(withTitle, 0, 0, 600, 30) > 60, "the title did not render");
        Assert.Equal(0, DarkPixels(withoutTitle, 0, 0, 600, 8));
    }

    [Fact]
    public void Render_YAxisLabel_DrawsVerticalTextAtLeftEdge()
    {
        using var png = SKBitmap.Decode(PngChartRenderer.Render(AccuracyChart(), 600, 400));
        using var noLabel = SKBitmap.Decode(PngChartRenderer.Render(new LineChart { Series = AccuracyChart().Series }, 600, 400));

        Assert.True(DarkPixels(png, 0, 100, 24, 300) > 40, "the y label did not render");
        Assert.Equal(0, DarkPixels(noLabel, 0, 100, 8, 300));
    }

    [Fact]
    public void Render_SameChartTwice_GivesIdenticalBytes()
    {
        Assert.Equal(PngChartRenderer.Render(AccuracyChart()), PngChartRenderer.Render(AccuracyChart()));
    }

    [Fact]
    public void Render_TooSmall_Throws()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => PngChartRenderer.Render(AccuracyChart(), 50, 50));
    }

    [Fact]
    public void GrayImage_Pixels_ScaledBlocksOfGrey()
    {
        using var bitmap = SKBitmap.Decode(GrayImage.ToPng([0f, 1f, 0.5f, float.NaN], 2, scale: 3));
        Assert.Equal((6, 6), (bitmap.Width, bitmap.Height));
        Assert.Equal(0, bitmap.GetPixel(1, 1).Red);
        Assert.Equal(255, bitmap.GetPixel(4, 1).Red);
        Assert.Equal(128, bitmap.GetPixel(1, 4).Red);
        Assert.Equal(128, bitmap.GetPixel(4, 4).Red); // NaN
    }

    /// <summary>Distance in pixels from (px, py) to the nearest pixel within colour tolerance of c (999 if none within 10 px).</summary>
    private static double NearestDistance(SKBitmap png, float px, float py, ChartColor c, int tolerance = 12)
    {
        var best = 999.0;
        for (var dy = -10; dy <= 10; dy++)
        {
            for (var dx = -10; dx <= 10; dx++)
            {
                int x = (int)px + dx, y = (int)py + dy;
                if (x < 0 || y < 0 || x >= png.Width || y >= png.Height)
                    continue;
                var p = png.GetPixel(x, y);
                if (Math.Abs(p.Red - c.R) <= tolerance && Math.Abs(p.Green - c.G) <= tolerance && Math.Abs(p.Blue - c.B) <= tolerance)
                    best = Math.Min(best, Math.Sqrt(dx * dx + dy * dy));
            }
        }
        return best;
    }

    private static int DarkPixels(SKBitmap png, int x0, int y0, int x1, int y1)
    {
        var n = 0;
        for (var y = y0; y < y1; y++)
        {
            for (var x = x0; x < x1; x++)
            {
                var p = png.GetPixel(x, y);
                if (p.Red + p.Green + p.Blue < 3 * 120)
                    n++;
            }
        }
        return n;
    }
}
