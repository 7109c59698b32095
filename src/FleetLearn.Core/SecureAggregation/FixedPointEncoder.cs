namespace FleetLearn.Core.SecureAggregation;

/// <summary>
/// Fixed-point encoding of a (weighted) update for secure aggregation: clamp each coordinate to
/// [−c, c], shift by c, scale, round stochastically (unbiased: E[round(v)] = v) and reduce mod 2^m;
/// the sample weight travels as one more coordinate (clamped to [0, W], same scale, no shift).
/// Decoding the sum of n encodings subtracts n·c, so the cohort size must be known.
/// </summary>
/// <remarks>
/// Every encoded coordinate lies in [0, <see cref="MaxEncodedValue"/>]; the round's modulus must hold
/// n · MaxEncodedValue (<see cref="EnsureFits"/>), which is what <see cref="SecAggParameters.MaxInputValue"/> is for.
/// </remarks>
public sealed class FixedPointEncoder
{
    /// <summary>Creates an encoder.</summary>
    /// <param name="clipRange">c &gt; 0: coordinates are clamped to [−c, c].</param>
    /// <param name="scale">Units per 1.0 (the quantization step is 1/scale).</param>
    /// <param name="bitWidth">m ∈ [1, 32].</param>
    /// <param name="maxWeight">W ≥ 0: sample weights are clamped to [0, W].</param>
    public FixedPointEncoder(double clipRange, double scale, int bitWidth, double maxWeight = 1.0)
    {
        if (!(clipRange > 0) || double.IsInfinity(clipRange)) throw new ArgumentOutOfRangeException(nameof(clipRange), clipRange, "Clip range must be positive and finite.");
        if (!(scale > 0) || double.IsInfinity(scale)) throw new ArgumentOutOfRangeException(nameof(scale), scale, "Scale must be positive and finite.");
        if (bitWidth is < 1 or > 32) throw new ArgumentOutOfRangeException(nameof(bitWidth), bitWidth, "Bit width must be in [1, 32].");
        if (!(maxWeight >= 0) || double.IsInfinity(maxWeight)) throw new ArgumentOutOfRangeException(nameof(maxWeight), maxWeight, "Maximum weight must be non-negative and finite.");
        ClipRange = clipRange;
        Scale = scale;
        BitWidth = bitWidth;
        MaxWeight = maxWeight;
        double max = Math.Ceiling(Math.Max(2 * clipRange, maxWeight) * scale);
        if (max > uint.MaxValue) throw new SecAggConfigurationException($"Clip range {clipRange} and weight {maxWeight} at scale {scale} need values up to {max}, beyond 32 bits.");
        MaxEncodedValue = (ulong)max;
        SecAggParameters.EnsureModulusHoldsSum(1, MaxEncodedValue, bitWidth);
    }

    /// <summary>The largest scale at which <paramref name="cohortSize"/> encodings still sum without wrapping mod 2^m.</summary>
    public static FixedPointEncoder ForCohort(double clipRange, int bitWidth, int cohortSize, double maxWeight = 1.0)
    {
        if (cohortSize < 1) throw new ArgumentOutOfRangeException(nameof(cohortSize));
        ulong perVehicle = (bitWidth == 32 ? uint.MaxValue : (1UL << bitWidth) - 1) / (ulong)cohortSize;
        if (perVehicle == 0) throw new SecAggConfigurationException($"Modulus 2^{bitWidth} cannot hold the sum of {cohortSize} vehicles at any scale.");
        // ceil(max(2c, W)·scale) ≤ perVehicle because max(2c, W)·scale = perVehicle exactly (an integer).
        var encoder = new FixedPointEncoder(clipRange, perVehicle / Math.Max(2 * clipRange, maxWeight), bitWidth, maxWeight);
        encoder.EnsureFits(cohortSize);
        return encoder;
    }

    /// <summary>c.</summary>
    public double ClipRange { get; }
    /// <summary>Units per 1.0.</summary>
    public double Scale { get; }
    /// <summary>m.</summary>
    public int BitWidth { get; }
    /// <summary>W.</summary>
    public double MaxWeight { get; }
    /// <summary>Largest value one encoded coordinate can take: ⌈max(2c, W) · scale⌉.</summary>
    public ulong MaxEncodedValue { get; }

    /// <summary>Throws <see cref="SecAggConfigurationException"/> when the sum of <paramref name="cohortSize"/> encodings could wrap mod 2^m.</summary>
    public void EnsureFits(int cohortSize) => SecAggParameters.EnsureModulusHoldsSum(cohortSize, MaxEncodedValue, BitWidth);

    /// <summary>Encodes <paramref name="values"/> (already multiplied by the weight) plus the weight as a last coordinate.</summary>
    /// <param name="values">w·Δ; NaN or ±∞ are rejected.</param>
    /// <param name="weight">Sample weight w.</param>
    /// <param name="uniform">Uniform [0, 1) draws for stochastic rounding (seeded in tests, CSPRNG-backed in production).</param>
    public uint[] Encode(ReadOnlySpan<float> values, double weight, Func<double> uniform)
    {
        var result = new uint[values.Length + 1];
        Encode(values, weight, uniform, result);
        return result;
    }

    /// <summary>Encodes into <paramref name="destination"/> (length values.Length + 1).</summary>
    public void Encode(ReadOnlySpan<float> values, double weight, Func<double> uniform, Span<uint> destination)
    {
        ArgumentNullException.ThrowIfNull(uniform);
        if (destination.Length != values.Length + 1) throw new ArgumentException($"Destination needs {values.Length + 1} coordinates (values plus the weight).", nameof(destination));
        if (!double.IsFinite(weight)) throw new ArgumentException($"Weight {weight} is not finite.", nameof(weight));
        uint mask = BitWidth == 32 ? uint.MaxValue : (1u << BitWidth) - 1;
        for (int i = 0; i < values.Length; i++)
        {
            float x = values[i];
            if (!float.IsFinite(x)) throw new ArgumentException($"Coordinate {i} is {x}; updates must be finite.", nameof(values));
            double shifted = (Math.Clamp((double)x, -ClipRange, ClipRange) + ClipRange) * Scale;
            destination[i] = Round(shifted, uniform) & mask;
        }
        destination[values.Length] = Round(Math.Clamp(weight, 0, MaxWeight) * Scale, uniform) & mask;
    }

    private uint Round(double v, Func<double> uniform)
    {
        double floor = Math.Floor(v);
        double frac = v - floor;
        ulong r = (ulong)floor + (frac > 0 && uniform() < frac ? 1UL : 0UL);
        return (uint)Math.Min(r, MaxEncodedValue);
    }

    /// <summary>Decodes the (unwrapped) sum of <paramref name="cohortSize"/> encodings: Σ w·Δ per coordinate and Σ w.</summary>
    public (double[] Sum, double WeightSum) DecodeSum(ReadOnlySpan<uint> sum, int cohortSize)
    {
        if (sum.Length < 1) throw new ArgumentException("The sum needs at least the weight coordinate.", nameof(sum));
        EnsureFits(cohortSize);
        var result = new double[sum.Length - 1];
        double offset = cohortSize * ClipRange;
        for (int i = 0; i < result.Length; i++) result[i] = sum[i] / Scale - offset;
        return (result, sum[^1] / Scale);
    }

    /// <summary>Weighted mean Σ w·Δ / Σ w (zeros when the weight sum is zero).</summary>
    public float[] DecodeMean(ReadOnlySpan<uint> sum, int cohortSize)
    {
        var (s, w) = DecodeSum(sum, cohortSize);
        var mean = new float[s.Length];
        if (w > 0) for (int i = 0; i < s.Length; i++) mean[i] = (float)(s[i] / w);
        return mean;
    }
}
