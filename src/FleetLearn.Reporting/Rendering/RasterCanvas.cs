namespace FleetLearn.Reporting.Rendering;

/// <summary>
/// An RGB raster. Shapes are filled at <see cref="Supersample"/>× resolution and box-filtered down,
/// which anti-aliases every edge; text is blended afterwards from the embedded glyph atlas, which is
/// already anti-aliased at its final size.
/// </summary>
internal sealed class RasterCanvas : IChartCanvas
{
    public const int Supersample = 4;

    private readonly int _width;
    private readonly int _height;
    private readonly int _sw;
    private readonly int _sh;
    private readonly uint[] _hi; // 0xRRGGBB per sample
    private readonly List<(string Text, double X, double Y, FontRole Role, TextAnchor Anchor, ChartColor Color, bool Vertical)> _texts = [];
    private (int X0, int Y0, int X1, int Y1) _clip;

    public RasterCanvas(int width, int height)
    {
        _width = width;
        _height = height;
        _sw = width * Supersample;
        _sh = height * Supersample;
        _hi = new uint[_sw * _sh];
        _clip = (0, 0, _sw, _sh);
    }

    public void SetClip(RectD? clip)
    {
        if (clip is not { } c)
        {
            _clip = (0, 0, _sw, _sh);
            return;
        }
        _clip = (
            Math.Clamp((int)Math.Floor(c.X * Supersample), 0, _sw),
            Math.Clamp((int)Math.Floor(c.Y * Supersample), 0, _sh),
            Math.Clamp((int)Math.Ceiling(c.Right * Supersample), 0, _sw),
            Math.Clamp((int)Math.Ceiling(c.Bottom * Supersample), 0, _sh));
    }

    public void FillRect(RectD rect, ChartColor color) => FillConvex(
        [new(rect.X, rect.Y), new(rect.Right, rect.Y), new(rect.Right, rect.Bottom), new(rect.X, rect.Bottom)], color);

    public void StrokeRect(RectD rect, ChartColor color, double width)
    {
        var h = width / 2;
        FillRect(new RectD(rect.X - h, rect.Y - h, rect.Width + width, width), color);
        FillRect(new RectD(rect.X - h, rect.Bottom - h, rect.Width + width, width), color);
        FillRect(new RectD(rect.X - h, rect.Y - h, width, rect.Height + width), color);
        FillRect(new RectD(rect.Right - h, rect.Y - h, width, rect.Height + width), color);
    }

    public void Polyline(IReadOnlyList<PointD> points, ChartColor color, double width, IReadOnlyList<double>? dash = null)
    {
        if (dash is { Count: > 0 })
        {
            foreach (var piece in Dashes(points, dash))
                Polyline(piece, color, width);
            return;
        }
        var r = width / 2;
        for (var i = 0; i + 1 < points.Count; i++)
        {
            var (a, b) = (points[i], points[i + 1]);
            var (dx, dy) = (b.X - a.X, b.Y - a.Y);
            var len = Math.Sqrt(dx * dx + dy * dy);
            if (len < 1e-9)
                continue;
            var (nx, ny) = (-dy / len * r, dx / len * r);
            FillConvex([new(a.X + nx, a.Y + ny), new(b.X + nx, b.Y + ny), new(b.X - nx, b.Y - ny), new(a.X - nx, a.Y - ny)], color);
        }
        // Round joins and caps.
        foreach (var p in points)
            FillCircle(p, r, color);
    }

    public void FillCircle(PointD center, double radius, ChartColor color)
    {
        var n = Math.Clamp((int)(radius * Supersample * 2), 12, 64);
        var pts = new PointD[n];
        for (var i = 0; i < n; i++)
        {
            var a = 2 * Math.PI * i / n;
            pts[i] = new PointD(center.X + radius * Math.Cos(a), center.Y + radius * Math.Sin(a));
        }
        FillConvex(pts, color);
    }

    public void Text(string text, double x, double y, FontRole role, TextAnchor anchor, ChartColor color, bool vertical = false) =>
        _texts.Add((text, x, y, role, anchor, color, vertical));

    /// <summary>Downsamples the shapes, draws the texts and returns packed RGB rows.</summary>
    public byte[] ToRgb()
    {
        var rgb = new byte[_width * _height * 3];
        const int n = Supersample * Supersample;
        for (var y = 0; y < _height; y++)
        {
            for (var x = 0; x < _width; x++)
            {
                int r = 0, g = 0, b = 0;
                for (var sy = 0; sy < Supersample; sy++)
                {
                    var row = (y * Supersample + sy) * _sw + x * Supersample;
                    for (var sx = 0; sx < Supersample; sx++)
                    {
                        var v = _hi[row + sx];
                        r += (int)(v >> 16);
                        g += (int)(v >> 8) & 0xFF;
                        b += (int)v & 0xFF;
                    }
                }
                var o = (y * _width + x) * 3;
                rgb[o] = (byte)((r + n / 2) / n);
                rgb[o + 1] = (byte)((g + n / 2) / n);
                rgb[o + 2] = (byte)((b + n / 2) / n);
            }
        }
        foreach (var t in _texts)
            DrawText(rgb, t.Text, t.X, t.Y, t.Role, t.Anchor, t.Color, t.Vertical);
        return rgb;
    }

    private void DrawText(byte[] rgb, string text, double x, double y, FontRole role, TextAnchor anchor, ChartColor color, bool vertical)
    {
        var face = GlyphAtlas.Face(role);
        var width = face.Measure(text);
        var shift = anchor switch
        {
            TextAnchor.Middle => -width / 2,
            TextAnchor.End => -width,
            _ => 0,
        };
        // Pen origin on whole pixels keeps the hinted glyph bitmaps sharp.
        var penX = vertical ? Math.Round(y - shift) : Math.Round(x + shift);
        var baseline = (int)Math.Round(vertical ? x : y);
        var pen = 0.0;
        foreach (var c in text)
        {
            var g = face.Get(c);
            var gx = (int)Math.Round(pen);
            for (var j = 0; j < g.Height; j++)
            {
                for (var i = 0; i < g.Width; i++)
                {
                    var a = g.Alpha[j * g.Width + i];
                    if (a == 0)
                        continue;
                    // Horizontal: (penX + along, baseline + down). Vertical, rotated 90° anticlockwise:
                    // along the text goes up the image, "down" in the glyph goes right.
                    var along = gx + g.Left + i;
                    var down = g.Top + j;
                    var (px, py) = vertical
                        ? (baseline + down, (int)penX - along)
                        : ((int)penX + along, baseline + down);
                    if ((uint)px >= (uint)_width || (uint)py >= (uint)_height)
                        continue;
                    var o = (py * _width + px) * 3;
                    rgb[o] = Blend(rgb[o], color.R, a);
                    rgb[o + 1] = Blend(rgb[o + 1], color.G, a);
                    rgb[o + 2] = Blend(rgb[o + 2], color.B, a);
                }
            }
            pen += g.Advance;
        }
    }

    private static byte Blend(byte dst, byte src, byte alpha) => (byte)((dst * (255 - alpha) + src * alpha + 127) / 255);

    /// <summary>Fills a convex polygon given in image pixels: a sample is in when its centre is.</summary>
    private void FillConvex(ReadOnlySpan<PointD> pts, ChartColor color)
    {
        double minY = double.MaxValue, maxY = double.MinValue;
        foreach (var p in pts)
        {
            minY = Math.Min(minY, p.Y * Supersample);
            maxY = Math.Max(maxY, p.Y * Supersample);
        }
        var packed = (uint)(color.R << 16 | color.G << 8 | color.B);
        var y0 = Math.Max(_clip.Y0, (int)Math.Ceiling(minY - 0.5));
        var y1 = Math.Min(_clip.Y1 - 1, (int)Math.Floor(maxY - 0.5));
        for (var sy = y0; sy <= y1; sy++)
        {
            var yc = sy + 0.5;
            double xl = double.MaxValue, xr = double.MinValue;
            for (var i = 0; i < pts.Length; i++)
            {
                var a = pts[i];
                var b = pts[(i + 1) % pts.Length];
                double ay = a.Y * Supersample, by = b.Y * Supersample;
                if ((ay <= yc && by > yc) || (by <= yc && ay > yc))
                {
                    var xi = (a.X + (yc - ay) / (by - ay) * (b.X - a.X)) * Supersample;
                    xl = Math.Min(xl, xi);
                    xr = Math.Max(xr, xi);
                }
            }
            if (xl > xr)
                continue;
            var x0 = Math.Max(_clip.X0, (int)Math.Ceiling(xl - 0.5));
            var x1 = Math.Min(_clip.X1 - 1, (int)Math.Floor(xr - 0.5));
            if (x1 >= x0)
                _hi.AsSpan(sy * _sw + x0, x1 - x0 + 1).Fill(packed);
        }
    }

    /// <summary>Splits a polyline into its "on" pieces for an on/off dash pattern.</summary>
    private static List<List<PointD>> Dashes(IReadOnlyList<PointD> points, IReadOnlyList<double> pattern)
    {
        var pieces = new List<List<PointD>>();
        var index = 0;
        var left = pattern[0];
        var on = true;
        var current = new List<PointD>();
        if (points.Count > 0)
            current.Add(points[0]);
        for (var i = 0; i + 1 < points.Count; i++)
        {
            var a = points[i];
            var b = points[i + 1];
            var len = Math.Sqrt((b.X - a.X) * (b.X - a.X) + (b.Y - a.Y) * (b.Y - a.Y));
            var t = 0.0;
            while (len - t > left)
            {
                t += left;
                var p = new PointD(a.X + (b.X - a.X) * t / len, a.Y + (b.Y - a.Y) * t / len);
                if (on)
                {
                    current.Add(p);
                    pieces.Add(current);
                }
                current = [p];
                on = !on;
                index = (index + 1) % pattern.Count;
                left = Math.Max(0.5, pattern[index]);
            }
            left -= len - t;
            current.Add(b);
        }
        if (on && current.Count > 1)
            pieces.Add(current);
        return pieces;
    }
}
