namespace FleetLearn.Core.Federated.Strategies;

/// <summary>
/// The adaptive server optimizers of Reddi et al. 2021, "Adaptive Federated Optimization",
/// Algorithm 2, with Δ the weighted mean update: m ← β₁m + (1−β₁)Δ; v updated per variant;
/// w ← w + η·m / (√v + τ). m starts at 0 and v at τ² (the paper's v₋₁ ≥ τ²); no bias correction.
/// Defaults: η = 0.01, β₁ = 0.9, β₂ = 0.99, τ = 10⁻³.
/// </summary>
public abstract class AdaptiveServerOptimizer(StrategyArgs args, string name) : IFederatedStrategy
{
    private float[]? _m;
    private float[]? _v;

    public float Beta1 { get; init; } = 0.9f;

    public float Beta2 { get; init; } = 0.99f;

    public float Tau { get; } = (float)args.Number(name, 1e-3, 1e-9, 1);

    public string Name => FormattableString.Invariant($"{name}:{Tau}");

    public float ProximalMu => 0;

    public float ServerLearningRate { get; } = args.ServerLearningRate ?? 0.01f;

    public IUpdateAggregator CreateAggregator(int dimension) => new WeightedMeanAggregator(dimension);

    /// <summary>Second-moment update for one coordinate.</summary>
    protected abstract float UpdateSecondMoment(float v, float deltaSquared);

    public void ApplyUpdate(Span<float> global, ReadOnlySpan<float> combined)
    {
        if (_m is null || _v is null)
        {
            _m = new float[global.Length];
            _v = new float[global.Length];
            Array.Fill(_v, Tau * Tau);
        }
        for (int i = 0; i < global.Length; i++)
        {
            float d = combined[i];
            _m[i] = Beta1 * _m[i] + (1 - Beta1) * d;
            _v[i] = UpdateSecondMoment(_v[i], d * d);
            global[i] += ServerLearningRate * _m[i] / (MathF.Sqrt(_v[i]) + Tau);
        }
    }
}

/// <summary>FedAdam: v ← β₂v + (1−β₂)Δ². <c>fedadam[:τ]</c>.</summary>
[StrategyName("fedadam", "fedadam[:τ]")]
public sealed class FedAdam(StrategyArgs args) : AdaptiveServerOptimizer(args, "fedadam")
{
    protected override float UpdateSecondMoment(float v, float deltaSquared) => Beta2 * v + (1 - Beta2) * deltaSquared;
}

/// <summary>FedYogi: v ← v − (1−β₂)Δ²·sign(v − Δ²). <c>fedyogi[:τ]</c>.</summary>
[StrategyName("fedyogi", "fedyogi[:τ]")]
public sealed class FedYogi(StrategyArgs args) : AdaptiveServerOptimizer(args, "fedyogi")
{
    protected override float UpdateSecondMoment(float v, float deltaSquared) => v - (1 - Beta2) * deltaSquared * MathF.Sign(v - deltaSquared);
}

/// <summary>FedAdagrad: v ← v + Δ². <c>fedadagrad[:τ]</c>.</summary>
[StrategyName("fedadagrad", "fedadagrad[:τ]")]
public sealed class FedAdagrad(StrategyArgs args) : AdaptiveServerOptimizer(args, "fedadagrad")
{
    protected override float UpdateSecondMoment(float v, float deltaSquared) => v + deltaSquared;
}
