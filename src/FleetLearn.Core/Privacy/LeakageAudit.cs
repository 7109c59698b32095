namespace FleetLearn.Core.Privacy;

/// <summary>
/// Gradient-leakage audit math: the analytic recovery of a dense layer's input from its gradients (Phong et al.
/// 2017; Geiping et al. 2020, "Inverting Gradients"). For y = Wx + b and one example, ∂L/∂W = δ·xᵀ and
/// ∂L/∂b = δ, so every row i with δ_i ≠ 0 is a scaled copy of the input: x = (∂L/∂W)_i / (∂L/∂b)_i.
/// </summary>
/// <remarks>
/// A model update Δ = −η·∇ after one step on one example leaks the same way (the scale cancels). With several
/// examples or steps the rows mix inputs and the recovery degrades; clipping and DP noise are what defend it.
/// </remarks>
public static class LeakageAudit
{
    /// <summary>
    /// Least-squares estimate x̂ = Σ_i δ_i·G_i / Σ_i δ_i² over all rows (G = ∂L/∂W as Out×In row-major, δ = ∂L/∂b):
    /// the x minimizing Σ_i ‖G_i − δ_i x‖², i.e. rows weighted by their bias gradient, robust to rows that are mostly noise.
    /// </summary>
    public static float[] ReconstructInput(ReadOnlySpan<float> weightGradient, ReadOnlySpan<float> biasGradient)
    {
        int inputs = CheckShape(weightGradient, biasGradient);
        var sum = new double[inputs];
        double norm = 0;
        for (int o = 0; o < biasGradient.Length; o++)
        {
            double d = biasGradient[o];
            if (d == 0) continue;
            norm += d * d;
            var row = weightGradient.Slice(o * inputs, inputs);
            for (int i = 0; i < inputs; i++) sum[i] += d * row[i];
        }
        var x = new float[inputs];
        if (norm == 0) return x; // no unit was active: nothing can be read from this layer
        for (int i = 0; i < inputs; i++) x[i] = (float)(sum[i] / norm);
        return x;
    }

    /// <summary>Least-squares input estimate from the slice of a flat update or gradient that holds dense layer <paramref name="layer"/> (<see cref="Model.ModelSpec"/> layout).</summary>
    public static float[] ReconstructInput(ReadOnlySpan<float> flat, Model.ModelSpec spec, int layer = 0)
    {
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentOutOfRangeException.ThrowIfNegative(layer);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(layer, spec.LayerCount);
        if (flat.Length != spec.ParameterCount) throw new ArgumentException($"Expected {spec.ParameterCount} parameters for {spec}, got {flat.Length}.", nameof(flat));
        return ReconstructInput(flat.Slice(spec.WeightOffset(layer), spec.WeightCount(layer)), flat.Slice(spec.BiasOffset(layer), spec.OutputsOf(layer)));
    }

    /// <summary>The single-row estimate x̂ = G_i / δ_i for the row with the largest |δ_i|.</summary>
    public static float[] ReconstructInputFromLargestRow(ReadOnlySpan<float> weightGradient, ReadOnlySpan<float> biasGradient)
    {
        int inputs = CheckShape(weightGradient, biasGradient);
        int best = -1;
        float bestAbs = 0;
        for (int o = 0; o < biasGradient.Length; o++)
        {
            if (Math.Abs(biasGradient[o]) > bestAbs)
            {
                bestAbs = Math.Abs(biasGradient[o]);
                best = o;
            }
        }
        var x = new float[inputs];
        if (best < 0) return x;
        var row = weightGradient.Slice(best * inputs, inputs);
        double inv = 1.0 / biasGradient[best];
        for (int i = 0; i < inputs; i++) x[i] = (float)(row[i] * inv);
        return x;
    }

    /// <summary>Cosine similarity ⟨a, b⟩/(‖a‖‖b‖); 0 if either vector is zero.</summary>
    public static double CosineSimilarity(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        if (a.Length != b.Length) throw new ArgumentException($"Lengths differ: {a.Length} and {b.Length}.", nameof(b));
        double dot = 0, na = 0, nb = 0;
        for (int i = 0; i < a.Length; i++)
        {
            dot += (double)a[i] * b[i];
            na += (double)a[i] * a[i];
            nb += (double)b[i] * b[i];
        }
        return na == 0 || nb == 0 ? 0 : dot / Math.Sqrt(na * nb);
    }

    /// <summary>Peak signal-to-noise ratio 10·log10(peak²/MSE) in dB; +∞ for an exact reconstruction.</summary>
    public static double Psnr(ReadOnlySpan<float> reference, ReadOnlySpan<float> reconstruction, double peak = 1.0)
    {
        if (reference.Length != reconstruction.Length) throw new ArgumentException($"Lengths differ: {reference.Length} and {reconstruction.Length}.", nameof(reconstruction));
        if (reference.IsEmpty) throw new ArgumentException("Empty images.", nameof(reference));
        if (!(peak > 0)) throw new ArgumentOutOfRangeException(nameof(peak), peak, "The peak value must be positive.");
        double mse = 0;
        for (int i = 0; i < reference.Length; i++)
        {
            double d = (double)reference[i] - reconstruction[i];
            mse += d * d;
        }
        mse /= reference.Length;
        return mse == 0 ? double.PositiveInfinity : 10 * Math.Log10(peak * peak / mse);
    }

    private static int CheckShape(ReadOnlySpan<float> weightGradient, ReadOnlySpan<float> biasGradient)
    {
        if (biasGradient.IsEmpty) throw new ArgumentException("The bias gradient is empty.", nameof(biasGradient));
        if (weightGradient.Length % biasGradient.Length != 0 || weightGradient.IsEmpty)
            throw new ArgumentException($"The weight gradient ({weightGradient.Length}) is not Out×In with Out = {biasGradient.Length}.", nameof(weightGradient));
        return weightGradient.Length / biasGradient.Length;
    }
}
