using FleetLearn.Reporting.Rendering;

namespace FleetLearn.Reporting.Tests;

public sealed class PngChartRendererTests
{
    private static readonly ChartColor s_blue = ChartColor.FromHex("#0072b2");
    private static readonly ChartColor s_red = ChartColor.FromHex("#d55e00");

    private static LineChart AccuracyChart() => new()
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
    public void Render_AccuracyChart_IsWellFormedPngOfRequestedSize()
    {
        var png = PngChartRenderer.Render(AccuracyChart(), 640, 360);

        var reader = PngReader.Read(png); // checks signature and every chunk's CRC
        Assert.Equal(640, reader.Width);
        Assert.Equal(360, reader.Height);
        Assert.Equal(8, reader.BitDepth);
        Assert.Equal(2, reader.ColorType);
        Assert.Equal(360 * (1 + 640 * 3), reader.InflatedLength);
        Assert.Contains("IDAT", reader.ChunkTypes);
        Assert.Equal("Accuracy per round", reader.Text["Title"]);
    }

    [Fact]
    public void Crc32_CheckValue_MatchesIso3309()
    {
        // The standard CRC-32 check value: CRC of ASCII "123456789".
        Assert.Equal(0xCBF43926u, PngEncoder.Crc32("123456789"u8));
    }

    [Fact]
    public void Encode_RandomPixels_DecodeToSamePixels()
    {
        var rng = new Random(7);
        var rgb = new byte[37 * 23 * 3];
        rng.NextBytes(rgb);

        var reader = PngReader.Read(PngEncoder.Encode(37, 23, rgb));

        Assert.Equal(rgb, reader.Rgb);
    }

    [Fact]
    public void Render_TwoSeries_PixelsAtDataPointsHaveSeriesColours()
    {
        var chart = AccuracyChart();
        var png = PngReader.Read(PngChartRenderer.Render(chart, 900, 500));
        var layout = ChartPainter.ComputeLayout(chart, 900, 500);

        // Round 4 is clear of the legend, the reference line and the other series.
        var blue = layout.Map(4, 0.65);
        var red = layout.Map(4, 0.4);

        Assert.True(NearestDistance(png, blue, s_blue) <= 3, $"no FedAvg-coloured pixel near {blue}");
        Assert.True(NearestDistance(png, red, s_red) <= 3, $"no FedProx-coloured pixel near {red}");
        Assert.True(NearestDistance(png, blue, s_red) > 30, "FedProx colour where only FedAvg is drawn");
    }

    [Fact]
    public void Render_FarFromAnyLine_PixelIsBackground()
    {
        var chart = AccuracyChart();
        var png = PngReader.Read(PngChartRenderer.Render(chart, 900, 500));
        var layout = ChartPainter.ComputeLayout(chart, 900, 500);

        // Lower right of the plot: both series are far above it.
        var p = layout.Map(9.5, layout.Y.Min + 0.03);

        var (r, g, b) = png.Pixel((int)p.X, (int)p.Y);
        Assert.True(r > 230 && g > 230 && b > 230, $"expected background, got ({r},{g},{b})");
    }

    [Fact]
    public void Render_NaNInSeries_LeavesGapInLine()
    {
        var chart = new LineChart
        {
            Series = [ChartSeries.FromXY("s", [1, 2, 3, 4, 5], [0.5, 0.5, double.NaN, 0.5, 0.5], s_blue)],
            YMin = 0,
            YMax = 1,
        };
        var png = PngReader.Read(PngChartRenderer.Render(chart, 600, 400));
        var layout = ChartPainter.ComputeLayout(chart, 600, 400);

        var beforeGap = layout.Map(1.5, 0.5);
        var inGap = layout.Map(3, 0.5);

        Assert.True(NearestDistance(png, beforeGap, s_blue) <= 2);
        Assert.True(NearestDistance(png, inGap, s_blue) > 5, "the line was drawn across the NaN");
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
            var reader = PngReader.Read(PngChartRenderer.Render(chart, 320, 200));
            Assert.Equal(320, reader.Width);
            Assert.Equal(200 * (1 + 320 * 3), reader.InflatedLength);
        }
    }

    [Fact]
    public void Render_WithTitle_DrawsDarkTextPixelsAboveThePlot()
    {
        var withTitle = PngReader.Read(PngChartRenderer.Render(AccuracyChart(), 600, 400));
        var withoutTitle = PngReader.Read(PngChartRenderer.Render(new LineChart { Series = AccuracyChart().Series }, 600, 400));

        Assert.True(DarkPixels(withTitle, 0, 0, 600, 28) > 60, "the title did not render");
        Assert.Equal(0, DarkPixels(withoutTitle, 0, 0, 600, 12));
    }

    [Fact]
    public void Render_YAxisLabel_DrawsVerticalTextAtLeftEdge()
    {
        var png = PngReader.Read(PngChartRenderer.Render(AccuracyChart(), 600, 400));
        var noLabel = PngReader.Read(PngChartRenderer.Render(new LineChart { Series = AccuracyChart().Series }, 600, 400));

        Assert.True(DarkPixels(png, 0, 100, 30, 300) > 40, "the y label did not render");
        Assert.Equal(0, DarkPixels(noLabel, 0, 100, 12, 300));
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

    /// <summary>Distance in pixels from p to the nearest pixel within colour tolerance of c (999 if none within 10 px).</summary>
    private static double NearestDistance(PngReader png, PointD p, ChartColor c, int tolerance = 12)
    {
        var best = 999.0;
        for (var dy = -10; dy <= 10; dy++)
        {
            for (var dx = -10; dx <= 10; dx++)
            {
                int x = (int)p.X + dx, y = (int)p.Y + dy;
                if (x < 0 || y < 0 || x >= png.Width || y >= png.Height)
                    continue;
                var (r, g, b) = png.Pixel(x, y);
                if (Math.Abs(r - c.R) <= tolerance && Math.Abs(g - c.G) <= tolerance && Math.Abs(b - c.B) <= tolerance)
                    best = Math.Min(best, Math.Sqrt(dx * dx + dy * dy));
            }
        }
        return best;
    }

    private static int DarkPixels(PngReader png, int x0, int y0, int x1, int y1)
    {
        var n = 0;
        for (var y = y0; y < y1; y++)
        {
            for (var x = x0; x < x1; x++)
            {
                var (r, g, b) = png.Pixel(x, y);
                if (r + g + b < 3 * 120)
                    n++;
            }
        }
        return n;
    }
}
