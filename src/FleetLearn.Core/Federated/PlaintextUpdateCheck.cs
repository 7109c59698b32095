using FleetLearn.Core.Numerics;

namespace FleetLearn.Core.Federated;

/// <summary>Why a plaintext update was refused, or <see cref="Accepted"/>.</summary>
public enum UpdateVerdict
{
    /// <summary>Finite and within the norm bound: safe to fold.</summary>
    Accepted,

    /// <summary>A NaN or ±∞ value.</summary>
    NonFinite,

    /// <summary>‖Δ‖₂ over the bound C.</summary>
    NormExceeded,
}

/// <summary>The outcome of <see cref="PlaintextUpdateCheck.Check(ReadOnlySpan{float}, double)"/>: the verdict, the update's L2 norm (computed in double) and a message.</summary>
public readonly record struct UpdateCheck(UpdateVerdict Verdict, double Norm, string? Reason)
{
    /// <summary>True when the update may be folded.</summary>
    public bool IsAccepted => Verdict == UpdateVerdict.Accepted;
}

/// <summary>
/// The aggregator's check of a decoded plaintext update before it is folded: every value finite and ‖Δ‖₂ ≤ C. The norm is
/// accumulated in double (a square of 3.4·10^38 is 10^77, far inside double's range), so even the largest floats are
/// measured, not overflowed; with <see cref="SumIsSafe"/> holding for the round, folding accepted updates cannot overflow
/// the float accumulator either, so a hostile update is a rejected message and never a diverged round.
/// </summary>
public static class PlaintextUpdateCheck
{
    /// <summary>Largest bound C accepted (far above any real update, far below float's range).</summary>
    public const double MaxBound = 1e9;

    /// <summary>Checks <paramref name="delta"/> against the L2 bound <paramref name="maxNorm"/>.</summary>
    public static UpdateCheck Check(ReadOnlySpan<float> delta, double maxNorm)
    {
        if (!(maxNorm > 0) || maxNorm > MaxBound) throw new ArgumentOutOfRangeException(nameof(maxNorm), maxNorm, $"The norm bound must be within (0, {MaxBound}].");
        if (!VectorMath.AllFinite(delta)) return new UpdateCheck(UpdateVerdict.NonFinite, double.NaN, "the update holds NaN or ∞");
        double norm = VectorMath.Norm(delta);
        if (norm > maxNorm)
            return new UpdateCheck(UpdateVerdict.NormExceeded, norm, FormattableString.Invariant($"‖Δ‖₂ = {norm:G4} exceeds the bound {maxNorm:G4}"));
        return new UpdateCheck(UpdateVerdict.Accepted, norm, null);
    }

    /// <summary>
    /// Checks an update by its Σx² computed in double (<see cref="FloatSegments.SumOfSquares"/>) against the L2 bound
    /// <paramref name="maxNorm"/>: the sum is finite exactly when every value is, so no second pass over the values is needed.
    /// </summary>
    public static UpdateCheck CheckSumOfSquares(double sumOfSquares, double maxNorm)
    {
        if (!(maxNorm > 0) || maxNorm > MaxBound) throw new ArgumentOutOfRangeException(nameof(maxNorm), maxNorm, $"The norm bound must be within (0, {MaxBound}].");
        if (!double.IsFinite(sumOfSquares)) return new UpdateCheck(UpdateVerdict.NonFinite, double.NaN, "the update holds NaN or ∞");
        double norm = Math.Sqrt(sumOfSquares);
        if (norm > maxNorm)
            return new UpdateCheck(UpdateVerdict.NormExceeded, norm, FormattableString.Invariant($"‖Δ‖₂ = {norm:G4} exceeds the bound {maxNorm:G4}"));
        return new UpdateCheck(UpdateVerdict.Accepted, norm, null);
    }

    /// <summary>
    /// True when <paramref name="updates"/> updates, each of norm ≤ <paramref name="maxNorm"/> and weight ≤
    /// <paramref name="maxWeight"/>, cannot overflow a float weighted sum: every coordinate of Σ wΔ is at most
    /// updates · maxWeight · maxNorm, kept under float.MaxValue / 2^10.
    /// </summary>
    public static bool SumIsSafe(long updates, double maxWeight, double maxNorm) =>
        updates > 0 && maxWeight > 0 && maxNorm > 0 && updates * maxWeight * maxNorm <= float.MaxValue / 1024.0;
}
