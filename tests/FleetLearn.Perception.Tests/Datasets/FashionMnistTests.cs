using FleetLearn.Perception.Datasets;

namespace FleetLearn.Perception.Tests.Datasets;

public sealed class FashionMnistTests
{
    [Fact]
    public void LoadTrainAndTest_RealData_HasShapesPixelRangeAndBalancedLabels()
    {
        var train = FashionMnist.LoadTrain();
        var test = FashionMnist.LoadTest();
        Assert.Equal(60_000, train.Count);
        Assert.Equal(10_000, test.Count);
        Assert.Equal(784, train.FeatureSize);
        Assert.Equal(10, train.ClassCount);
        Assert.Equal(0f, train.Features.Min());
        Assert.Equal(1f, train.Features.Max());
        Assert.All(train.LabelHistogram(), c => Assert.Equal(6_000, c));
        Assert.All(test.LabelHistogram(), c => Assert.Equal(1_000, c));
        // First training image is an ankle boot (label 9) in the published files.
        Assert.Equal(9, train.Labels[0]);
    }

    [Fact]
    public void ResolveFolder_NothingThere_NamesBothPlacesAndThePackage()
    {
        var env = Path.Combine(Path.GetTempPath(), "fleetlearn-no-env-" + Guid.NewGuid().ToString("N"));
        var debian = Path.Combine(Path.GetTempPath(), "fleetlearn-no-debian-" + Guid.NewGuid().ToString("N"));
        var error = Assert.Throws<DatasetNotFoundException>(() => FashionMnist.ResolveFolder(null, env, debian));
        Assert.Contains(env, error.Message, StringComparison.Ordinal);
        Assert.Contains(debian, error.Message, StringComparison.Ordinal);
        Assert.Contains("apt-get install -y dataset-fashion-mnist", error.Message, StringComparison.Ordinal);
        Assert.Contains("$FLEETLEARN_DATA", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ResolveFolder_ExplicitFolderWithoutData_RefusedNotReplacedByTheDefault()
    {
        var missing = Path.Combine(Path.GetTempPath(), "fleetlearn-no-data-" + Guid.NewGuid().ToString("N"));
        // The Debian folder holds the data here; an explicit folder that does not must still be an error.
        var error = Assert.Throws<DatasetNotFoundException>(() => FashionMnist.ResolveFolder(missing, null, FashionMnist.DebianFolder));
        Assert.Contains($"--data '{missing}'", error.Message, StringComparison.Ordinal);
        var fromEnvironment = Assert.Throws<DatasetNotFoundException>(() => FashionMnist.ResolveFolder(null, missing, FashionMnist.DebianFolder));
        Assert.Contains($"$FLEETLEARN_DATA is '{missing}'", fromEnvironment.Message, StringComparison.Ordinal);
        Assert.Equal(FashionMnist.DebianFolder, FashionMnist.ResolveFolder(null, null, FashionMnist.DebianFolder));
        Assert.Equal(FashionMnist.DebianFolder, FashionMnist.ResolveFolder(FashionMnist.DebianFolder, missing, missing));
    }

    [Fact]
    public void Load_LabelsAndImagesDisagree_ClearError()
    {
        var dir = Directory.CreateTempSubdirectory("fleetlearn-idx-");
        try
        {
            File.WriteAllBytes(Path.Combine(dir.FullName, "x-images-idx3-ubyte"), [0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 1, 5, 6]);
            File.WriteAllBytes(Path.Combine(dir.FullName, "x-labels-idx1-ubyte"), [0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3]);
            var e = Assert.Throws<IdxFormatException>(() => FashionMnist.Load(dir.FullName, "x", "x"));
            Assert.Contains("holds 2 images but", e.Message, StringComparison.Ordinal);
            Assert.Contains("holds 3 labels", e.Message, StringComparison.Ordinal);
        }
        finally
        {
            dir.Delete(true);
        }
    }
}
