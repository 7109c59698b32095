namespace FleetLearn.Reporting.Rendering;

/// <summary>A point in image pixels, y down.</summary>
internal readonly record struct PointD(double X, double Y);

/// <summary>An axis-aligned rectangle in image pixels.</summary>
internal readonly record struct RectD(double X, double Y, double Width, double Height)
{
    public double Right => X + Width;
    public double Bottom => Y + Height;

    public bool Contains(PointD p) => p.X >= X && p.X <= Right && p.Y >= Y && p.Y <= Bottom;

    public bool Intersects(RectD o) => X < o.Right && o.X < Right && Y < o.Bottom && o.Y < Bottom;

    public RectD Inflate(double d) => new(X - d, Y - d, Width + 2 * d, Height + 2 * d);
}

/// <summary>Which of the three embedded type faces a text uses.</summary>
internal enum FontRole
{
    /// <summary>Tick labels, legend, reference label: 12 px regular.</summary>
    Tick = 0,

    /// <summary>Axis labels: 13 px regular.</summary>
    Label = 1,

    /// <summary>Chart title: 16 px bold.</summary>
    Title = 2,
}

/// <summary>Horizontal alignment of a text relative to its anchor point.</summary>
internal enum TextAnchor
{
    Start,
    Middle,
    End,
}

/// <summary>Vertical metrics of a face in pixels (ascent above, descent below the baseline).</summary>
internal readonly record struct FontMetrics(int Size, int Ascent, int Descent, bool Bold);

/// <summary>
/// The drawing operations <see cref="ChartPainter"/> needs; implemented once for pixels and once
/// for SVG so both outputs share a single layout.
/// </summary>
internal interface IChartCanvas
{
    void FillRect(RectD rect, ChartColor color);

    void StrokeRect(RectD rect, ChartColor color, double width);

    /// <summary>Round-joined, round-capped line through the points; <paramref name="dash"/> is on/off lengths in px.</summary>
    void Polyline(IReadOnlyList<PointD> points, ChartColor color, double width, IReadOnlyList<double>? dash = null);

    void FillCircle(PointD center, double radius, ChartColor color);

    /// <summary>
    /// Draws a single-line text whose baseline passes through (x, y). Vertical text reads bottom to
    /// top; its baseline is the vertical line through x and the anchor applies along y.
    /// </summary>
    void Text(string text, double x, double y, FontRole role, TextAnchor anchor, ChartColor color, bool vertical = false);

    /// <summary>Restricts later shape drawing (not text) to a rectangle; null lifts the restriction.</summary>
    void SetClip(RectD? clip);
}
