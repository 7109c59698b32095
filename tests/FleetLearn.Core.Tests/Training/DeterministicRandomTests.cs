using FleetLearn.Core.Random;
using FleetLearn.Core.Training;

namespace FleetLearn.Core.Tests.Training;

public sealed class DeterministicRandomTests
{
    [Fact]
    public void NextUInt64_SameSeed_ReproducesTheStream()
    {
        var a = new DeterministicRandom(2024);
        var b = new DeterministicRandom(2024);
        for (int i = 0; i < 1000; i++) Assert.Equal(a.NextUInt64(), b.NextUInt64());
    }

    [Fact]
    public void NextInt_IsUniformByChiSquare()
    {
        var rng = new DeterministicRandom(7);
        const int k = 10, n = 100_000;
        var counts = new int[k];
        for (int i = 0; i < n; i++) counts[rng.NextInt(k)]++;
        double chi = counts.Sum(c => Math.Pow(c - n / (double)k, 2) / (n / (double)k));
        Assert.True(chi < 27.88, $"chi-square {chi} over the 0.999 quantile (df 9)");
    }

    [Fact]
    public void NextGaussian_HasUnitMomentsAndGammaHasItsMean()
    {
        var rng = new DeterministicRandom(9);
        var xs = Enumerable.Range(0, 200_000).Select(_ => rng.NextGaussian()).ToArray();
        Assert.InRange(xs.Average(), -0.01, 0.01);
        Assert.InRange(xs.Select(x => x * x).Average(), 0.98, 1.02);
        var gammas = Enumerable.Range(0, 100_000).Select(_ => rng.NextGamma(0.5)).ToArray();
        Assert.InRange(gammas.Average(), 0.49, 0.51);
    }

    [Fact]
    public void Shuffle_IsAPermutation()
    {
        var items = Enumerable.Range(0, 1000).ToArray();
        new DeterministicRandom(3).Shuffle(items.AsSpan());
        Assert.Equal(Enumerable.Range(0, 1000), items.Order());
        Assert.NotEqual(Enumerable.Range(0, 1000), items);
    }

    [Fact]
    public void Cosine_StartsAtRateAndEndsAtZero()
    {
        var s = LearningRateSchedule.Parse("cosine", 0.1f);
        Assert.Equal(0.1f, s.At(0, 100), 6);
        Assert.Equal(0.05f, s.At(50, 100), 6);
        Assert.Equal(0f, s.At(100, 100), 6);
        Assert.Throws<FormatException>(() => LearningRateSchedule.Parse("step", 0.1f));
    }
}
