using FleetLearn.Core.Model;
using FleetLearn.Core.Training;

namespace FleetLearn.Compute.Tests;

/// <summary>
/// Behaviour every <see cref="ITrainer"/> backend must show. One derived class per backend
/// (CPU SIMD, ILGPU CPU accelerator, ILGPU CUDA when a GPU is present) runs these same tests.
/// </summary>
public abstract class TrainerContractTests
{
    /// <summary>Creates the backend under test, or throws SkipException when it is unavailable.</summary>
    protected abstract ITrainer CreateTrainer(ModelSpec spec, int maxBatchSize);

    /// <summary>Float tolerance of the backend against the double-precision reference.</summary>
    protected virtual double Tolerance => 2e-4;

    // Odd sizes on purpose: they exercise every SIMD tail and GEMM edge tile.
    private static readonly ModelSpec Small = ModelSpec.Parse("37-19-13-5");

    [SkippableFact]
    public void ComputeGradient_SmallModel_MatchesReferenceAndFiniteDifferences()
    {
        var data = ReferenceMlp.RandomData(23, Small.InputSize, Small.OutputSize, seed: 3);
        var p = ModelInitializer.Initialize(Small, seed: 11);
        using var trainer = CreateTrainer(Small, 32);
        trainer.LoadParameters(p);
        int[] rows = Enumerable.Range(0, 23).ToArray();
        var grad = new float[Small.ParameterCount];
        float loss = trainer.ComputeGradient(data, rows, grad);

        var expected = new double[Small.ParameterCount];
        double refLoss = ReferenceMlp.LossAndGradient(Small, p, data, rows, expected);
        Assert.Equal(refLoss, loss, Tolerance);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - grad[i]) <= Tolerance * (1 + Math.Abs(expected[i])), $"gradient[{i}]: expected {expected[i]}, got {grad[i]}");

        // Central finite differences of the double-precision loss confirm the analytic gradient.
        var pd = p.ToArray();
        var rng = new FleetLearn.Core.Random.DeterministicRandom(5);
        for (int k = 0; k < 40; k++)
        {
            int i = rng.NextInt(pd.Length);
            float saved = pd[i];
            const float h = 1e-2f;
            pd[i] = saved + h;
            double up = ReferenceMlp.LossAndGradient(Small, pd, data, rows, null);
            pd[i] = saved - h;
            double down = ReferenceMlp.LossAndGradient(Small, pd, data, rows, null);
            pd[i] = saved;
            double fd = (up - down) / (2 * h);
            Assert.True(Math.Abs(fd - grad[i]) <= 2e-3 + 2e-2 * Math.Abs(fd), $"parameter {i}: finite difference {fd}, backend {grad[i]}");
        }
    }

    [SkippableFact]
    public void TrainBatch_MomentumAndWeightDecay_FollowsSgdFormula()
    {
        var data = ReferenceMlp.RandomData(16, Small.InputSize, Small.OutputSize, seed: 4);
        var p = ModelInitializer.Initialize(Small, seed: 12);
        using var trainer = CreateTrainer(Small, 16);
        trainer.LoadParameters(p);
        var sgd = new SgdOptions(0.1f, Momentum: 0.9f, WeightDecay: 0.01f);
        int[] first = Enumerable.Range(0, 8).ToArray(), second = Enumerable.Range(8, 8).ToArray();
        trainer.TrainBatch(data, first, sgd);
        trainer.TrainBatch(data, second, sgd);
        var actual = new float[p.Length];
        trainer.ReadParameters(actual);

        // Expected: v1 = g1 + λw0; w1 = w0 − lr·v1; v2 = μv1 + g2 + λw1; w2 = w1 − lr·v2.
        var w = p.Select(v => (double)v).ToArray();
        var g = new double[w.Length];
        var v = new double[w.Length];
        for (int step = 0; step < 2; step++)
        {
            var wf = w.Select(x => (float)x).ToArray();
            ReferenceMlp.LossAndGradient(Small, wf, data, step == 0 ? first : second, g);
            for (int i = 0; i < w.Length; i++)
            {
                double d = g[i] + 0.01 * w[i];
                v[i] = step == 0 ? d : 0.9 * v[i] + d;
                w[i] -= 0.1 * v[i];
            }
        }
        for (int i = 0; i < w.Length; i++)
            Assert.True(Math.Abs(w[i] - actual[i]) <= 5 * Tolerance * (1 + Math.Abs(w[i])), $"w[{i}]: expected {w[i]}, got {actual[i]}");
    }

    [SkippableFact]
    public void TrainBatch_ProximalTerm_PullsTowardAnchor()
    {
        var data = ReferenceMlp.RandomData(8, Small.InputSize, Small.OutputSize, seed: 6);
        var p = ModelInitializer.Initialize(Small, seed: 13);
        var anchor = ModelInitializer.Initialize(Small, seed: 14);
        using var trainer = CreateTrainer(Small, 8);
        trainer.LoadParameters(p);
        trainer.SetProximalTerm(anchor, 0.5f);
        int[] rows = Enumerable.Range(0, 8).ToArray();
        trainer.TrainBatch(data, rows, new SgdOptions(0.05f));
        var actual = new float[p.Length];
        trainer.ReadParameters(actual);
        var g = new double[p.Length];
        ReferenceMlp.LossAndGradient(Small, p, data, rows, g);
        for (int i = 0; i < p.Length; i++)
        {
            double expected = p[i] - 0.05 * (g[i] + 0.5 * (p[i] - anchor[i]));
            Assert.True(Math.Abs(expected - actual[i]) <= 5 * Tolerance * (1 + Math.Abs(expected)), $"w[{i}]: expected {expected}, got {actual[i]}");
        }
    }

    [SkippableFact]
    public void Evaluate_And_Forward_MatchReference()
    {
        var data = ReferenceMlp.RandomData(45, Small.InputSize, Small.OutputSize, seed: 7);
        var p = ModelInitializer.Initialize(Small, seed: 15);
        using var trainer = CreateTrainer(Small, 16);
        trainer.LoadParameters(p);
        var logits = new float[45 * Small.OutputSize];
        trainer.Forward(data.Features, 45, logits);
        int correct = 0;
        double loss = 0;
        for (int r = 0; r < 45; r++)
        {
            var z = ReferenceMlp.Activations(Small, p, data.Row(r))[^1];
            for (int c = 0; c < z.Length; c++)
                Assert.True(Math.Abs(z[c] - logits[r * z.Length + c]) <= Tolerance * (1 + Math.Abs(z[c])), $"logit[{r},{c}]: expected {z[c]}, got {logits[r * z.Length + c]}");
            int arg = Array.IndexOf(z, z.Max());
            if (arg == data.Labels[r]) correct++;
            loss -= Math.Log(ReferenceMlp.Softmax(z)[data.Labels[r]]);
        }
        var result = trainer.Evaluate(data);
        Assert.Equal(45, result.Count);
        Assert.Equal(correct / 45.0, result.Accuracy, 1e-9);
        Assert.Equal(loss / 45, result.Loss, Tolerance * 10);
        var tail = trainer.Evaluate(data, 40, 5);
        Assert.Equal(5, tail.Count);
    }

    [SkippableFact]
    public void LoadParameters_ThenRead_RoundTripsExactly()
    {
        var p = ModelInitializer.Initialize(Small, seed: 16);
        using var trainer = CreateTrainer(Small, 4);
        trainer.LoadParameters(p);
        var back = new float[p.Length];
        trainer.ReadParameters(back);
        Assert.Equal(p, back);
        Assert.Throws<ArgumentException>(() => trainer.LoadParameters(new float[p.Length - 1]));
    }

    [SkippableFact]
    public void TrainBatch_TooLargeBatchOrBadIndex_Throws()
    {
        var data = ReferenceMlp.RandomData(10, Small.InputSize, Small.OutputSize, seed: 8);
        using var trainer = CreateTrainer(Small, 4);
        trainer.LoadParameters(ModelInitializer.Initialize(Small, 1));
        Assert.Throws<ArgumentException>(() => trainer.TrainBatch(data, [0, 1, 2, 3, 4], new SgdOptions(0.1f)));
        Assert.Throws<ArgumentOutOfRangeException>(() => trainer.TrainBatch(data, [0, 10], new SgdOptions(0.1f)));
    }

    [SkippableFact]
    public void TrainBatch_SameSeedSameBatches_IsDeterministic()
    {
        var data = ReferenceMlp.RandomData(64, Small.InputSize, Small.OutputSize, seed: 9);
        float[] Run()
        {
            using var trainer = CreateTrainer(Small, 16);
            trainer.LoadParameters(ModelInitializer.Initialize(Small, 2));
            for (int b = 0; b < 4; b++)
                trainer.TrainBatch(data, Enumerable.Range(b * 16, 16).ToArray(), new SgdOptions(0.1f, 0.9f, 5e-4f));
            var result = new float[Small.ParameterCount];
            trainer.ReadParameters(result);
            return result;
        }
        Assert.Equal(Run(), Run());
    }
}
