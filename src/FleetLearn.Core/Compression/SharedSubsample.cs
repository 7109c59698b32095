using FleetLearn.Core.Random;

namespace FleetLearn.Core.Compression;

/// <summary>
/// A random subset of exactly k = max(1, round(p·n)) coordinates, drawn from a per-round seed that every vehicle
/// shares, so all vehicles send the same coordinates and secure aggregation can sum them (the "random mask"
/// structured update of Konečný et al. 2016). Selection sampling (Knuth, TAOCP Vol. 2, Algorithm S) yields the
/// indices in ascending order in one O(n) pass.
/// </summary>
public sealed class SharedSubsample
{
    /// <summary>Draws the subset of <paramref name="length"/> coordinates for fraction <paramref name="fraction"/>.</summary>
    public SharedSubsample(int length, double fraction, ulong seed)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(length);
        if (!(fraction > 0 && fraction <= 1)) throw new ArgumentOutOfRangeException(nameof(fraction), fraction, "The subsample fraction must be within (0, 1].");
        Length = length;
        Fraction = fraction;
        int k = KeptCount(length, fraction);
        Indices = new int[k];
        if (k == length)
        {
            for (int i = 0; i < k; i++) Indices[i] = i;
            return;
        }
        var rng = DeterministicRandom.Derive(seed, 0x5B5A);
        int chosen = 0;
        for (int i = 0; i < length && chosen < k; i++)
            if ((length - i) * rng.NextDouble() < k - chosen) Indices[chosen++] = i;
    }

    /// <summary>n.</summary>
    public int Length { get; }

    /// <summary>p.</summary>
    public double Fraction { get; }

    /// <summary>The kept coordinates, ascending.</summary>
    public int[] Indices { get; }

    /// <summary>max(1, round(p·n)).</summary>
    public static int KeptCount(int length, double fraction) => Math.Clamp((int)Math.Round(fraction * length), 1, length);

    /// <summary>destination[j] = source[Indices[j]].</summary>
    public void Gather(ReadOnlySpan<float> source, Span<float> destination)
    {
        if (source.Length != Length || destination.Length != Indices.Length) throw new ArgumentException("Lengths do not match the subsample.");
        for (int j = 0; j < Indices.Length; j++) destination[j] = source[Indices[j]];
    }

    /// <summary>destination[Indices[j]] = scale·source[j], zeros elsewhere.</summary>
    public void Scatter(ReadOnlySpan<float> source, float scale, Span<float> destination)
    {
        if (destination.Length != Length || source.Length != Indices.Length) throw new ArgumentException("Lengths do not match the subsample.");
        destination.Clear();
        for (int j = 0; j < Indices.Length; j++) destination[Indices[j]] = scale * source[j];
    }
}
