using System.Diagnostics;
using CsCheck;
using FleetLearn.Core.Privacy;
using Xunit.Abstractions;

namespace FleetLearn.Core.Tests.Privacy;

public sealed class ClippingAndNoiseTests(ITestOutputHelper output)
{
    [Fact]
    public void Clip_AnyUpdateAndNorm_NormAtMostCAndDirectionPreserved()
    {
        Gen.Select(Gen.Float[-1000f, 1000f].Array[1, 3000], Gen.Double[1e-3, 100.0]).Sample((update, clip) =>
        {
            var original = (float[])update.Clone();
            double before = L2Clipping.Norm(original);
            double returned = L2Clipping.Clip(update, clip);
            double after = L2Clipping.Norm(update);
            Assert.Equal(before, returned);
            Assert.True(after <= clip, $"clipped norm {after:R} > C = {clip:R}");
            if (before <= clip)
            {
                Assert.Equal(original, update); // inside the ball: untouched
            }
            else
            {
                Assert.True(after >= clip * (1 - 1e-5), $"clipped norm {after:R} far below C = {clip:R}");
                Assert.True(LeakageAudit.CosineSimilarity(original, update) >= 1 - 1e-6, "direction changed");
            }
        });
    }

    [Fact]
    public void Norm_MillionCoordinates_MatchesDoubleAccumulation()
    {
        var random = new Core.Random.DeterministicRandom(7);
        var v = new float[1_000_003];
        double expected = 0;
        for (int i = 0; i < v.Length; i++)
        {
            v[i] = (float)random.NextGaussian();
            expected += (double)v[i] * v[i];
        }
        Assert.Equal(Math.Sqrt(expected), L2Clipping.Norm(v), 9);
    }

    [Theory]
    [InlineData(float.NaN)]
    [InlineData(float.PositiveInfinity)]
    public void Clip_NonFiniteUpdate_Throws(float bad)
        => Assert.Throws<ArgumentException>(() => L2Clipping.Clip(new[] { 1f, bad, 2f }, 1.0));

    [Fact]
    public void SecureNoiseSource_MillionDraws_HaveStandardNormalMoments()
    {
        const int n = 1_000_000;
        var values = new double[n];
        var sw = Stopwatch.StartNew();
        new SecureNoiseSource().FillStandardNormal(values);
        output.WriteLine($"SecureNoiseSource: {n:N0} Gaussians in {sw.Elapsed.TotalMilliseconds:F1} ms");
        double mean = values.Average();
        double variance = values.Sum(x => (x - mean) * (x - mean)) / (n - 1);
        double fourth = values.Sum(x => Math.Pow(x - mean, 4)) / n;
        // 6-sigma bounds: SE(mean) = 1e-3, SE(var) = √(2/n) ≈ 1.4e-3, SE(4th moment) = √(96/n) ≈ 9.8e-3.
        Assert.InRange(mean, -6e-3, 6e-3);
        Assert.InRange(variance, 1 - 8.5e-3, 1 + 8.5e-3);
        Assert.InRange(fourth, 3 - 0.06, 3 + 0.06);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ZigguratSampler_MillionDraws_EmpiricalCdfMatchesPhi(bool secure)
    {
        const int n = 1_000_000;
        var values = new double[n];
        (secure ? (INoiseSource)new SecureNoiseSource() : new SeededNoiseSource(99)).FillStandardNormal(values);
        Array.Sort(values);
        foreach (double x in new[] { -4.5, -3.7, -3.6, -3.0, -2.0, -1.0, -0.3, 0.0, 0.3, 1.0, 2.0, 3.0, 3.6, 3.7, 4.5 })
        {
            double phi = 0.5 * SpecialFunctions.Erfc(-x / Math.Sqrt(2));
            int below = Array.BinarySearch(values, x);
            double empirical = (below >= 0 ? below : ~below) / (double)n;
            double bound = 5.5 * Math.Sqrt(phi * (1 - phi) / n) + 2.0 / n;
            Assert.True(Math.Abs(empirical - phi) <= bound, $"F({x}) = {empirical}, Φ = {phi}, bound {bound}");
        }
    }

    [Fact]
    public void SecureNoiseSource_TwoInstances_DrawDifferentNoise()
    {
        var a = new double[8];
        var b = new double[8];
        new SecureNoiseSource().FillStandardNormal(a);
        new SecureNoiseSource().FillStandardNormal(b);
        Assert.NotEqual(a, b);
    }

    [Fact]
    public void SeededNoiseSource_SameSeed_SameNoise()
    {
        var a = new double[9];
        var b = new double[9];
        new SeededNoiseSource(42).FillStandardNormal(a);
        new SeededNoiseSource(42).FillStandardNormal(b);
        Assert.Equal(a, b);
    }

    [Fact]
    public void GaussianNoiseAdd_MillionCoordinates_AddsRequestedStdDev()
    {
        var v = new float[1_000_000];
        var sw = Stopwatch.StartNew();
        GaussianNoise.Add(v, 0.5);
        output.WriteLine($"GaussianNoise.Add (secure): {v.Length:N0} floats in {sw.Elapsed.TotalMilliseconds:F1} ms");
        double std = Math.Sqrt(v.Sum(x => (double)x * x) / v.Length);
        Assert.InRange(std, 0.5 * (1 - 5e-3), 0.5 * (1 + 5e-3));
    }

    [Fact]
    public void DpNoiseSettings_Central_AggregatorAddsSigmaC()
    {
        var s = new DpNoiseSettings(clipNorm: 2.0, noiseMultiplier: 1.5, NoiseMode.Central);
        Assert.Equal(3.0, s.AggregatorNoiseStdDev);
        Assert.Equal(0.0, s.VehicleNoiseStdDev);
        Assert.Equal(1.5, s.EffectiveNoiseMultiplier(1));
    }

    [Fact]
    public void DpNoiseSettings_Distributed_VehicleAddsSigmaCOverSqrtMMin()
    {
        var s = new DpNoiseSettings(clipNorm: 2.0, noiseMultiplier: 1.5, NoiseMode.Distributed, minSurvivors: 9);
        Assert.Equal(1.0, s.VehicleNoiseStdDev, 15);
        Assert.Equal(0.0, s.AggregatorNoiseStdDev);
        Assert.Equal(1.5, s.EffectiveNoiseMultiplier(9), 15);
        Assert.Equal(3.0, s.EffectiveNoiseMultiplier(36), 15); // s/m_min = 4 → σ·2
        Assert.Throws<InvalidOperationException>(() => s.EffectiveNoiseMultiplier(8));
    }

    [Fact]
    public void ClipAndNoise_DistributedSumOverMoreThanMMin_CarriesSOverMMinVariance()
    {
        // m_min = 4, s = 9 survivors: the sum's per-coordinate noise variance must be 9/4·σ²C² (≥ σ²C²).
        var settings = new DpNoiseSettings(clipNorm: 1.0, noiseMultiplier: 2.0, NoiseMode.Distributed, minSurvivors: 4);
        const int d = 50_000, survivors = 9;
        var sum = new double[d];
        var source = new SeededNoiseSource(3);
        for (int k = 0; k < survivors; k++)
        {
            var update = new float[d]; // zero update: only noise remains
            GaussianNoise.ClipAndNoise(update, settings, source);
            for (int i = 0; i < d; i++) sum[i] += update[i];
        }
        double variance = sum.Sum(x => x * x) / d;
        double expected = survivors / 4.0 * 4.0; // s/m_min·σ²C² = 9
        Assert.InRange(variance, expected * 0.97, expected * 1.03); // SE = √(2/d) ≈ 0.63%
    }

    [Fact]
    public void AdaptiveClipping_AllUnclipped_ShrinksGeometrically()
    {
        var a = new AdaptiveClipping(initialClipNorm: 1.0, targetQuantile: 0.5, learningRate: 0.2);
        double fraction = a.Update(unclippedCount: 10, plannedCohortSize: 10);
        Assert.Equal(1.0, fraction);
        Assert.Equal(Math.Exp(-0.1), a.ClipNorm, 15);
        a.Update(0, 10);
        Assert.Equal(Math.Exp(-0.1) * Math.Exp(0.1), a.ClipNorm, 15);
    }

    [Fact]
    public void AdaptiveClipping_CountNoisedByTheVehicles_AppliedAsIsEvenBelowZero()
    {
        // The vehicles' discrete Gaussian shares can push the released count below 0: b̄ = −3/10, C = exp(−0.2·(−0.3 − 0.5)).
        var a = new AdaptiveClipping(initialClipNorm: 1.0, targetQuantile: 0.5, learningRate: 0.2, countNoiseStdDev: 4);
        Assert.Equal(-0.3, a.UpdateWithNoisedCount(-3, 10), 12);
        Assert.Equal(Math.Exp(0.16), a.ClipNorm, 12);
        Assert.Throws<ArgumentOutOfRangeException>(() => a.UpdateWithNoisedCount(5, 0));
    }

    [Fact]
    public void AdaptiveClipping_NoisedCounts_ConvergesToTargetQuantile()
    {
        // Norms uniform on [0, 10]: the 0.7-quantile is 7.
        var data = new Core.Random.DeterministicRandom(11);
        var a = new AdaptiveClipping(initialClipNorm: 0.5, targetQuantile: 0.7, learningRate: 0.2, countNoiseStdDev: 100 / 20.0);
        var noise = new SeededNoiseSource(12);
        for (int round = 0; round < 400; round++)
        {
            int unclipped = 0;
            for (int v = 0; v < 100; v++) if (AdaptiveClipping.IsUnclipped(10 * data.NextDouble(), a.ClipNorm)) unclipped++;
            a.Update(unclipped, 100, noise);
        }
        Assert.InRange(a.ClipNorm, 6.0, 8.0);
    }

    [Fact]
    public void UpdateNoiseMultiplier_PaperFormula_MatchesClosedForm()
    {
        Assert.Equal(1 / Math.Sqrt(0.75), AdaptiveClipping.UpdateNoiseMultiplier(1.0, 1.0), 14);
        // σ_b → ∞: the count is free and σ_Δ = σ.
        Assert.Equal(1.3, AdaptiveClipping.UpdateNoiseMultiplier(1.3, double.PositiveInfinity));
        // The paper's recipe σ_b = m/20 with m = 100, σ = 1: σ_Δ = (1 − 1/100)^−1/2.
        Assert.Equal(1 / Math.Sqrt(0.99), AdaptiveClipping.UpdateNoiseMultiplier(1.0, 5.0), 14);
        Assert.Throws<ArgumentOutOfRangeException>(() => AdaptiveClipping.UpdateNoiseMultiplier(1.0, 0.5));
    }
}
