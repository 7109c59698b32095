using FleetLearn.Core.Random;

namespace FleetLearn.Core.Privacy;

/// <summary>
/// A reproducible <see cref="INoiseSource"/> for simulations and tests only: its noise is predictable
/// from the seed, so it gives <b>no</b> differential privacy. Production uses <see cref="SecureNoiseSource"/>.
/// </summary>
public sealed class SeededNoiseSource : INoiseSource, IUniformBits
{
    private readonly DeterministicRandom _random;

    /// <summary>Creates a source from a 64-bit seed.</summary>
    public SeededNoiseSource(ulong seed) => _random = new DeterministicRandom(seed);

    /// <inheritdoc />
    public double NextUniform() => _random.NextDouble();

    /// <inheritdoc />
    public void FillStandardNormal(Span<double> destination)
    {
        for (int i = 0; i < destination.Length; i++) destination[i] = ZigguratNormal.Sample(this);
    }

    ulong IUniformBits.NextUInt64() => _random.NextUInt64();
}
