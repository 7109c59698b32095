namespace FleetLearn.Cli;

/// <summary>
/// Before a DP run: how the noise on the cohort's average compares with the largest signal a clipped update can carry.
/// </summary>
/// <remarks>
/// The released sum carries N(0, σ²C²) per coordinate, so the average of n updates carries σC/n. A clipped update has
/// norm ≤ C; spread over d coordinates that is at most C/√d each. Signal-to-noise per coordinate per round is therefore
/// at best n / (σ√d). Measured with the 2NN (d = 199,210), distributed DP, σ = 1, C = 1, E = 1, lr 0.1, 10 rounds
/// (`simulate --vehicles 100 --cohort n --rounds 10 --local-epochs 1 --lr 0.1 --dp distributed --clip 1`): n = 10
/// (0.022) ended at accuracy 0.21 and loss 10.1; n = 20 (0.045) at 0.62; n = 30 (0.067) at 0.76; n = 50 (0.112) at 0.78.
/// </remarks>
internal static class DpSignalCheck
{
    /// <summary>Below this the noise swamps the signal (measured above: cohorts at 0.022 ended near chance).</summary>
    public const double Minimum = 0.05;

    /// <summary>n / (σ√d): the best case per-coordinate signal-to-noise ratio of one round's average.</summary>
    public static double Ratio(int cohort, double noiseMultiplier, int dimension) =>
        noiseMultiplier <= 0 ? double.PositiveInfinity : cohort / (noiseMultiplier * Math.Sqrt(dimension));

    /// <summary>The smallest cohort that reaches <paramref name="ratio"/> with this σ and dimension.</summary>
    public static int CohortFor(double ratio, double noiseMultiplier, int dimension) =>
        (int)Math.Ceiling(ratio * noiseMultiplier * Math.Sqrt(dimension));

    /// <summary>A warning line when the ratio is below <see cref="Minimum"/>; null when the run can learn.</summary>
    public static string? Warning(int cohort, double noiseMultiplier, double clip, int dimension, string noiseSetting = "--noise-multiplier")
    {
        double ratio = Ratio(cohort, noiseMultiplier, dimension);
        if (ratio >= Minimum) return null;
        return FormattableString.Invariant($"warning: DP noise will likely swamp the signal: the average of a cohort of {cohort} carries noise σC/n = {noiseMultiplier * clip / cohort:G3} per coordinate ")
            + FormattableString.Invariant($"against at most C/√d = {clip / Math.Sqrt(dimension):G3} of signal (d = {dimension:N0}); signal-to-noise n/(σ√d) = {ratio:F3}, below {Minimum}. ")
            + FormattableString.Invariant($"Runs like this end near chance. Use a cohort of at least {CohortFor(Minimum, noiseMultiplier, dimension)} ({CohortFor(0.1, noiseMultiplier, dimension)} for 0.1), ")
            + $"a smaller {noiseSetting} (less privacy) or a smaller model.";
    }
}
