namespace FleetLearn.Core.Federated.Strategies;

/// <summary>
/// FedAvgM (Hsu et al. 2019): server momentum over the averaged update,
/// v ← β·v + Δ, w ← w + η·v. <c>fedavgm:β</c>, default β = 0.5 and η = 1 (effective step 2Δ at steady state).
/// </summary>
[StrategyName("fedavgm", "fedavgm:β")]
public sealed class FedAvgM(StrategyArgs args) : IFederatedStrategy
{
    private float[]? _velocity;

    public float Momentum { get; } = (float)args.Number("fedavgm", 0.5, 0, 0.999);

    public string Name => FormattableString.Invariant($"fedavgm:{Momentum}");

    public float ProximalMu => 0;

    public float ServerLearningRate { get; } = args.ServerLearningRate ?? 1f;

    public IUpdateAggregator CreateAggregator(int dimension) => new WeightedMeanAggregator(dimension);

    public void ApplyUpdate(Span<float> global, ReadOnlySpan<float> combined)
    {
        _velocity ??= new float[global.Length];
        for (int i = 0; i < global.Length; i++)
        {
            _velocity[i] = Momentum * _velocity[i] + combined[i];
            global[i] += ServerLearningRate * _velocity[i];
        }
    }
}
