using FleetLearn.Core.Model;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Random;

namespace FleetLearn.Core.Tests.Privacy;

public sealed class LeakageAuditTests
{
    private static readonly ModelSpec Spec = new([784, 64, 10]);

    // One example's gradient of softmax cross-entropy for a 784-64-10 ReLU MLP, flat in ModelSpec layout.
    private static (float[] Input, float[] Gradient) SingleExampleGradient(ulong seed)
    {
        var random = new DeterministicRandom(seed);
        var w = new float[Spec.ParameterCount];
        for (int l = 0; l < Spec.LayerCount; l++)
        {
            double scale = Math.Sqrt(2.0 / Spec.InputsOf(l));
            for (int i = 0; i < Spec.WeightCount(l); i++) w[Spec.WeightOffset(l) + i] = (float)(random.NextGaussian() * scale);
            for (int o = 0; o < Spec.OutputsOf(l); o++) w[Spec.BiasOffset(l) + o] = (float)(0.01 * random.NextGaussian());
        }
        var x = new float[784];
        for (int i = 0; i < x.Length; i++) x[i] = (float)random.NextDouble(); // pixel intensities in [0, 1)
        const int label = 3;

        int hidden = Spec.OutputsOf(0), classes = Spec.OutputsOf(1);
        var pre = new double[hidden];
        var h = new double[hidden];
        for (int o = 0; o < hidden; o++)
        {
            double s = w[Spec.BiasOffset(0) + o];
            for (int i = 0; i < 784; i++) s += w[Spec.WeightOffset(0) + o * 784 + i] * x[i];
            pre[o] = s;
            h[o] = Math.Max(0, s);
        }
        var z = new double[classes];
        for (int c = 0; c < classes; c++)
        {
            double s = w[Spec.BiasOffset(1) + c];
            for (int o = 0; o < hidden; o++) s += w[Spec.WeightOffset(1) + c * hidden + o] * h[o];
            z[c] = s;
        }
        double max = z.Max(), sum = z.Sum(v => Math.Exp(v - max));
        var dz = z.Select((v, c) => Math.Exp(v - max) / sum - (c == label ? 1 : 0)).ToArray();

        var g = new float[Spec.ParameterCount];
        for (int c = 0; c < classes; c++)
        {
            g[Spec.BiasOffset(1) + c] = (float)dz[c];
            for (int o = 0; o < hidden; o++) g[Spec.WeightOffset(1) + c * hidden + o] = (float)(dz[c] * h[o]);
        }
        for (int o = 0; o < hidden; o++)
        {
            double dh = 0;
            for (int c = 0; c < classes; c++) dh += w[Spec.WeightOffset(1) + c * hidden + o] * dz[c];
            double dpre = pre[o] > 0 ? dh : 0;
            g[Spec.BiasOffset(0) + o] = (float)dpre;
            for (int i = 0; i < 784; i++) g[Spec.WeightOffset(0) + o * 784 + i] = (float)(dpre * x[i]);
        }
        return (x, g);
    }

    [Fact]
    public void ReconstructInput_RawSingleExampleGradient_RecoversInput()
    {
        var (x, g) = SingleExampleGradient(5);
        var recovered = LeakageAudit.ReconstructInput(g, Spec, layer: 0);
        Assert.True(LeakageAudit.CosineSimilarity(x, recovered) >= 0.99);
        Assert.True(LeakageAudit.Psnr(x, recovered) > 60);
        var single = LeakageAudit.ReconstructInputFromLargestRow(
            g.AsSpan(Spec.WeightOffset(0), Spec.WeightCount(0)), g.AsSpan(Spec.BiasOffset(0), Spec.OutputsOf(0)));
        Assert.True(LeakageAudit.CosineSimilarity(x, single) >= 0.99);
    }

    [Fact]
    public void ReconstructInput_ScaledUpdateOfOneSgdStep_RecoversInput()
    {
        // Δ = −η∇: the learning rate cancels in the ratio.
        var (x, g) = SingleExampleGradient(6);
        var update = g.Select(v => -0.05f * v).ToArray();
        Assert.True(LeakageAudit.CosineSimilarity(x, LeakageAudit.ReconstructInput(update, Spec)) >= 0.99);
    }

    [Fact]
    public void ReconstructInput_ClippedToOneAndNoisedSigmaOne_Fails()
    {
        var (x, g) = SingleExampleGradient(7);
        L2Clipping.Clip(g, clipNorm: 1.0);
        GaussianNoise.Add(g, stdDev: 1.0 * 1.0, new SeededNoiseSource(8)); // N(0, σ²C²), σ = C = 1, every coordinate
        var recovered = LeakageAudit.ReconstructInput(g, Spec);
        double cosine = LeakageAudit.CosineSimilarity(x, recovered);
        Assert.True(cosine <= 0.3, $"cosine {cosine} after clipping and noise");
    }

    [Fact]
    public void CosineAndPsnr_KnownVectors_ExactValues()
    {
        Assert.Equal(1.0, LeakageAudit.CosineSimilarity([1f, 2f, 3f], [2f, 4f, 6f]), 14);
        Assert.Equal(0.0, LeakageAudit.CosineSimilarity([1f, 0f], [0f, 1f]));
        Assert.Equal(-1.0, LeakageAudit.CosineSimilarity([1f, 1f], [-1f, -1f]), 14);
        // MSE = 0.01 with peak 1 → 20 dB.
        Assert.Equal(20.0, LeakageAudit.Psnr([0f, 0f], [0.1f, -0.1f]), 5);
        Assert.Equal(double.PositiveInfinity, LeakageAudit.Psnr([0.5f], [0.5f]));
    }
}
