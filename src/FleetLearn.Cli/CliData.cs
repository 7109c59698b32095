using System.Diagnostics;
using System.Globalization;
using FleetLearn.Core.Training;
using FleetLearn.Perception.Datasets;

namespace FleetLearn.Cli;

/// <summary>Loads Fashion-MNIST for a command and says where from (an explicit --data or $FLEETLEARN_DATA is used or refused).</summary>
internal static class CliData
{
    /// <summary>The training split, announced on <paramref name="progress"/> before and after reading.</summary>
    public static LabeledData LoadTrain(string? folder, TextWriter progress) => Load(folder, progress, train: true, test: false).Train!;

    /// <summary>The test split, announced on <paramref name="progress"/>.</summary>
    public static LabeledData LoadTest(string? folder, TextWriter progress) => Load(folder, progress, train: false, test: true).Test!;

    /// <summary>Both splits, announced on <paramref name="progress"/>.</summary>
    public static (LabeledData Train, LabeledData Test) LoadBoth(string? folder, TextWriter progress)
    {
        var (train, test) = Load(folder, progress, train: true, test: true);
        return (train!, test!);
    }

    private static (LabeledData? Train, LabeledData? Test) Load(string? folder, TextWriter progress, bool train, bool test)
    {
        ArgumentNullException.ThrowIfNull(progress);
        string resolved = FashionMnist.ResolveFolder(folder);
        string source = !string.IsNullOrWhiteSpace(folder) ? "--data" : !string.IsNullOrWhiteSpace(Environment.GetEnvironmentVariable(FashionMnist.DataVariable)) ? $"${FashionMnist.DataVariable}" : "default";
        progress.WriteLine($"data: reading Fashion-MNIST from {resolved} ({source}) …");
        var clock = Stopwatch.StartNew();
        var trainData = train ? FashionMnist.LoadTrain(resolved) : null;
        var testData = test ? FashionMnist.LoadTest(resolved) : null;
        progress.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"data: {(trainData is null ? "" : $"{trainData.Count:N0} training images")}{(trainData is not null && testData is not null ? ", " : "")}{(testData is null ? "" : $"{testData.Count:N0} test images")} in {clock.Elapsed.TotalSeconds:F1} s"));
        return (trainData, testData);
    }
}
