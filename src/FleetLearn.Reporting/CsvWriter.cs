using System.Globalization;
using System.Text;

namespace FleetLearn.Reporting;

/// <summary>
/// Writes RFC 4180 CSV: CRLF line ends, fields holding a comma, quote, CR or LF in double quotes
/// with inner quotes doubled (§2.6–2.7), values in the invariant culture.
/// </summary>
public sealed class CsvWriter
{
    private readonly TextWriter _writer;
    private readonly int? _columns;

    /// <summary>Wraps a writer it does not own; writes <paramref name="header"/> first when given and then holds every row to its width.</summary>
    public CsvWriter(TextWriter writer, IReadOnlyList<string>? header = null)
    {
        ArgumentNullException.ThrowIfNull(writer);
        _writer = writer;
        if (header is not null)
        {
            if (header.Count == 0)
                throw new ArgumentException("A CSV header needs at least one column.", nameof(header));
            _columns = header.Count;
            WriteFields(header);
        }
    }

    /// <summary>Writes one record; throws when a header was given and the field count differs.</summary>
    public void WriteRow(params object?[] fields) => WriteRow((IEnumerable<object?>)fields);

    /// <summary>Writes one record; throws when a header was given and the field count differs.</summary>
    public void WriteRow(IEnumerable<object?> fields)
    {
        ArgumentNullException.ThrowIfNull(fields);
        var values = fields.Select(FormatValue).ToArray();
        if (_columns is { } n && values.Length != n)
            throw new ArgumentException($"The header has {n} columns but the row has {values.Length}.", nameof(fields));
        WriteFields(values);
    }

    /// <summary>The whole CSV text for a header and rows.</summary>
    public static string Format(IReadOnlyList<string> header, IEnumerable<IEnumerable<object?>> rows)
    {
        ArgumentNullException.ThrowIfNull(rows);
        using var text = new StringWriter(CultureInfo.InvariantCulture);
        var csv = new CsvWriter(text, header);
        foreach (var row in rows)
            csv.WriteRow(row);
        return text.ToString();
    }

    /// <summary>Quotes a field when RFC 4180 requires it (comma, double quote, CR or LF), doubling inner quotes.</summary>
    public static string Escape(string? field)
    {
        if (string.IsNullOrEmpty(field))
            return "";
        if (field.AsSpan().IndexOfAny(",\"\r\n") < 0)
            return field;
        return "\"" + field.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"";
    }

    /// <summary>
    /// Writes a value culture-independently: null as empty, floating point as the shortest text that
    /// round-trips, dates as ISO 8601, booleans as true/false.
    /// </summary>
    public static string FormatValue(object? value) => value switch
    {
        null => "",
        string s => s,
        bool b => b ? "true" : "false",
        double d => d.ToString("R", CultureInfo.InvariantCulture),
        float f => f.ToString("R", CultureInfo.InvariantCulture),
        DateTime t => t.ToString("O", CultureInfo.InvariantCulture),
        DateTimeOffset t => t.ToString("O", CultureInfo.InvariantCulture),
        TimeSpan t => t.ToString("c", CultureInfo.InvariantCulture),
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };

    private void WriteFields(IEnumerable<string> fields)
    {
        var line = new StringBuilder();
        var first = true;
        foreach (var f in fields)
        {
            if (!first)
                line.Append(',');
            line.Append(Escape(f));
            first = false;
        }
        line.Append("\r\n");
        _writer.Write(line.ToString());
    }
}
