using FleetLearn.Core.Training;
using FleetLearn.Perception.Datasets;
using Microsoft.Extensions.Logging;

namespace FleetLearn.Simulation.Tests;

/// <summary>What the simulation tests share: Fashion-MNIST loaded once (null where it is not installed, an error in CI) and the workers' logger.</summary>
internal static class SimulationTestData
{
    /// <summary>Fashion-MNIST's training and test sets, or null when the package is missing outside CI (the tests then skip).</summary>
    public static readonly Lazy<(LabeledData Train, LabeledData Test)?> FashionMnistSets = new(() =>
    {
        try
        {
            return (FashionMnist.LoadTrain(null), FashionMnist.LoadTest(null));
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            if (Environment.GetEnvironmentVariable("CI") == "true") throw;
            return null;
        }
    });

    /// <summary>Worker logs: warnings and up, or everything with FL_TEST_LOGS set.</summary>
    public static readonly ILoggerFactory Logs = LoggerFactory.Create(b => b.AddSimpleConsole(o => o.SingleLine = true)
        .SetMinimumLevel(Environment.GetEnvironmentVariable("FL_TEST_LOGS") is null ? LogLevel.Warning : LogLevel.Information));
}
