namespace FleetLearn.Core.Privacy;

/// <summary>
/// Source of the randomness privacy mechanisms consume (Gaussian noise, randomized response coins).
/// </summary>
/// <remarks>
/// Production code uses <see cref="SecureNoiseSource"/> (the default everywhere a source is optional):
/// DP guarantees assume the adversary cannot predict the noise, which a seeded PRNG does not give.
/// <see cref="SeededNoiseSource"/> exists only so simulations and tests can reproduce a run.
/// Implementations are not required to be thread-safe: use one per thread.
/// </remarks>
public interface INoiseSource
{
    /// <summary>Fills <paramref name="destination"/> with independent standard normal draws N(0, 1).</summary>
    void FillStandardNormal(Span<double> destination);

    /// <summary>A uniform double in [0, 1) with 53 random bits.</summary>
    double NextUniform();
}

/// <summary>Helpers shared by the <see cref="INoiseSource"/> implementations.</summary>
public static class NoiseSourceExtensions
{
    /// <summary>One standard normal draw.</summary>
    public static double NextStandardNormal(this INoiseSource source)
    {
        ArgumentNullException.ThrowIfNull(source);
        Span<double> one = stackalloc double[1];
        source.FillStandardNormal(one);
        return one[0];
    }

    /// <summary>A uniform integer in [0, n) (rejection sampling on 53-bit uniforms; no modulo bias).</summary>
    public static int NextInt(this INoiseSource source, int n)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(n);
        // floor(u·n) with u uniform on the 2^53 grid is biased by at most n/2^53; reject the incomplete top bucket.
        const double scale = 9007199254740992.0; // 2^53
        double limit = Math.Floor(scale / n) * n;
        while (true)
        {
            double k = Math.Floor(source.NextUniform() * scale);
            if (k < limit) return (int)(k % n);
        }
    }
}
