using System.Globalization;
using System.Text;

namespace FleetLearn.Reporting.Rendering;

/// <summary>Writes canvas operations as SVG 1.1 elements; text uses the viewer's sans-serif font.</summary>
internal sealed class SvgCanvas : IChartCanvas
{
    private readonly StringBuilder _body = new();
    private readonly string _clipId;
    private RectD? _clipRect;
    private bool _clipOpen;

    public SvgCanvas(string idPrefix) => _clipId = idPrefix + "-clip";

    public void SetClip(RectD? clip)
    {
        if (_clipOpen)
        {
            _body.Append("</g>\n");
            _clipOpen = false;
        }
        if (clip is { } c)
        {
            _clipRect = c;
            _body.Append(CultureInfo.InvariantCulture, $"<g clip-path=\"url(#{_clipId})\">\n");
            _clipOpen = true;
        }
    }

    public void FillRect(RectD rect, ChartColor color) =>
        _body.Append(CultureInfo.InvariantCulture,
            $"<rect x=\"{N(rect.X)}\" y=\"{N(rect.Y)}\" width=\"{N(rect.Width)}\" height=\"{N(rect.Height)}\" fill=\"{color.ToHex()}\"/>\n");

    public void StrokeRect(RectD rect, ChartColor color, double width) =>
        _body.Append(CultureInfo.InvariantCulture,
            $"<rect x=\"{N(rect.X)}\" y=\"{N(rect.Y)}\" width=\"{N(rect.Width)}\" height=\"{N(rect.Height)}\" fill=\"none\" stroke=\"{color.ToHex()}\" stroke-width=\"{N(width)}\"/>\n");

    public void Polyline(IReadOnlyList<PointD> points, ChartColor color, double width, IReadOnlyList<double>? dash = null)
    {
        _body.Append("<polyline fill=\"none\" stroke=\"").Append(color.ToHex())
            .Append("\" stroke-width=\"").Append(N(width))
            .Append("\" stroke-linejoin=\"round\" stroke-linecap=\"").Append(dash is { Count: > 0 } ? "butt" : "round").Append('"');
        if (dash is { Count: > 0 })
            _body.Append(" stroke-dasharray=\"").AppendJoin(' ', dash.Select(N)).Append('"');
        _body.Append(" points=\"");
        for (var i = 0; i < points.Count; i++)
        {
            if (i > 0)
                _body.Append(' ');
            _body.Append(N(points[i].X)).Append(',').Append(N(points[i].Y));
        }
        _body.Append("\"/>\n");
    }

    public void FillCircle(PointD center, double radius, ChartColor color) =>
        _body.Append(CultureInfo.InvariantCulture,
            $"<circle cx=\"{N(center.X)}\" cy=\"{N(center.Y)}\" r=\"{N(radius)}\" fill=\"{color.ToHex()}\"/>\n");

    public void Text(string text, double x, double y, FontRole role, TextAnchor anchor, ChartColor color, bool vertical = false)
    {
        var m = GlyphAtlas.Face(role).Metrics;
        var a = anchor switch
        {
            TextAnchor.Middle => "middle",
            TextAnchor.End => "end",
            _ => "start",
        };
        _body.Append(CultureInfo.InvariantCulture, $"<text x=\"{N(x)}\" y=\"{N(y)}\" font-size=\"{m.Size}\"");
        if (m.Bold)
            _body.Append(" font-weight=\"bold\"");
        _body.Append(CultureInfo.InvariantCulture, $" text-anchor=\"{a}\" fill=\"{color.ToHex()}\"");
        if (vertical)
            _body.Append(CultureInfo.InvariantCulture, $" transform=\"rotate(-90 {N(x)} {N(y)})\"");
        _body.Append('>').Append(Xml.Escape(text)).Append("</text>\n");
    }

    /// <summary>The complete &lt;svg&gt; element.</summary>
    public string ToSvg(int width, int height, string title)
    {
        SetClip(null);
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture,
            $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\"");
        sb.Append(" font-family=\"'DejaVu Sans', Verdana, 'Segoe UI', Arial, sans-serif\"");
        if (title.Length > 0)
            sb.Append(" aria-label=\"").Append(Xml.Escape(title)).Append('"');
        sb.Append(">\n");
        if (title.Length > 0)
            sb.Append("<title>").Append(Xml.Escape(title)).Append("</title>\n");
        if (_clipRect is { } c)
        {
            sb.Append(CultureInfo.InvariantCulture,
                $"<defs><clipPath id=\"{_clipId}\"><rect x=\"{N(c.X)}\" y=\"{N(c.Y)}\" width=\"{N(c.Width)}\" height=\"{N(c.Height)}\"/></clipPath></defs>\n");
        }
        sb.Append(_body);
        sb.Append("</svg>");
        return sb.ToString();
    }

    private static string N(double v) => Math.Round(v, 2).ToString("0.##", CultureInfo.InvariantCulture);
}

/// <summary>XML/HTML text escaping shared by the SVG and HTML writers.</summary>
internal static class Xml
{
    /// <summary>Escapes &amp; &lt; &gt; " ' and drops control characters XML 1.0 forbids.</summary>
    public static string Escape(string? text)
    {
        if (string.IsNullOrEmpty(text))
            return "";
        var sb = new StringBuilder(text.Length + 16);
        foreach (var c in text)
        {
            switch (c)
            {
                case '&': sb.Append("&amp;"); break;
                case '<': sb.Append("&lt;"); break;
                case '>': sb.Append("&gt;"); break;
                case '"': sb.Append("&quot;"); break;
                case '\'': sb.Append("&#39;"); break;
                case < ' ' and not ('\t' or '\n' or '\r'): break;
                case '\uFFFE' or '\uFFFF': break;
                default: sb.Append(c); break;
            }
        }
        return sb.ToString();
    }
}
