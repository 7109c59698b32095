namespace FleetLearn.Core.Training;

/// <summary>
/// A labelled dataset held as one row-major <c>Count × FeatureSize</c> float matrix and one label
/// per row. Datasets are immutable once built so backends may cache device copies of them.
/// </summary>
public sealed class LabeledData
{
    /// <summary>Wraps existing arrays (not copied).</summary>
    public LabeledData(float[] features, byte[] labels, int featureSize, int classCount, string name = "data")
    {
        ArgumentNullException.ThrowIfNull(features);
        ArgumentNullException.ThrowIfNull(labels);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(featureSize);
        if (classCount < 2 || classCount > 256)
            throw new ArgumentOutOfRangeException(nameof(classCount), classCount, "Class count must be within 2..256.");
        if ((long)labels.Length * featureSize != features.Length)
            throw new ArgumentException($"{features.Length} feature values do not make {labels.Length} rows of {featureSize}.", nameof(features));
        for (int i = 0; i < labels.Length; i++)
        {
            if (labels[i] >= classCount)
                throw new ArgumentException($"Label {labels[i]} at row {i} is not below the class count {classCount}.", nameof(labels));
        }
        Features = features;
        Labels = labels;
        FeatureSize = featureSize;
        ClassCount = classCount;
        Name = name;
    }

    /// <summary>Row-major features, <see cref="Count"/> × <see cref="FeatureSize"/>.</summary>
    public float[] Features { get; }

    /// <summary>Class label of each row, each below <see cref="ClassCount"/>.</summary>
    public byte[] Labels { get; }

    /// <summary>Width of one feature row.</summary>
    public int FeatureSize { get; }

    /// <summary>Number of classes.</summary>
    public int ClassCount { get; }

    /// <summary>Number of rows.</summary>
    public int Count => Labels.Length;

    /// <summary>Human-readable name (e.g. <c>fashion-mnist/train</c>).</summary>
    public string Name { get; }

    /// <summary>Features of row <paramref name="index"/>.</summary>
    public ReadOnlySpan<float> Row(int index) => Features.AsSpan(index * FeatureSize, FeatureSize);

    /// <summary>Copies the first <paramref name="count"/> rows into a new dataset.</summary>
    public LabeledData Take(int count)
    {
        count = Math.Min(count, Count);
        return new LabeledData(Features.AsSpan(0, count * FeatureSize).ToArray(), Labels.AsSpan(0, count).ToArray(), FeatureSize, ClassCount, $"{Name}[:{count}]");
    }

    /// <summary>Number of rows of each label.</summary>
    public int[] LabelHistogram()
    {
        var histogram = new int[ClassCount];
        foreach (var label in Labels) histogram[label]++;
        return histogram;
    }
}
