using FleetLearn.Core.Training;

namespace FleetLearn.Perception.Datasets;

/// <summary>Thrown when the dataset files cannot be found; the message says where to put them.</summary>
public sealed class DatasetNotFoundException(string message) : Exception(message);

/// <summary>
/// Fashion-MNIST (Xiao et al. 2017): 60,000 training and 10,000 test images of 28×28 grey pixels in
/// 10 classes, read from IDX gzip files. Pixels are scaled to [0, 1].
/// </summary>
public static class FashionMnist
{
    /// <summary>Environment variable that overrides the data folder.</summary>
    public const string DataVariable = "FLEETLEARN_DATA";

    /// <summary>Where Debian's <c>dataset-fashion-mnist</c> package installs the files.</summary>
    public const string DebianFolder = "/usr/share/datasets/fashion-mnist";

    /// <summary>Class names in label order.</summary>
    public static IReadOnlyList<string> ClassNames { get; } =
        ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

    /// <summary>Image side in pixels.</summary>
    public const int Side = 28;

    /// <summary>
    /// Finds the folder: <paramref name="folder"/> (--data) when given, else <c>$FLEETLEARN_DATA</c> when set, else the
    /// Debian folder. An explicit folder is used or refused, never passed over for another: a
    /// <see cref="DatasetNotFoundException"/> names it (and the package) when it does not hold the files.
    /// </summary>
    public static string ResolveFolder(string? folder = null) =>
        ResolveFolder(folder, Environment.GetEnvironmentVariable(DataVariable), DebianFolder);

    internal static string ResolveFolder(string? folder, string? environmentFolder, string debianFolder)
    {
        const string Files = "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz";
        if (!string.IsNullOrWhiteSpace(folder))
        {
            if (FindFile(folder, "train-images-idx3-ubyte") is not null) return folder;
            throw new DatasetNotFoundException(
                $"--data '{folder}': {(Directory.Exists(folder) ? "the folder does not hold" : "no such folder; expected a folder holding")} Fashion-MNIST ({Files}). " +
                $"Omit --data to use ${DataVariable} or {debianFolder} (apt-get install -y dataset-fashion-mnist).");
        }
        if (!string.IsNullOrWhiteSpace(environmentFolder))
        {
            if (FindFile(environmentFolder, "train-images-idx3-ubyte") is not null) return environmentFolder;
            throw new DatasetNotFoundException(
                $"${DataVariable} is '{environmentFolder}', which {(Directory.Exists(environmentFolder) ? "does not hold" : "does not exist; expected a folder holding")} Fashion-MNIST ({Files}). " +
                $"Unset it to use {debianFolder} (apt-get install -y dataset-fashion-mnist).");
        }
        if (FindFile(debianFolder, "train-images-idx3-ubyte") is not null) return debianFolder;
        throw new DatasetNotFoundException(
            $"Fashion-MNIST not found in '{debianFolder}'. " +
            $"Install it with 'apt-get install -y dataset-fashion-mnist' (files go to {DebianFolder}), " +
            $"or set ${DataVariable} (or pass --data) to a folder holding {Files}.");
    }

    /// <summary>Loads the 60,000-image training split.</summary>
    public static LabeledData LoadTrain(string? folder = null) => Load(ResolveFolder(folder), "train", "fashion-mnist/train");

    /// <summary>Loads the 10,000-image test split.</summary>
    public static LabeledData LoadTest(string? folder = null) => Load(ResolveFolder(folder), "t10k", "fashion-mnist/test");

    /// <summary>Loads one split from a folder holding <c>{prefix}-images-idx3-ubyte[.gz]</c> and labels.</summary>
    public static LabeledData Load(string folder, string prefix, string name)
    {
        var imagesPath = FindFile(folder, $"{prefix}-images-idx3-ubyte")
            ?? throw new DatasetNotFoundException($"'{folder}' has no {prefix}-images-idx3-ubyte(.gz).");
        var labelsPath = FindFile(folder, $"{prefix}-labels-idx1-ubyte")
            ?? throw new DatasetNotFoundException($"'{folder}' has no {prefix}-labels-idx1-ubyte(.gz).");
        var images = IdxReader.ReadUBytes(imagesPath);
        var labels = IdxReader.ReadUBytes(labelsPath);
        if (images.Shape.Length != 3)
            throw new IdxFormatException($"{imagesPath}: images must have 3 dimensions, found {images.Shape.Length}.");
        if (labels.Shape.Length != 1)
            throw new IdxFormatException($"{labelsPath}: labels must have 1 dimension, found {labels.Shape.Length}.");
        if (images.Shape[0] != labels.Shape[0])
            throw new IdxFormatException($"{imagesPath} holds {images.Shape[0]} images but {labelsPath} holds {labels.Shape[0]} labels.");
        int featureSize = images.Shape[1] * images.Shape[2];
        var features = new float[images.Data.Length];
        const float scale = 1f / 255f;
        for (int i = 0; i < features.Length; i++) features[i] = images.Data[i] * scale;
        for (int i = 0; i < labels.Data.Length; i++)
        {
            if (labels.Data[i] > 9)
                throw new IdxFormatException($"{labelsPath}: label {labels.Data[i]} at index {i} is not a Fashion-MNIST class (0..9).");
        }
        return new LabeledData(features, labels.Data, featureSize, 10, name);
    }

    private static string? FindFile(string folder, string stem)
    {
        foreach (var candidate in new[] { Path.Combine(folder, stem + ".gz"), Path.Combine(folder, stem) })
        {
            if (File.Exists(candidate)) return candidate;
        }
        return null;
    }
}
