namespace FleetLearn.Core.Privacy;

/// <summary>
/// Differentially private counts (a vehicle's number of correct hold-out predictions) with integer noise only: the
/// discrete Laplace / two-sided geometric mechanism or the discrete Gaussian (Canonne, Kamath &amp; Steinke 2020), so no
/// floating-point draw can leak through its low-order bits (Mironov 2012). Sensitivity 1: replacing one example changes
/// the count by at most one.
/// </summary>
/// <remarks>
/// Each report is charged to the vehicle's ledger under its own release id (<see cref="ReleaseId"/>), next to the
/// training rounds: what the ledger then bounds is the privacy of any one example of the vehicle's data (vehicle-level
/// DP of training implies it), not of the vehicle's whole data set — one vehicle's own accuracy cannot be hidden at
/// vehicle level.
/// </remarks>
public static class PrivateCount
{
    /// <summary>ε is used as the rational ⌊ε·2^20⌋/2^20 ≤ ε: never less noise than asked for.</summary>
    public const int EpsilonFractionBits = 20;

    /// <summary>Release ids of evaluation reports start here, above any round number (the ledger keeps one charge per id).</summary>
    public const long EvaluationReleaseBase = 1L << 62;

    /// <summary>count + Z with P(Z = z) ∝ exp(−ε|z|): ε-DP for a count of sensitivity 1.</summary>
    public static long AddDiscreteLaplace(long count, double epsilon, INoiseSource source)
    {
        CheckEpsilon(epsilon);
        ulong numerator = (ulong)Math.Floor(epsilon * (1UL << EpsilonFractionBits));
        if (numerator == 0) throw new ArgumentOutOfRangeException(nameof(epsilon), epsilon, $"ε = {epsilon} is below 2^-{EpsilonFractionBits}.");
        return checked(count + DiscreteGaussian.SampleDiscreteLaplace(numerator, 1UL << EpsilonFractionBits, source));
    }

    /// <summary>count + N_Z(0, σ²): ½(1/σ)²-zCDP for a count of sensitivity 1 (CKS 2020 Thm 4).</summary>
    public static long AddDiscreteGaussian(long count, double stdDev, INoiseSource source)
    {
        if (!(stdDev > 0) || !double.IsFinite(stdDev)) throw new ArgumentOutOfRangeException(nameof(stdDev), stdDev, "σ must be positive and finite.");
        return checked(count + DiscreteGaussian.Sample(stdDev * stdDev, source));
    }

    /// <summary>
    /// The ledger charge of one ε-DP report: ε-DP implies ε²/2-zCDP (Bun &amp; Steinke 2016, Prop. 1.4), i.e. RDP α·ε²/2 at
    /// every order α — exactly the Gaussian mechanism's with noise multiplier 1/ε, at q = 1.
    /// </summary>
    public static PrivacyCharge LaplaceCharge(double epsilon)
    {
        CheckEpsilon(epsilon);
        return PrivacyCharge.Participation(1 / epsilon);
    }

    /// <summary>The ledger charge of one discrete Gaussian report with σ on a sensitivity-1 count: the Gaussian mechanism's at multiplier σ, q = 1.</summary>
    public static PrivacyCharge GaussianCharge(double stdDev) => PrivacyCharge.Participation(stdDev);

    /// <summary>The ledger release id of the evaluation report of round <paramref name="round"/>.</summary>
    public static long ReleaseId(long round)
    {
        if (round < 0 || round >= EvaluationReleaseBase) throw new ArgumentOutOfRangeException(nameof(round), round, "The round must be within [0, 2^62).");
        return EvaluationReleaseBase + round;
    }

    private static void CheckEpsilon(double epsilon)
    {
        if (!(epsilon > 0) || !double.IsFinite(epsilon)) throw new ArgumentOutOfRangeException(nameof(epsilon), epsilon, "ε must be positive and finite.");
    }
}
