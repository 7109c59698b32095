using FleetLearn.EdgeAgent.Ingest;
using FleetLearn.Perception.Datasets;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;

namespace FleetLearn.EdgeAgent.Host.Tests;

/// <summary>The feature-store-backed data the worker trains on: labelled frames only, a hold-out that never moves.</summary>
public sealed class VehicleFeatureDataTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("fleetlearn-vehicle-data-");

    public void Dispose() => _dir.Delete(true);

    /// <summary>An image-folder clip of Fashion-MNIST test rows, labelled by a sidecar unless <paramref name="labelled"/> is false.</summary>
    private static void WriteClip(string folder, int first, int count, bool labelled)
    {
        var test = FashionMnist.LoadTest();
        Directory.CreateDirectory(folder);
        for (int i = 0; i < count; i++)
        {
            var pixels = test.Row(first + i).ToArray().Select(v => (byte)Math.Round(v * 255)).ToArray();
            using var image = Image.LoadPixelData<L8>(pixels, 28, 28);
            image.SaveAsPng(Path.Combine(folder, $"{i:D5}.png"));
        }
        if (labelled) File.WriteAllLines(Path.Combine(folder, "labels.csv"), ["frame,class", .. Enumerable.Range(0, count).Select(i => $"{i},{test.Labels[first + i]}")]);
    }

    [Fact]
    public void Snapshot_LabelledFramesOnly_HoldoutStableAsTheStoreGrows()
    {
        string data = Path.Combine(_dir.FullName, "recorder");
        WriteClip(Path.Combine(data, "a"), 0, 40, labelled: true);
        WriteClip(Path.Combine(data, "b"), 40, 10, labelled: false);
        var options = new VehicleIngestOptions
        {
            DataFolder = data, StoreFolder = Path.Combine(_dir.FullName, "store"), Backbone = "generated", Provider = "cpu", StableAfter = TimeSpan.Zero, HoldoutFraction = 0.25,
        };
        using var vehicle = new VehicleFeatureData(options, Path.Combine(_dir.FullName, "agent.db"));
        vehicle.Scan();
        var first = vehicle.Snapshot(out var summary);
        Assert.Equal((2, 50L, 10L), (summary.Clips, summary.Frames, summary.Unlabelled));
        Assert.Equal(40, summary.Train + summary.Holdout);
        Assert.InRange(summary.Holdout, 4, 18);
        Assert.Equal(833, first.Data.FeatureSize);
        var test = FashionMnist.LoadTest();
        var heldFeatures = first.HoldoutRows!.Select(r => first.Data.Row(r).ToArray()).ToList();

        WriteClip(Path.Combine(data, "c"), 50, 30, labelled: true);
        vehicle.Scan();
        var second = vehicle.Snapshot(out var grown);
        Assert.Equal(70, grown.Train + grown.Holdout);
        var secondHeld = second.HoldoutRows!.Select(r => second.Data.Row(r).ToArray()).ToList();
        foreach (var held in heldFeatures) Assert.Contains(secondHeld, h => h.SequenceEqual(held)); // a held-out frame never moves to training
        Assert.True(second.Rows.Length > first.Rows.Length);
    }

    [Fact]
    public void Options_BadValues_NameTheSetting()
    {
        var options = new VehicleIngestOptions { DataFolder = "/x", SampleEvery = 2, SampleRate = 5, HoldoutFraction = 1.5, Backbone = "/no/such.onnx", Provider = "tpu" };
        var failures = options.Validate(new System.ComponentModel.DataAnnotations.ValidationContext(options)).Select(r => r.ErrorMessage).ToList();
        Assert.Contains(failures, f => f!.Contains("Ingest:SampleEvery and Ingest:SampleRate", StringComparison.Ordinal));
        Assert.Contains(failures, f => f!.Contains("Ingest:HoldoutFraction 1.5", StringComparison.Ordinal));
        Assert.Contains(failures, f => f!.Contains("Ingest:Backbone '/no/such.onnx'", StringComparison.Ordinal));
        Assert.Contains(failures, f => f!.Contains("Ingest:Provider 'tpu'", StringComparison.Ordinal));
    }
}
