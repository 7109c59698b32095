using FleetLearn.Core.Privacy;

namespace FleetLearn.Core.Compression;

/// <summary>
/// Unbiased stochastic uniform quantization to b bits (QSGD, Alistarh et al. 2017; Suresh et al. 2017 §3):
/// a value x ∈ [−r, r] maps to level ℓ ∈ [0, L], L = 2^b − 1, on the grid −r + ℓ·Δ with Δ = 2r/L, rounding up
/// with probability equal to the fractional part, so E[decode(ℓ)] = x and |decode(ℓ) − x| &lt; Δ.
/// Values outside [−r, r] are clamped first (counted: that is the only biased case).
/// </summary>
public static class StochasticQuantizer
{
    /// <summary>L = 2^b − 1: the largest level.</summary>
    public static uint MaxLevel(int bits)
    {
        if (bits is < 1 or > 31) throw new ArgumentOutOfRangeException(nameof(bits), bits, "Bits must be within 1..31.");
        return (1u << bits) - 1;
    }

    /// <summary>Δ = 2r/L: the grid step, which bounds each coordinate's error.</summary>
    public static double Step(double range, int bits) => 2 * range / MaxLevel(bits);

    /// <summary>
    /// Quantizes <paramref name="values"/> on [−<paramref name="range"/>, <paramref name="range"/>] into levels; one uniform
    /// draw per coordinate from <paramref name="random"/> (seeded in simulation). Returns the number of clamped values.
    /// </summary>
    public static int Quantize(ReadOnlySpan<float> values, double range, int bits, INoiseSource random, Span<uint> levels)
    {
        ArgumentNullException.ThrowIfNull(random);
        if (!(range >= 0) || !double.IsFinite(range)) throw new ArgumentOutOfRangeException(nameof(range), range, "The quantization range must be finite and ≥ 0.");
        if (levels.Length != values.Length) throw new ArgumentException("One level per value is required.", nameof(levels));
        uint max = MaxLevel(bits);
        if (range == 0)
        {
            levels.Fill((max + 1) / 2); // unused grid: any level decodes to 0 when r = 0
            return 0;
        }
        double perUnit = max / (2 * range);
        int clamped = 0;
        for (int i = 0; i < values.Length; i++)
        {
            double t = ((double)values[i] + range) * perUnit;
            // A value at ±r can land a rounding error outside [0, L]: that is not clamping.
            if (!(t >= 0)) { if (double.IsNaN(t)) throw new ArgumentException($"Value {i} is NaN.", nameof(values)); if (t < -1e-6) clamped++; t = 0; }
            else if (t > max) { if (t > max + 1e-6) clamped++; t = max; }
            double floor = Math.Floor(t);
            uint level = (uint)floor;
            if (t > floor && random.NextUniform() < t - floor) level++;
            levels[i] = level;
        }
        return clamped;
    }

    /// <summary>Quantizes one value in [0, 1] to a level of [0, L] (used for the weight coordinate under secure aggregation).</summary>
    public static uint QuantizeUnit(double value, int bits, INoiseSource random)
    {
        ArgumentNullException.ThrowIfNull(random);
        uint max = MaxLevel(bits);
        double t = Math.Clamp(value, 0, 1) * max;
        double floor = Math.Floor(t);
        uint level = (uint)floor;
        if (t > floor && random.NextUniform() < t - floor) level++;
        return level;
    }

    /// <summary>Decodes levels to −r + ℓ·Δ.</summary>
    public static void Dequantize(ReadOnlySpan<uint> levels, double range, int bits, Span<float> values)
    {
        if (levels.Length != values.Length) throw new ArgumentException("One value per level is required.", nameof(values));
        double step = Step(range, bits);
        for (int i = 0; i < levels.Length; i++) values[i] = (float)(levels[i] * step - range);
    }

    /// <summary>Decodes the sum of <paramref name="contributors"/> level vectors: Σx = −n·r + Δ·Σℓ.</summary>
    public static void DequantizeSum(ReadOnlySpan<uint> levelSums, int contributors, double range, int bits, Span<double> sums)
    {
        if (levelSums.Length != sums.Length) throw new ArgumentException("One sum per level sum is required.", nameof(sums));
        double step = Step(range, bits), offset = contributors * range;
        for (int i = 0; i < levelSums.Length; i++) sums[i] = levelSums[i] * step - offset;
    }
}
