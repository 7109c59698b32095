namespace FleetLearn.Core.Federated.Strategies;

/// <summary>
/// FedProx (Li et al. 2020): FedAvg whose vehicles minimise F(w) + (μ/2)‖w − w_global‖²,
/// which limits client drift on non-IID data. <c>fedprox:μ</c>, default μ = 0.01.
/// </summary>
[StrategyName("fedprox", "fedprox:μ")]
public sealed class FedProx(StrategyArgs args) : IFederatedStrategy
{
    public float ProximalMu { get; } = (float)args.Number("fedprox", 0.01, 0, 1000);

    public string Name => FormattableString.Invariant($"fedprox:{ProximalMu}");

    public float ServerLearningRate { get; } = args.ServerLearningRate ?? 1f;

    public IUpdateAggregator CreateAggregator(int dimension) => new WeightedMeanAggregator(dimension);

    public void ApplyUpdate(Span<float> global, ReadOnlySpan<float> combined) =>
        Numerics.VectorMath.Axpy(ServerLearningRate, combined, global);
}
