namespace FleetLearn.Core.Federated.Strategies;

/// <summary>
/// FedAvg (McMahan et al. 2017): the sample-weighted mean of the updates, applied with server
/// learning rate η (default 1: the new model is the weighted mean of the vehicles' models).
/// </summary>
[StrategyName("fedavg", "fedavg")]
public sealed class FedAvg(StrategyArgs args) : IFederatedStrategy
{
    public string Name => "fedavg";

    public float ProximalMu => 0;

    public float ServerLearningRate { get; } = args.ServerLearningRate ?? 1f;

    public IUpdateAggregator CreateAggregator(int dimension) => new WeightedMeanAggregator(dimension);

    public void ApplyUpdate(Span<float> global, ReadOnlySpan<float> combined) =>
        Numerics.VectorMath.Axpy(ServerLearningRate, combined, global);
}
