using FleetLearn.Core.Privacy;
using FleetLearn.Core.Training;

namespace FleetLearn.Perception.Onnx;

/// <summary>Noise mechanism for a privately reported accuracy.</summary>
public enum AccuracyNoise
{
    /// <summary>Discrete Laplace (two-sided geometric) noise on the correct count, scale 1/ε: pure ε-DP.</summary>
    Laplace,

    /// <summary>Discrete Gaussian noise on the correct count, σ = √(2 ln(1.25/δ))/ε: (ε, δ)-DP for ε ≤ 1 (Dwork and Roth 2014, Theorem A.1; CKS 2020).</summary>
    Gaussian,
}

/// <summary>
/// Differential privacy for the reported accuracy. The unit is one hold-out example (replace-one adjacency): the
/// accuracy over n examples changes by at most Δ = 1/n when one example changes.
/// </summary>
public sealed record AccuracyPrivacy
{
    /// <summary>Creates validated settings.</summary>
    public AccuracyPrivacy(AccuracyNoise mechanism, double epsilon, double delta = 1e-5)
    {
        if (!(epsilon > 0) || !double.IsFinite(epsilon)) throw new ArgumentOutOfRangeException(nameof(epsilon), epsilon, "ε must be a positive finite number.");
        if (mechanism == AccuracyNoise.Gaussian)
        {
            if (epsilon > 1) throw new ArgumentOutOfRangeException(nameof(epsilon), epsilon, "The classic Gaussian mechanism's calibration holds for ε ≤ 1; use Laplace for larger ε.");
            if (!(delta > 0 && delta < 1)) throw new ArgumentOutOfRangeException(nameof(delta), delta, "δ must be within (0, 1).");
        }
        Mechanism = mechanism;
        Epsilon = epsilon;
        Delta = mechanism == AccuracyNoise.Gaussian ? delta : 0;
    }

    /// <summary>Laplace or Gaussian.</summary>
    public AccuracyNoise Mechanism { get; }

    /// <summary>ε spent by one report.</summary>
    public double Epsilon { get; }

    /// <summary>δ (0 for Laplace).</summary>
    public double Delta { get; }

    /// <summary>The ledger charge of one report (<see cref="PrivateCount"/>; release id <see cref="PrivateCount.ReleaseId"/>).</summary>
    public PrivacyCharge Charge => Mechanism == AccuracyNoise.Laplace ? PrivateCount.LaplaceCharge(Epsilon) : PrivateCount.GaussianCharge(CountStdDev);

    /// <summary>σ of the discrete Gaussian on the count (sensitivity 1).</summary>
    private double CountStdDev => Math.Sqrt(2 * Math.Log(1.25 / Delta)) / Epsilon;

    /// <summary>Laplace scale b or Gaussian σ for an accuracy over <paramref name="count"/> examples (the count's noise divided by n).</summary>
    public double NoiseScale(int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(count);
        double sensitivity = 1.0 / count;
        return Mechanism == AccuracyNoise.Laplace
            ? sensitivity / Epsilon
            : sensitivity * Math.Sqrt(2 * Math.Log(1.25 / Delta)) / Epsilon;
    }
}

/// <summary>An on-vehicle evaluation: the true accuracy (stays on the vehicle) and the one to report.</summary>
/// <param name="Count">Hold-out examples.</param>
/// <param name="Correct">Examples whose highest-scoring class is the label.</param>
/// <param name="Accuracy">Correct / Count. Not private: report <paramref name="ReportedAccuracy"/>.</param>
/// <param name="ReportedAccuracy">Accuracy plus DP noise, clamped to [0, 1] (post-processing); equals Accuracy without privacy.</param>
/// <param name="Privacy">The mechanism used, or null.</param>
/// <param name="NoiseScale">Laplace b or Gaussian σ (0 without privacy).</param>
public sealed record OnnxEvaluation(int Count, int Correct, double Accuracy, double ReportedAccuracy, AccuracyPrivacy? Privacy, double NoiseScale);

/// <summary>
/// Runs a classifier (an exported global model, on features or on frames) through ONNX Runtime on labelled hold-out
/// rows and reports accuracy, optionally with differential privacy on the reported figure.
/// </summary>
public static class OnnxEvaluator
{
    /// <summary>Evaluates on a labelled dataset whose rows are the classifier's input rows.</summary>
    public static OnnxEvaluation Evaluate(OnnxModel classifier, LabeledData holdout, AccuracyPrivacy? privacy = null, INoiseSource? noise = null)
    {
        ArgumentNullException.ThrowIfNull(holdout);
        return Evaluate(classifier, holdout.Features, holdout.Labels, privacy, noise);
    }

    /// <summary>Evaluates on row-major input rows and their labels. Ties in the argmax go to the lowest class, as in the trainers.</summary>
    /// <param name="classifier">A model whose output row is one score per class (probabilities or logits).</param>
    /// <param name="rows">Input rows, <see cref="OnnxModel.RowSize"/> floats each.</param>
    /// <param name="labels">One label per row.</param>
    /// <param name="privacy">DP on the reported accuracy, or null.</param>
    /// <param name="noise">Noise source; default the cryptographically secure one (a seeded source only for tests).</param>
    public static OnnxEvaluation Evaluate(OnnxModel classifier, ReadOnlySpan<float> rows, ReadOnlySpan<byte> labels, AccuracyPrivacy? privacy = null, INoiseSource? noise = null)
    {
        ArgumentNullException.ThrowIfNull(classifier);
        int count = labels.Length;
        if (count == 0) throw new ArgumentException("The hold-out set is empty.", nameof(labels));
        if (rows.Length != (long)count * classifier.RowSize)
            throw new ArgumentException($"{count} labels need {(long)count * classifier.RowSize} input values of rows [{string.Join("x", classifier.RowShape)}]; got {rows.Length}.", nameof(rows));
        int classes = classifier.OutputSize;
        if (classes < 2) throw new ArgumentException($"'{classifier.Name}' output '{classifier.OutputName}' has {classes} value per row; a classifier gives one score per class.", nameof(classifier));
        int chunk = Math.Max(classifier.BatchSize, 1);
        var scores = new float[chunk * classes];
        int correct = 0;
        for (int done = 0; done < count; done += chunk)
        {
            int n = Math.Min(chunk, count - done);
            classifier.Run(rows.Slice(done * classifier.RowSize, n * classifier.RowSize), n, scores);
            for (int i = 0; i < n; i++)
            {
                var z = scores.AsSpan(i * classes, classes);
                int best = 0;
                for (int c = 1; c < classes; c++)
                    if (z[c] > z[best]) best = c;
                if (labels[done + i] >= classes)
                    throw new ArgumentException($"Label {labels[done + i]} at row {done + i} is not below the model's {classes} classes.", nameof(labels));
                if (best == labels[done + i]) correct++;
            }
        }
        double accuracy = correct / (double)count;
        if (privacy is null) return new OnnxEvaluation(count, correct, accuracy, accuracy, null, 0);
        noise ??= new SecureNoiseSource();
        double scale = privacy.NoiseScale(count);
        // Integer noise on the integer count, then clamping (post-processing): no floating-point draw is released.
        long noisy = privacy.Mechanism == AccuracyNoise.Laplace
            ? PrivateCount.AddDiscreteLaplace(correct, privacy.Epsilon, noise)
            : PrivateCount.AddDiscreteGaussian(correct, scale * count, noise);
        return new OnnxEvaluation(count, correct, accuracy, Math.Clamp(noisy, 0, count) / (double)count, privacy, scale);
    }

    /// <summary>A standard Laplace draw (scale 1) by inversion of a uniform.</summary>
    internal static double Laplace(INoiseSource noise)
    {
        double u;
        do
        {
            u = noise.NextUniform();
        }
        while (u == 0); // u ∈ (0, 1): the inversion below stays finite
        double x = u - 0.5;
        return -Math.Sign(x) * Math.Log(1 - 2 * Math.Abs(x));
    }
}
