using FleetLearn.Core.Privacy;

namespace FleetLearn.Simulation;

/// <summary>
/// Differential privacy of a simulated run (DP-FedAvg, McMahan et al. 2018): each accepted update is
/// clipped to L2 norm C and Gaussian noise of multiplier σ protects the sum, added by the
/// aggregator (<see cref="NoiseMode.Central"/>) or in shares by the vehicles (<see cref="NoiseMode.Distributed"/>).
/// </summary>
/// <param name="Mode">Who adds the noise.</param>
/// <param name="ClipNorm">C, or the starting C when <paramref name="AdaptiveClip"/> is on.</param>
/// <param name="AdaptiveClip">Track the <paramref name="TargetQuantile"/> of update norms (Andrew et al. 2021).</param>
/// <param name="NoiseMultiplier">σ: the sum carries N(0, σ²C²) per coordinate.</param>
/// <param name="Delta">δ of the reported (ε, δ).</param>
/// <param name="EpsilonBudget">Per-vehicle budget ε_max: a vehicle whose next participation would exceed it declines.</param>
/// <param name="TargetQuantile">γ of adaptive clipping.</param>
/// <param name="ClipLearningRate">η_C of adaptive clipping.</param>
public sealed record PrivacySettings(
    NoiseMode Mode,
    double ClipNorm = 1.0,
    bool AdaptiveClip = false,
    double NoiseMultiplier = 1.0,
    double Delta = 1e-5,
    double? EpsilonBudget = null,
    double TargetQuantile = 0.5,
    double ClipLearningRate = 0.2)
{
    /// <summary>Throws when a value is out of range.</summary>
    public void Validate()
    {
        if (!(ClipNorm > 0) || double.IsInfinity(ClipNorm)) throw new ArgumentException("--clip must be a positive number or 'adaptive'.");
        if (!(NoiseMultiplier > 0) || double.IsInfinity(NoiseMultiplier)) throw new ArgumentException("--noise-multiplier must be positive when DP is on.");
        if (!(Delta > 0 && Delta < 1)) throw new ArgumentException("--delta must be within (0, 1).");
        if (EpsilonBudget is { } b && !(b > 0)) throw new ArgumentException("--epsilon-budget must be positive.");
        if (!(TargetQuantile > 0 && TargetQuantile < 1)) throw new ArgumentException("The clip quantile must be within (0, 1).");
    }
}
