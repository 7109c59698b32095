namespace FleetLearn.Reporting;

/// <summary>An opaque sRGB colour.</summary>
public readonly record struct ChartColor(byte R, byte G, byte B)
{
    /// <summary>The colour as CSS/SVG hex, e.g. <c>#1f77b4</c>.</summary>
    public string ToHex() => $"#{R:x2}{G:x2}{B:x2}";

    /// <summary>Parses <c>#rrggbb</c>.</summary>
    public static ChartColor FromHex(string hex)
    {
        ArgumentNullException.ThrowIfNull(hex);
        var s = hex.StartsWith('#') ? hex[1..] : hex;
        if (s.Length != 6)
            throw new FormatException($"Expected #rrggbb, got '{hex}'.");
        var v = Convert.ToInt32(s, 16);
        return new ChartColor((byte)(v >> 16), (byte)(v >> 8), (byte)v);
    }

    /// <summary>
    /// Default series colours: the Okabe–Ito palette (distinguishable with the common colour-vision
    /// deficiencies), darkest/most saturated first.
    /// </summary>
    public static IReadOnlyList<ChartColor> Palette { get; } =
    [
        FromHex("#0072b2"), // blue
        FromHex("#d55e00"), // vermillion
        FromHex("#009e73"), // bluish green
        FromHex("#cc79a7"), // reddish purple
        FromHex("#e69f00"), // orange
        FromHex("#56b4e9"), // sky blue
        FromHex("#8c6d1f"), // brown (stands in for Okabe–Ito yellow, unreadable on white)
        FromHex("#000000"), // black
    ];
}

/// <summary>One (x, y) sample of a series; NaN or infinite coordinates leave a gap in the line.</summary>
public readonly record struct ChartPoint(double X, double Y);

/// <summary>A named line of (x, y) points.</summary>
/// <param name="Name">Legend text.</param>
/// <param name="Points">Samples in drawing order; non-finite ones (and y ≤ 0 on a log axis) break the line.</param>
/// <param name="Color">Line colour; null takes the next colour of <see cref="ChartColor.Palette"/>.</param>
/// <param name="ShowMarkers">Draw a dot at every point; null draws them when the series has at most 40 points.</param>
public sealed record ChartSeries(string Name, IReadOnlyList<ChartPoint> Points, ChartColor? Color = null, bool? ShowMarkers = null)
{
    /// <summary>Builds a series from parallel x and y sequences.</summary>
    public static ChartSeries FromXY(string name, IEnumerable<double> xs, IEnumerable<double> ys, ChartColor? color = null)
    {
        ArgumentNullException.ThrowIfNull(xs);
        ArgumentNullException.ThrowIfNull(ys);
        var points = xs.Zip(ys, (x, y) => new ChartPoint(x, y)).ToArray();
        return new ChartSeries(name, points, color);
    }
}

/// <summary>A horizontal reference line, e.g. a target accuracy, drawn dashed and labelled.</summary>
/// <param name="Y">The line's y value.</param>
/// <param name="Label">Text drawn above the line at its right end; empty for none.</param>
/// <param name="Color">Line and label colour; null for dark grey.</param>
public sealed record ReferenceLine(double Y, string Label = "", ChartColor? Color = null);

/// <summary>A 2-D line chart: title, axis labels, one or more series, optional log y axis and reference line.</summary>
public sealed class LineChart
{
    /// <summary>Title drawn above the plot.</summary>
    public string Title { get; init; } = "";

    /// <summary>Label under the x axis.</summary>
    public string XLabel { get; init; } = "";

    /// <summary>Label beside the y axis (drawn rotated).</summary>
    public string YLabel { get; init; } = "";

    /// <summary>The series, drawn in order (later ones on top).</summary>
    public IReadOnlyList<ChartSeries> Series { get; init; } = [];

    /// <summary>Logarithmic (base 10) y axis; points with y ≤ 0 are left out.</summary>
    public bool LogY { get; init; }

    /// <summary>Optional horizontal reference line; always kept inside the y range.</summary>
    public ReferenceLine? Reference { get; init; }

    /// <summary>Fixed lower x limit; null fits the data.</summary>
    public double? XMin { get; init; }

    /// <summary>Fixed upper x limit; null fits the data.</summary>
    public double? XMax { get; init; }

    /// <summary>Fixed lower y limit (must be &gt; 0 on a log axis); null fits the data.</summary>
    public double? YMin { get; init; }

    /// <summary>Fixed upper y limit; null fits the data.</summary>
    public double? YMax { get; init; }
}
