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
    /// Finds the folder: <c>$FLEETLEARN_DATA</c> when set, else the Debian folder. Throws
    /// <see cref="DatasetNotFoundException"/> naming both places and the package when neither holds the files.
    /// </summary>
    public static string ResolveFolder(string? folder = null) =>
        ResolveFolder(folder, Environment.GetEnvironmentVariable(DataVariable), DebianFolder);

    internal static string ResolveFolder(string? folder, string? environmentFolder, string debianFolder)
    {
        var candidates = new List<string>();
        if (!string.IsNullOrWhiteSpace(folder)) candidates.Add(folder);
        if (!string.IsNullOrWhiteSpace(environmentFolder)) candidates.Add(environmentFolder);
        candidates.Add(debianFolder);
        foreach (var candidate in candidates)
        {
            if (FindFile(candidate, "train-images-idx3-ubyte") is not null) return candidate;
        }
        throw new DatasetNotFoundException(
            $"Fashion-MNIST not found. Looked in {string.Join(" and ", candidates.Select(c => $"'{c}'"))}. " +
            $"Install it with 'apt-get install -y dataset-fashion-mnist' (files go to {DebianFolder}), " +
            $"or set ${DataVariable} to a folder holding train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, " +
            "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz.");
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
