namespace FleetLearn.Core.Privacy;

/// <summary>
/// Adaptive clipping (Andrew, Thakkar, McMahan, Ramaswamy 2021, "Differentially Private Learning with
/// Adaptive Clipping"): the clip norm follows a target quantile γ of the update norms with the geometric
/// update C ← C·exp(−η_C(b̄ − γ)), where b̄ is the noised fraction of vehicles whose update norm was ≤ C.
/// </summary>
/// <remarks>
/// <para>Each vehicle reports b_i = 1[‖Δ_i‖ ≤ C] (pre-clip norm, from <see cref="L2Clipping.Clip"/>); the
/// aggregator releases b̄ = (Σ b_i + N(0, σ_b²)) / m with m the planned (public) cohort size, never the
/// data-dependent count. The paper's defaults: γ = 0.5, η_C = 0.2, σ_b = m/20.</para>
/// <para>Accounting (the paper's Theorem 1): releasing the noised count costs privacy too. Centering
/// b_i − ½ gives the count sensitivity ½, so the pair (update with multiplier σ_Δ, count with std σ_b) is
/// one Gaussian mechanism with σ^−2 = σ_Δ^−2 + (2σ_b)^−2. To keep an accounted σ, the update must use
/// σ_Δ = (σ^−2 − (2σ_b)^−2)^−1/2 (<see cref="UpdateNoiseMultiplier"/>), slightly more noise.</para>
/// </remarks>
public sealed class AdaptiveClipping
{
    /// <summary>Creates the clip-norm state.</summary>
    /// <param name="initialClipNorm">C₀ &gt; 0.</param>
    /// <param name="targetQuantile">γ ∈ [0, 1]: the fraction of updates that should end up unclipped.</param>
    /// <param name="learningRate">η_C &gt; 0 of the geometric update.</param>
    /// <param name="countNoiseStdDev">σ_b ≥ 0: noise on the unclipped count (0 only without DP).</param>
    public AdaptiveClipping(double initialClipNorm, double targetQuantile = 0.5, double learningRate = 0.2, double countNoiseStdDev = 0)
    {
        if (!(initialClipNorm > 0) || double.IsInfinity(initialClipNorm)) throw new ArgumentOutOfRangeException(nameof(initialClipNorm), initialClipNorm, "C₀ must be a positive finite number.");
        if (!(targetQuantile >= 0 && targetQuantile <= 1)) throw new ArgumentOutOfRangeException(nameof(targetQuantile), targetQuantile, "γ must lie in [0, 1].");
        if (!(learningRate > 0) || double.IsInfinity(learningRate)) throw new ArgumentOutOfRangeException(nameof(learningRate), learningRate, "η_C must be a positive finite number.");
        if (!(countNoiseStdDev >= 0) || double.IsInfinity(countNoiseStdDev)) throw new ArgumentOutOfRangeException(nameof(countNoiseStdDev), countNoiseStdDev, "σ_b must be finite and ≥ 0.");
        ClipNorm = initialClipNorm;
        TargetQuantile = targetQuantile;
        LearningRate = learningRate;
        CountNoiseStdDev = countNoiseStdDev;
    }

    /// <summary>The current clip norm C.</summary>
    public double ClipNorm { get; private set; }

    /// <summary>γ: target quantile of update norms.</summary>
    public double TargetQuantile { get; }

    /// <summary>η_C: learning rate of the geometric update.</summary>
    public double LearningRate { get; }

    /// <summary>σ_b: standard deviation of the noise on the unclipped count.</summary>
    public double CountNoiseStdDev { get; }

    /// <summary>
    /// Each vehicle's discrete Gaussian share on its unclipped bit: σ_b/√m_min when <paramref name="pipeline"/> sends the bit
    /// inside a secure sum under the distributed discrete Gaussian (the aggregator then learns the count only with at least
    /// N_Z(0, σ_b²) on it, issue 13 item 9), else 0 (the aggregator noises the count itself with <see cref="Update"/>).
    /// </summary>
    public double VehicleBitShare(Compression.UpdatePipeline pipeline, int minNoiseShares)
    {
        ArgumentNullException.ThrowIfNull(pipeline);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(minNoiseShares);
        return pipeline.IsDiscreteGaussian && pipeline.Options.SendUnclippedBit ? CountNoiseStdDev / Math.Sqrt(minNoiseShares) : 0;
    }

    /// <summary>A vehicle's bit b_i = 1[‖Δ_i‖ ≤ C].</summary>
    public static bool IsUnclipped(double updateNorm, double clipNorm) => updateNorm <= clipNorm;

    /// <summary>
    /// Applies one round: b̄ = (unclipped + N_Z(0, σ_b²))/m, C ← C·exp(−η_C(b̄ − γ)); returns the noised fraction b̄.
    /// </summary>
    /// <param name="unclippedCount">Σ b_i over the round's contributions.</param>
    /// <param name="plannedCohortSize">m: the public, planned cohort size used as denominator.</param>
    /// <param name="source">Noise for the count (default: <see cref="SecureNoiseSource"/>).</param>
    public double Update(int unclippedCount, int plannedCohortSize, INoiseSource? source = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(unclippedCount);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(plannedCohortSize);
        // The count is an integer: exact discrete Gaussian noise on it (Canonne, Kamath & Steinke 2020), not floating point.
        long noise = CountNoiseStdDev > 0 ? DiscreteGaussian.Sample(CountNoiseStdDev * CountNoiseStdDev, source ?? new SecureNoiseSource()) : 0;
        return UpdateWithNoisedCount(unclippedCount + noise, plannedCohortSize);
    }

    /// <summary>
    /// Applies one round whose count arrived already noised (each vehicle added its discrete Gaussian share σ_b/√m_min on its
    /// bit under secure aggregation, so the sum carries at least N_Z(0, σ_b²)); the count may be negative. Returns b̄.
    /// </summary>
    public double UpdateWithNoisedCount(long noisedCount, int plannedCohortSize)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(plannedCohortSize);
        double fraction = noisedCount / (double)plannedCohortSize;
        ClipNorm = NextClipNorm(ClipNorm, fraction, TargetQuantile, LearningRate);
        return fraction;
    }

    /// <summary>The geometric update C·exp(−η_C(b̄ − γ)).</summary>
    public static double NextClipNorm(double clipNorm, double noisedFraction, double targetQuantile, double learningRate)
        => clipNorm * Math.Exp(-learningRate * (noisedFraction - targetQuantile));

    /// <summary>
    /// σ_Δ = (σ^−2 − (2σ_b)^−2)^−1/2: the update's noise multiplier that keeps the combined (update, count)
    /// release at the accounted multiplier σ (Andrew et al. 2021, Thm 1). Requires σ_b &gt; σ/2.
    /// </summary>
    public static double UpdateNoiseMultiplier(double noiseMultiplier, double countNoiseStdDev)
    {
        if (!(noiseMultiplier > 0) || double.IsInfinity(noiseMultiplier)) throw new ArgumentOutOfRangeException(nameof(noiseMultiplier), noiseMultiplier, "σ must be a positive finite number.");
        if (double.IsPositiveInfinity(countNoiseStdDev)) return noiseMultiplier;
        if (!(2 * countNoiseStdDev > noiseMultiplier))
            throw new ArgumentOutOfRangeException(nameof(countNoiseStdDev), countNoiseStdDev, $"σ_b must exceed σ/2 = {noiseMultiplier / 2}: the count alone would spend more than the whole budget.");
        double inv = 1 / (noiseMultiplier * noiseMultiplier) - 1 / (4 * countNoiseStdDev * countNoiseStdDev);
        return 1 / Math.Sqrt(inv);
    }
}
