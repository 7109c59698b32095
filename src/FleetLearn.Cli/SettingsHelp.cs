using System.Globalization;
using System.Reflection;
using System.Text;
using System.Xml.Linq;

namespace FleetLearn.Cli;

/// <summary>The settings list of a hosted command's --help, generated from its options classes (names, defaults, XML summaries).</summary>
internal static class SettingsHelp
{
    /// <summary>
    /// One line per settable property of each options type: <c>Section:Name (type, default value) summary</c>. The
    /// summary comes from the assembly's XML documentation when it sits next to the assembly (it does in a build).
    /// </summary>
    public static string Describe(params (string Section, Type Options)[] sections)
    {
        ArgumentNullException.ThrowIfNull(sections);
        var text = new StringBuilder();
        text.AppendLine("Settings (--Section:Key=value, appsettings.json, or the environment as Section__Key):");
        foreach (var (section, type) in sections)
        {
            object? defaults = CreateDefaults(type);
            var docs = Summaries(type.Assembly);
            foreach (var property in type.GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.CanWrite && p.SetMethod!.IsPublic))
            {
                string value = defaults is null ? "" : Format(property.GetValue(defaults));
                docs.TryGetValue($"P:{type.FullName}.{property.Name}", out var summary);
                text.Append(CultureInfo.InvariantCulture, $"  {section}:{property.Name} ({TypeName(property.PropertyType)}{(value.Length > 0 ? $", default {value}" : "")})");
                if (!string.IsNullOrEmpty(summary)) text.Append(" — ").Append(summary);
                text.AppendLine();
            }
        }
        return text.ToString().TrimEnd();
    }

    private static object? CreateDefaults(Type type)
    {
        try
        {
            return Activator.CreateInstance(type);
        }
        catch (Exception e) when (e is MissingMethodException or TargetInvocationException or MemberAccessException)
        {
            return null;
        }
    }

    private static string Format(object? value) => value switch
    {
        null => "",
        string s => s.Length == 0 ? "" : s,
        TimeSpan t => t.ToString("c", CultureInfo.InvariantCulture),
        bool b => b ? "true" : "false",
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        System.Collections.IEnumerable e => string.Join(",", e.Cast<object?>().Select(Format)),
        _ => value.ToString() ?? "",
    };

    private static string TypeName(Type type)
    {
        var inner = Nullable.GetUnderlyingType(type);
        if (inner is not null) return TypeName(inner) + "?";
        return type == typeof(string) ? "text" : type == typeof(int) || type == typeof(long) || type == typeof(ulong) ? "integer"
            : type == typeof(double) || type == typeof(float) ? "number" : type == typeof(bool) ? "true|false"
            : type == typeof(TimeSpan) ? "hh:mm:ss" : type.IsEnum ? string.Join("|", Enum.GetNames(type)) : type.Name;
    }

    /// <summary>Member summaries from <c>{assembly}.xml</c> beside the assembly, one line each; empty when the file is absent.</summary>
    private static Dictionary<string, string> Summaries(Assembly assembly)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        string location = assembly.Location;
        if (string.IsNullOrEmpty(location)) return result;
        string xml = Path.ChangeExtension(location, ".xml");
        if (!File.Exists(xml)) return result;
        try
        {
            foreach (var member in XDocument.Load(xml).Descendants("member"))
            {
                if (member.Attribute("name")?.Value is not { } name || member.Element("summary") is not { } summary) continue;
                // <see cref="X"/> and <c>x</c> become their text.
                string text = string.Concat(summary.Nodes().Select(n => n switch
                {
                    XText t => t.Value,
                    XElement { Name.LocalName: "see" } e => e.Attribute("cref")?.Value.Split('.', ':').Last() ?? e.Attribute("langword")?.Value ?? e.Value,
                    XElement e => e.Value,
                    _ => "",
                }));
                result[name] = string.Join(' ', text.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries));
            }
        }
        catch (Exception e) when (e is System.Xml.XmlException or IOException or UnauthorizedAccessException)
        {
            // Documentation is a nicety: names and defaults still list every setting.
        }
        return result;
    }
}
