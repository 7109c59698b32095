using System.Globalization;
using System.Text;
using CsCheck;

namespace FleetLearn.Reporting.Tests;

public sealed class CsvWriterTests
{
    [Theory]
    [InlineData("plain", "plain")]
    [InlineData("", "")]
    [InlineData("a,b", "\"a,b\"")]
    [InlineData("say \"hi\"", "\"say \"\"hi\"\"\"")]
    [InlineData("two\nlines", "\"two\nlines\"")]
    [InlineData("cr\r", "\"cr\r\"")]
    [InlineData(" padded ", " padded ")]
    public void Escape_Field_QuotesOnlyWhenRfc4180Requires(string field, string expected)
    {
        Assert.Equal(expected, CsvWriter.Escape(field));
    }

    [Fact]
    public void Format_HeaderAndRows_UsesCrlfAndInvariantNumbers()
    {
        var csv = CsvWriter.Format(["round", "accuracy", "note"], [[1, 0.85, "ok"], [2, 1e-7, null]]);

        Assert.Equal("round,accuracy,note\r\n1,0.85,ok\r\n2,1E-07,\r\n", csv);
    }

    [Fact]
    public void FormatValue_CommaDecimalCulture_StillWritesPoint()
    {
        var comma = (CultureInfo)CultureInfo.InvariantCulture.Clone();
        comma.NumberFormat.NumberDecimalSeparator = ",";
        var previous = CultureInfo.CurrentCulture;
        CultureInfo.CurrentCulture = comma;
        try
        {
            Assert.Equal("0,5", 0.5.ToString(CultureInfo.CurrentCulture)); // the culture is in effect
            Assert.Equal("0.5", CsvWriter.FormatValue(0.5));
            Assert.Equal("2.25", CsvWriter.FormatValue(2.25m));
            Assert.Equal("3.5", CsvWriter.FormatValue(3.5f));
        }
        finally
        {
            CultureInfo.CurrentCulture = previous;
        }
    }

    [Fact]
    public void WriteRow_WrongFieldCount_Throws()
    {
        var csv = new CsvWriter(new StringWriter(), ["a", "b"]);

        Assert.Throws<ArgumentException>(() => csv.WriteRow(1, 2, 3));
    }

    [Fact]
    public void Format_AnyStrings_ParsesBackToSameFields()
    {
        var field = Gen.String[Gen.Char["a,\"\r\n x"], 0, 6];
        Gen.Select(field, field, field).Sample((a, b, c) =>
        {
            var text = CsvWriter.Format(["x", "y", "z"], [[a, b, c]]);
            var records = ParseRfc4180(text);
            Assert.Equal(2, records.Count);
            Assert.Equal([a, b, c], records[1]);
        });
    }

    /// <summary>A minimal strict RFC 4180 reader (CRLF record ends, quoted fields).</summary>
    private static List<List<string>> ParseRfc4180(string text)
    {
        var records = new List<List<string>>();
        var record = new List<string>();
        var field = new StringBuilder();
        var i = 0;
        while (i < text.Length)
        {
            if (text[i] == '"')
            {
                i++;
                while (true)
                {
                    if (text[i] == '"' && i + 1 < text.Length && text[i + 1] == '"')
                    {
                        field.Append('"');
                        i += 2;
                    }
                    else if (text[i] == '"')
                    {
                        i++;
                        break;
                    }
                    else
                    {
                        field.Append(text[i++]);
                    }
                }
            }
            if (text[i] == ',')
            {
                record.Add(field.ToString());
                field.Clear();
                i++;
            }
            else if (text[i] == '\r' && text[i + 1] == '\n')
            {
                record.Add(field.ToString());
                field.Clear();
                records.Add(record);
                record = [];
                i += 2;
            }
            else
            {
                Assert.NotEqual('"', text[i]);
                Assert.NotEqual('\n', text[i]);
                Assert.NotEqual('\r', text[i]);
                field.Append(text[i++]);
            }
        }
        Assert.Empty(record);
        return records;
    }
}
