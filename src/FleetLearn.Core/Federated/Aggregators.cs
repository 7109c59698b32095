using FleetLearn.Core.Numerics;

namespace FleetLearn.Core.Federated;

/// <summary>
/// Streaming weighted mean Σ wₖΔₖ / Σ wₖ: one float accumulator, so memory is one model size
/// whatever the cohort size. Optionally bounds each update's L2 norm first (Sun et al. 2019).
/// </summary>
public sealed class WeightedMeanAggregator(int dimension, double normBound = double.PositiveInfinity) : IUpdateAggregator
{
    private readonly float[] _sum = new float[dimension];

    public bool IsStreaming => true;

    public int Count { get; private set; }

    public double TotalWeight { get; private set; }

    public void Add(ReadOnlySpan<float> delta, double weight)
    {
        if (delta.Length != _sum.Length)
            throw new ArgumentException($"Update has {delta.Length} values; the model has {_sum.Length}.", nameof(delta));
        if (!(weight > 0) || !double.IsFinite(weight))
            throw new ArgumentOutOfRangeException(nameof(weight), weight, "Update weight must be a positive finite number.");
        double scale = weight;
        if (double.IsFinite(normBound))
        {
            double norm = VectorMath.Norm(delta);
            if (norm > normBound) scale *= normBound / norm;
        }
        VectorMath.Axpy((float)scale, delta, _sum);
        Count++;
        TotalWeight += weight;
    }

    /// <summary><see cref="Add(ReadOnlySpan{float}, double)"/> straight from the segments the update arrived in: no copy.</summary>
    public void Add(in FloatSegments delta, double weight)
    {
        if (delta.Count != _sum.Length)
            throw new ArgumentException($"Update has {delta.Count} values; the model has {_sum.Length}.", nameof(delta));
        if (!(weight > 0) || !double.IsFinite(weight))
            throw new ArgumentOutOfRangeException(nameof(weight), weight, "Update weight must be a positive finite number.");
        double scale = weight;
        if (double.IsFinite(normBound))
        {
            // The same bits as VectorMath.Norm of the joined array (SquaresAccumulator), so that a replayed journal (one
            // array) scales and folds bit for bit what the live round folded from segments.
            double norm = Math.Sqrt(delta.SumOfSquares());
            if (norm > normBound) scale *= normBound / norm;
        }
        delta.Axpy((float)scale, _sum);
        Count++;
        TotalWeight += weight;
    }

    public void AddMany(ReadOnlySpan<ReadOnlyMemory<float>> deltas, ReadOnlySpan<double> weights)
    {
        if (deltas.Length != weights.Length) throw new ArgumentException("One weight per update is required.");
        if (double.IsFinite(normBound))
        {
            for (int i = 0; i < deltas.Length; i++) Add(deltas[i].Span, weights[i]);
            return;
        }
        Span<float> scales = deltas.Length <= 64 ? stackalloc float[deltas.Length] : new float[deltas.Length];
        for (int i = 0; i < deltas.Length; i++)
        {
            if (deltas[i].Length != _sum.Length)
                throw new ArgumentException($"Update {i} has {deltas[i].Length} values; the model has {_sum.Length}.", nameof(deltas));
            if (!(weights[i] > 0) || !double.IsFinite(weights[i]))
                throw new ArgumentOutOfRangeException(nameof(weights), weights[i], "Update weight must be a positive finite number.");
            scales[i] = (float)weights[i];
        }
        VectorMath.AxpyMany(scales, deltas, _sum);
        for (int i = 0; i < deltas.Length; i++)
        {
            Count++;
            TotalWeight += weights[i];
        }
    }

    public void Complete(Span<float> combined)
    {
        if (Count == 0) throw new InvalidOperationException("No update was aggregated this round.");
        _sum.CopyTo(combined);
        VectorMath.Scale(combined, (float)(1.0 / TotalWeight));
    }
}

/// <summary>
/// Coordinate-wise median or β-trimmed mean (Yin et al. 2018). Both need every update's value
/// at each coordinate, so this aggregator buffers the cohort: memory O(cohort × model). Use it
/// for robustness experiments, not for large cohorts. Weights are ignored, as in the paper.
/// </summary>
public sealed class CoordinateWiseAggregator : BufferingAggregator
{
    private readonly double _trim;

    /// <summary><paramref name="trim"/> = β ∈ [0, 0.5): fraction cut from each end; <c>null</c> = median.</summary>
    public CoordinateWiseAggregator(int dimension, double? trim) : base(dimension)
    {
        _trim = trim ?? -1;
    }

    public override void Complete(Span<float> combined)
    {
        int n = Updates.Count;
        if (n == 0) throw new InvalidOperationException("No update was aggregated this round.");
        var column = new float[n];
        int cut = _trim < 0 ? 0 : (int)Math.Floor(_trim * n);
        if (_trim >= 0 && n - 2 * cut < 1) cut = (n - 1) / 2;
        for (int j = 0; j < Dimension; j++)
        {
            for (int k = 0; k < n; k++) column[k] = Updates[k][j];
            Array.Sort(column);
            if (_trim < 0)
            {
                combined[j] = n % 2 == 1 ? column[n / 2] : 0.5f * (column[n / 2 - 1] + column[n / 2]);
            }
            else
            {
                double s = 0;
                for (int k = cut; k < n - cut; k++) s += column[k];
                combined[j] = (float)(s / (n - 2 * cut));
            }
        }
    }
}

/// <summary>
/// An aggregator that must see every update before it can combine them (robust rules): buffers the cohort, memory
/// O(cohort × model).
/// </summary>
public abstract class BufferingAggregator(int dimension) : IUpdateAggregator
{
    /// <summary>Length of every update.</summary>
    protected int Dimension { get; } = dimension;

    /// <summary>The updates so far, in the order they were added.</summary>
    protected List<float[]> Updates { get; } = [];

    /// <inheritdoc/>
    public bool IsStreaming => false;

    /// <inheritdoc/>
    public int Count => Updates.Count;

    /// <inheritdoc/>
    public double TotalWeight { get; private set; }

    /// <inheritdoc/>
    public void Add(ReadOnlySpan<float> delta, double weight)
    {
        if (delta.Length != Dimension)
            throw new ArgumentException($"Update has {delta.Length} values; the model has {Dimension}.", nameof(delta));
        Updates.Add(delta.ToArray());
        TotalWeight += weight;
    }

    /// <inheritdoc/>
    public abstract void Complete(Span<float> combined);
}
