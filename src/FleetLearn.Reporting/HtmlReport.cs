using System.Globalization;
using System.Text;

namespace FleetLearn.Reporting;

/// <summary>
/// Builds one self-contained HTML5 page: a title, a summary table, then sections of text, inline SVG
/// charts, tables and embedded PNGs. No external CSS, scripts, fonts or images; a
/// Content-Security-Policy forbids fetching any.
/// </summary>
public sealed class HtmlReport
{
    private readonly string _title;
    private readonly List<(string Key, string Value)> _summary = [];
    private readonly StringBuilder _body = new();
    private bool _sectionOpen;
    private int _charts;

    /// <summary>Starts a report; <paramref name="title"/> is the page title and top heading.</summary>
    public HtmlReport(string title)
    {
        ArgumentNullException.ThrowIfNull(title);
        _title = title;
    }

    /// <summary>Adds a key → value row to the summary table at the top (values formatted invariantly).</summary>
    public HtmlReport AddSummary(string key, object? value)
    {
        ArgumentNullException.ThrowIfNull(key);
        _summary.Add((key, CsvWriter.FormatValue(value)));
        return this;
    }

    /// <summary>Starts a new section with a heading; later content goes into it.</summary>
    public HtmlReport AddSection(string heading)
    {
        ArgumentNullException.ThrowIfNull(heading);
        CloseSection();
        _body.Append("<section>\n<h2>").Append(Xml.Escape(heading)).Append("</h2>\n");
        _sectionOpen = true;
        return this;
    }

    /// <summary>Adds plain text; blank lines separate paragraphs. The text is escaped, never interpreted as HTML.</summary>
    public HtmlReport AddText(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var paragraphs = text.ReplaceLineEndings("\n").Split("\n\n", StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        foreach (var p in paragraphs)
            _body.Append("<p>").Append(Xml.Escape(p).Replace("\n", "<br>\n", StringComparison.Ordinal)).Append("</p>\n");
        return this;
    }

    /// <summary>Adds a chart as inline SVG (scales down on narrow screens).</summary>
    public HtmlReport AddChart(LineChart chart, int width = 900, int height = 500)
    {
        ArgumentNullException.ThrowIfNull(chart);
        _charts++;
        var svg = SvgChartRenderer.Render(chart, width, height, "chart" + _charts.ToString(CultureInfo.InvariantCulture));
        _body.Append("<figure class=\"chart\">\n").Append(svg).Append("\n</figure>\n");
        return this;
    }

    /// <summary>Adds a table; numeric cells are right-aligned and all cells formatted invariantly.</summary>
    public HtmlReport AddTable(IReadOnlyList<string> header, IEnumerable<IEnumerable<object?>> rows, string? caption = null)
    {
        ArgumentNullException.ThrowIfNull(header);
        ArgumentNullException.ThrowIfNull(rows);
        _body.Append("<div class=\"table-wrap\"><table>\n");
        if (!string.IsNullOrEmpty(caption))
            _body.Append("<caption>").Append(Xml.Escape(caption)).Append("</caption>\n");
        var materialized = rows.Select(r => r.ToArray()).ToList();
        _body.Append("<thead><tr>");
        for (var c = 0; c < header.Count; c++)
        {
            // A column of numbers gets a right-aligned heading to sit over its right-aligned cells.
            var column = materialized.Where(r => c < r.Length && r[c] is not null).Select(r => r[c]).ToList();
            var numeric = column.Count > 0 && column.All(IsNumeric);
            _body.Append(numeric ? "<th scope=\"col\" class=\"num\">" : "<th scope=\"col\">").Append(Xml.Escape(header[c])).Append("</th>");
        }
        _body.Append("</tr></thead>\n<tbody>\n");
        foreach (var row in materialized)
        {
            _body.Append("<tr>");
            foreach (var cell in row)
            {
                _body.Append(IsNumeric(cell) ? "<td class=\"num\">" : "<td>")
                    .Append(Xml.Escape(CsvWriter.FormatValue(cell))).Append("</td>");
            }
            _body.Append("</tr>\n");
        }
        _body.Append("</tbody>\n</table></div>\n");
        return this;
    }

    /// <summary>Embeds a PNG as a data: URI image; throws when the bytes are not a PNG.</summary>
    public HtmlReport AddPng(byte[] png, string altText)
    {
        ArgumentNullException.ThrowIfNull(png);
        ArgumentNullException.ThrowIfNull(altText);
        if (png.Length < 8 || !png.AsSpan(0, 8).SequenceEqual(PngSignature))
            throw new ArgumentException("The bytes are not a PNG (bad signature).", nameof(png));
        _body.Append("<figure class=\"image\"><img alt=\"").Append(Xml.Escape(altText))
            .Append("\" src=\"data:image/png;base64,").Append(Convert.ToBase64String(png)).Append("\"></figure>\n");
        return this;
    }

    /// <summary>The complete HTML document.</summary>
    public string ToHtml()
    {
        var html = new StringBuilder();
        html.Append("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n")
            .Append("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n")
            .Append("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">\n")
            .Append("<title>").Append(Xml.Escape(_title)).Append("</title>\n")
            .Append("<style>\n").Append(Css).Append("</style>\n</head>\n<body>\n<main>\n")
            .Append("<h1>").Append(Xml.Escape(_title)).Append("</h1>\n");
        if (_summary.Count > 0)
        {
            html.Append("<table class=\"summary\">\n<tbody>\n");
            foreach (var (key, value) in _summary)
                html.Append("<tr><th scope=\"row\">").Append(Xml.Escape(key)).Append("</th><td>").Append(Xml.Escape(value)).Append("</td></tr>\n");
            html.Append("</tbody>\n</table>\n");
        }
        html.Append(_body);
        if (_sectionOpen)
            html.Append("</section>\n");
        html.Append("</main>\n</body>\n</html>\n");
        return html.ToString();
    }

    private static ReadOnlySpan<byte> PngSignature => [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A];

    private void CloseSection()
    {
        if (_sectionOpen)
            _body.Append("</section>\n");
        _sectionOpen = false;
    }

    private static bool IsNumeric(object? v) =>
        v is sbyte or byte or short or ushort or int or uint or long or ulong or float or double or decimal;

    private const string Css = """
        :root { color-scheme: light; }
        body { margin: 0; background: #f6f7f9; color: #222; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", Roboto, Arial, sans-serif; }
        main { max-width: 960px; margin: 0 auto; padding: 24px 20px 48px; background: #fff; min-height: 100vh; box-sizing: border-box; box-shadow: 0 0 0 1px #e3e5e8; }
        h1 { font-size: 26px; margin: 0 0 16px; }
        h2 { font-size: 19px; margin: 32px 0 8px; padding-bottom: 4px; border-bottom: 1px solid #e3e5e8; }
        p { margin: 8px 0; }
        table { border-collapse: collapse; font-variant-numeric: tabular-nums; margin: 8px 0; }
        th, td { padding: 4px 12px; border-bottom: 1px solid #eceef1; text-align: left; vertical-align: top; }
        thead th { border-bottom: 2px solid #c9cdd2; background: #f6f7f9; }
        td.num { text-align: right; }
        tbody tr:nth-child(even) td { background: #fafbfc; }
        caption { caption-side: top; text-align: left; font-weight: 600; padding: 4px 0; }
        table.summary { min-width: 360px; }
        table.summary th { font-weight: 600; color: #444; background: #f6f7f9; white-space: nowrap; }
        th.num { text-align: right; }
        .table-wrap { overflow-x: auto; }
        figure { margin: 16px 0; }
        figure svg, figure img { display: block; max-width: 100%; height: auto; }

        """;
}
