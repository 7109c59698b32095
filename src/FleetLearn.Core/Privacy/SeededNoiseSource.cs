using FleetLearn.Core.Random;

namespace FleetLearn.Core.Privacy;

/// <summary>
/// A reproducible <see cref="INoiseSource"/> for simulations and tests only: its noise is predictable
/// from the seed, so it gives <b>no</b> differential privacy. Production uses <see cref="SecureNoiseSource"/>.
/// </summary>
public sealed class SeededNoiseSource : INoiseSource
{
    private readonly DeterministicRandom _random;

    /// <summary>Creates a source from a 64-bit seed.</summary>
    public SeededNoiseSource(ulong seed) => _random = new DeterministicRandom(seed);

    /// <inheritdoc />
    public double NextUniform() => _random.NextDouble();

    /// <inheritdoc />
    public void FillStandardNormal(Span<double> destination)
    {
        int i = 0;
        for (; i + 1 < destination.Length; i += 2)
        {
            (destination[i], destination[i + 1]) = SecureNoiseSource.BoxMuller(_random.NextUInt64(), _random.NextUInt64());
        }
        if (i < destination.Length) destination[i] = SecureNoiseSource.BoxMuller(_random.NextUInt64(), _random.NextUInt64()).Z0;
    }
}
