using FleetLearn.Core.Numerics;

namespace FleetLearn.Core.Privacy;

/// <summary>
/// L2 clipping of a model update, the first step of DP-FedAvg (McMahan et al. 2018, "Learning
/// Differentially Private Recurrent Language Models"): Δ ← Δ·min(1, C/‖Δ‖₂) bounds one vehicle's
/// contribution to the sum by C, which is the sensitivity the Gaussian noise is calibrated to.
/// </summary>
public static class L2Clipping
{
    /// <summary>‖x‖₂, accumulated in double (SIMD) so million-coordinate updates keep full precision.</summary>
    public static double Norm(ReadOnlySpan<float> values) => VectorMath.Norm(values);

    /// <summary>
    /// Scales <paramref name="update"/> in place so that ‖update‖₂ ≤ <paramref name="clipNorm"/>, keeping its
    /// direction; returns the norm before clipping (adaptive clipping needs it).
    /// </summary>
    /// <exception cref="ArgumentException">The update holds NaN or ±∞ (such an update must be rejected, not clipped).</exception>
    public static double Clip(Span<float> update, double clipNorm)
    {
        if (!(clipNorm > 0) || double.IsInfinity(clipNorm))
            throw new ArgumentOutOfRangeException(nameof(clipNorm), clipNorm, "The clipping norm C must be a positive finite number.");
        double norm = Norm(update);
        if (!double.IsFinite(norm))
            throw new ArgumentException("The update contains NaN or infinite values; it cannot be clipped and must be rejected.", nameof(update));
        if (norm <= clipNorm) return norm;
        // Float rounding of the factor and of each product can leave the norm a few 1e-8 above C, so scale with a
        // small margin and re-check: the sensitivity bound ‖Δ‖ ≤ C must hold exactly, not approximately.
        double current = norm;
        do
        {
            Scale(update, (float)(clipNorm / current * (1 - 2e-7)));
            current = Norm(update);
        } while (current > clipNorm);
        return norm;
    }

    /// <summary>Multiplies every element by <paramref name="factor"/> (SIMD).</summary>
    public static void Scale(Span<float> values, float factor) => VectorMath.Scale(values, factor);
}
