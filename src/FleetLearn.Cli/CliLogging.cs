using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Logging.Console;

namespace FleetLearn.Cli;

/// <summary>Log output of every command: one line per event on stderr, so stdout holds only results (round lines, JSON).</summary>
internal static class CliLogging
{
    /// <summary>Environment variable that adds stack traces to logged exceptions (FLEETLEARN_DEBUG=1).</summary>
    public const string DebugVariable = "FLEETLEARN_DEBUG";

    /// <summary>Replaces the host's log providers with one console logger: single lines on stderr, exceptions without stack traces.</summary>
    public static ILoggingBuilder ToStandardError(this ILoggingBuilder builder, bool timestamps = false)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.ClearProviders();
        builder.AddConsole(o =>
        {
            o.FormatterName = CliConsoleFormatter.FormatterName;
            o.LogToStandardErrorThreshold = LogLevel.Trace; // every level to stderr
        });
        builder.AddConsoleFormatter<CliConsoleFormatter, CliConsoleFormatterOptions>(o => o.Timestamps = timestamps);
        return builder;
    }

    /// <summary>A logger factory writing single lines to stderr at <paramref name="minimum"/> and above.</summary>
    public static ILoggerFactory Create(LogLevel minimum, bool timestamps = false) =>
        LoggerFactory.Create(b => b.ToStandardError(timestamps).SetMinimumLevel(minimum));
}

/// <summary>Options of <see cref="CliConsoleFormatter"/>.</summary>
internal sealed class CliConsoleFormatterOptions : ConsoleFormatterOptions
{
    /// <summary>Start each line with the time of day (HH:mm:ss.fff).</summary>
    public bool Timestamps { get; set; }
}

/// <summary>
/// One line per event, "level: category: message", and for an exception its type and message (and its inner ones') rather
/// than a stack trace: what a user can act on. FLEETLEARN_DEBUG=1 adds the stack trace.
/// </summary>
internal sealed class CliConsoleFormatter(Microsoft.Extensions.Options.IOptionsMonitor<CliConsoleFormatterOptions> options) : ConsoleFormatter(FormatterName)
{
    public const string FormatterName = "fleetlearn";

    private static readonly bool s_debug = Environment.GetEnvironmentVariable(CliLogging.DebugVariable) == "1";

    public override void Write<TState>(in LogEntry<TState> logEntry, IExternalScopeProvider? scopeProvider, TextWriter textWriter)
    {
        string? message = logEntry.Formatter?.Invoke(logEntry.State, logEntry.Exception);
        if (message is null && logEntry.Exception is null) return;
        if (options.CurrentValue.Timestamps) textWriter.Write(DateTime.Now.ToString("HH:mm:ss.fff ", System.Globalization.CultureInfo.InvariantCulture));
        textWriter.Write(logEntry.LogLevel switch
        {
            LogLevel.Trace => "trce",
            LogLevel.Debug => "dbug",
            LogLevel.Information => "info",
            LogLevel.Warning => "warn",
            LogLevel.Error => "fail",
            LogLevel.Critical => "crit",
            _ => "none",
        });
        textWriter.Write(": ");
        textWriter.Write(ShortCategory(logEntry.Category));
        textWriter.Write(": ");
        textWriter.Write(message?.ReplaceLineEndings(" "));
        if (logEntry.Exception is { } e)
        {
            textWriter.Write(" (");
            textWriter.Write(Describe(e));
            textWriter.Write(')');
            if (s_debug)
            {
                textWriter.WriteLine();
                textWriter.Write(e.ToString());
            }
        }
        textWriter.WriteLine();
    }

    /// <summary>"Type: message" of the exception and each inner one, innermost last.</summary>
    internal static string Describe(Exception e)
    {
        var parts = new List<string>();
        for (Exception? x = e; x is not null && parts.Count < 4; x = x.InnerException)
            parts.Add($"{x.GetType().Name}: {x.Message.ReplaceLineEndings(" ")}");
        return string.Join(" ← ", parts);
    }

    private static string ShortCategory(string category)
    {
        int dot = category.LastIndexOf('.');
        return dot >= 0 ? category[(dot + 1)..] : category;
    }
}
