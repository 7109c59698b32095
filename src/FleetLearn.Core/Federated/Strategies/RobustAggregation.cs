namespace FleetLearn.Core.Federated.Strategies;

/// <summary>
/// Coordinate-wise median of the updates (Yin et al. 2018), robust to a minority of arbitrary
/// updates. Buffers the whole cohort (memory O(cohort × model)): see <see cref="CoordinateWiseAggregator"/>.
/// </summary>
[StrategyName("median", "median")]
public sealed class Median(StrategyArgs args) : IFederatedStrategy
{
    public string Name => "median";

    public float ProximalMu => 0;

    public float ServerLearningRate { get; } = args.ServerLearningRate ?? 1f;

    public IUpdateAggregator CreateAggregator(int dimension) => new CoordinateWiseAggregator(dimension, trim: null);

    public void ApplyUpdate(Span<float> global, ReadOnlySpan<float> combined) =>
        Numerics.VectorMath.Axpy(ServerLearningRate, combined, global);
}

/// <summary>
/// Coordinate-wise β-trimmed mean (Yin et al. 2018): per coordinate, drop the ⌊βn⌋ largest and
/// smallest values and average the rest. Buffers the whole cohort. <c>trimmed:β</c>, default 0.1.
/// </summary>
[StrategyName("trimmed", "trimmed:β")]
public sealed class TrimmedMean(StrategyArgs args) : IFederatedStrategy
{
    public double Beta { get; } = args.Number("trimmed", 0.1, 0, 0.49);

    public string Name => FormattableString.Invariant($"trimmed:{Beta}");

    public float ProximalMu => 0;

    public float ServerLearningRate { get; } = args.ServerLearningRate ?? 1f;

    public IUpdateAggregator CreateAggregator(int dimension) => new CoordinateWiseAggregator(dimension, Beta);

    public void ApplyUpdate(Span<float> global, ReadOnlySpan<float> combined) =>
        Numerics.VectorMath.Axpy(ServerLearningRate, combined, global);
}

/// <summary>
/// Norm bounding (Sun et al. 2019, "Can You Really Backdoor Federated Learning?"): each update is
/// scaled down to L2 norm ≤ M before the weighted mean, so no vehicle can boost its update.
/// Streaming. <c>normbound:M</c>, default M = 1.
/// </summary>
[StrategyName("normbound", "normbound:M")]
public sealed class NormBounding(StrategyArgs args) : IFederatedStrategy
{
    public double Bound { get; } = args.Number("normbound", 1.0, 1e-9, 1e9);

    public string Name => FormattableString.Invariant($"normbound:{Bound}");

    public float ProximalMu => 0;

    public float ServerLearningRate { get; } = args.ServerLearningRate ?? 1f;

    public IUpdateAggregator CreateAggregator(int dimension) => new WeightedMeanAggregator(dimension, Bound);

    public void ApplyUpdate(Span<float> global, ReadOnlySpan<float> combined) =>
        Numerics.VectorMath.Axpy(ServerLearningRate, combined, global);
}

/// <summary>
/// Multi-Krum (Blanchard et al. 2017): averages the n − f updates closest to their neighbours, leaving out up to f
/// outliers. Buffers the whole cohort. <c>multikrum:β</c> with β = f/n, default 0.2.
/// </summary>
[StrategyName("multikrum", "multikrum:β")]
public sealed class MultiKrum(StrategyArgs args) : IFederatedStrategy
{
    public double ByzantineFraction { get; } = args.Number("multikrum", 0.2, 0, 0.49);

    public string Name => FormattableString.Invariant($"multikrum:{ByzantineFraction}");

    public float ProximalMu => 0;

    public float ServerLearningRate { get; } = args.ServerLearningRate ?? 1f;

    public IUpdateAggregator CreateAggregator(int dimension) => new MultiKrumAggregator(dimension, ByzantineFraction);

    public void ApplyUpdate(Span<float> global, ReadOnlySpan<float> combined) =>
        Numerics.VectorMath.Axpy(ServerLearningRate, combined, global);
}
