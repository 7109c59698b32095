using Microsoft.Extensions.Logging;

namespace FleetLearn.Aggregator.Tests;

/// <summary>The workers' logs in tests: nothing, or everything on one line each when FL_TEST_LOGS is set.</summary>
internal static class TestLogs
{
    public static readonly ILoggerFactory Factory = LoggerFactory.Create(b => b.AddSimpleConsole(o => o.SingleLine = true)
        .SetMinimumLevel(Environment.GetEnvironmentVariable("FL_TEST_LOGS") is null ? LogLevel.None : LogLevel.Debug));
}
