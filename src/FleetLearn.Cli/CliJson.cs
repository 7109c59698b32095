using System.Text.Json;
using System.Text.Json.Serialization;

namespace FleetLearn.Cli;

/// <summary>The one-JSON-object-per-line output that scripts read (snake_case keys).</summary>
internal static class CliJson
{
    public static readonly JsonSerializerOptions Options = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    /// <summary>Serializes to a single line.</summary>
    public static string Line(object value) => JsonSerializer.Serialize(value, Options);

    /// <summary>Writes one JSON line to stdout.</summary>
    public static void Write(TextWriter output, object value) => output.WriteLine(Line(value));
}
