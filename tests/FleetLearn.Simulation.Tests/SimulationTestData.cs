using FleetLearn.Core.Random;
using FleetLearn.Core.Training;
using FleetLearn.Perception.Datasets;
using Microsoft.Extensions.Logging;

namespace FleetLearn.Simulation.Tests;

/// <summary>What the simulation tests share: Fashion-MNIST loaded once (null where it is not installed, an error in CI), blob data and the workers' logger.</summary>
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

    /// <summary>
    /// Four Gaussian blobs in 16 dimensions (centres from seed 99, noise 0.7): learnable in a few rounds, fast enough for
    /// unit tests; <paramref name="seed"/> draws the rows.
    /// </summary>
    public static LabeledData Blobs(int rows, ulong seed)
    {
        var rng = new DeterministicRandom(seed);
        var centerRng = new DeterministicRandom(99);
        var centers = Enumerable.Range(0, 4).Select(_ => Enumerable.Range(0, 16).Select(_ => (float)centerRng.NextGaussian()).ToArray()).ToArray();
        var x = new float[rows * 16];
        var y = new byte[rows];
        for (int r = 0; r < rows; r++)
        {
            int c = rng.NextInt(4);
            y[r] = (byte)c;
            for (int j = 0; j < 16; j++) x[r * 16 + j] = centers[c][j] + 0.7f * (float)rng.NextGaussian();
        }
        return new LabeledData(x, y, 16, 4, "blobs");
    }

    /// <summary>Worker logs: warnings and up, or everything with FL_TEST_LOGS set.</summary>
    public static readonly ILoggerFactory Logs = LoggerFactory.Create(b => b.AddSimpleConsole(o => o.SingleLine = true)
        .SetMinimumLevel(Environment.GetEnvironmentVariable("FL_TEST_LOGS") is null ? LogLevel.Warning : LogLevel.Information));
}
