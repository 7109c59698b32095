using FleetLearn.Compute.Cpu;
using FleetLearn.Core.Model;
using FleetLearn.Core.Random;
using FleetLearn.Core.Training;

namespace FleetLearn.Compute.Tests.Cpu;

public sealed class CpuTrainerBehaviourTests
{
    private static readonly ModelSpec Small = ModelSpec.Parse("37-19-13-5");

    [Fact]
    public void TrainBatch_AfterWarmUp_AllocatesNothing()
    {
        var data = ReferenceMlp.RandomData(64, Small.InputSize, Small.OutputSize, seed: 21);
        using var trainer = new CpuTrainer(Small, 16);
        trainer.LoadParameters(ModelInitializer.Initialize(Small, 3));
        trainer.SetProximalTerm(ModelInitializer.Initialize(Small, 4), 0.01f);
        int[] batch = Enumerable.Range(0, 16).ToArray();
        int[] small = [5, 1, 60];
        var plain = new SgdOptions(0.05f);
        var full = new SgdOptions(0.05f, 0.9f, 1e-4f);
        var logits = new float[16 * Small.OutputSize];
        // Warm-up: JIT, tiering and any lazy initialization.
        for (int i = 0; i < 3; i++)
        {
            trainer.TrainBatch(data, batch, plain);
            trainer.TrainBatch(data, small, full);
            trainer.Forward(data.Features, 16, logits);
        }

        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 50; i++)
        {
            trainer.TrainBatch(data, batch, plain);
            trainer.TrainBatch(data, small, full);
            trainer.Forward(data.Features, 16, logits);
        }
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal(0, allocated);
    }

    [Fact]
    public void TrainBatch_SeparableProblem_DrivesLossDown()
    {
        // Three Gaussian clusters in 20 dimensions, well apart: a small MLP must separate them.
        var spec = ModelSpec.Parse("20-16-3");
        var rng = new DeterministicRandom(31);
        const int n = 600;
        var centers = new float[3 * 20];
        for (int i = 0; i < centers.Length; i++) centers[i] = (float)(rng.NextGaussian() * 2);
        var x = new float[n * 20];
        var y = new byte[n];
        for (int r = 0; r < n; r++)
        {
            y[r] = (byte)rng.NextInt(3);
            for (int f = 0; f < 20; f++) x[r * 20 + f] = centers[y[r] * 20 + f] + (float)(rng.NextGaussian() * 0.5);
        }
        var data = new LabeledData(x, y, 20, 3, "clusters");
        using var trainer = new CpuTrainer(spec, 16);
        trainer.LoadParameters(ModelInitializer.Initialize(spec, 8));
        var before = trainer.Evaluate(data);

        var order = Enumerable.Range(0, n).ToArray();
        for (int step = 0; step < 300; step++)
        {
            if (step % (n / 16) == 0) rng.Shuffle(order.AsSpan());
            int at = step % (n / 16) * 16;
            trainer.TrainBatch(data, order.AsSpan(at, 16), new SgdOptions(0.05f, 0.5f));
        }
        var after = trainer.Evaluate(data);

        Assert.True(after.Loss < 0.05 * before.Loss, $"loss {before.Loss} -> {after.Loss}");
        Assert.True(after.Accuracy > 0.98, $"accuracy {after.Accuracy}");
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public void TrainBatch_SeveralThreads_MatchesOneThreadBitForBit(int threads)
    {
        var spec = ModelSpec.Parse("53-41-29-7");
        var data = ReferenceMlp.RandomData(96, spec.InputSize, spec.OutputSize, seed: 41);
        float[] Run(int t)
        {
            using var trainer = new CpuTrainer(spec, 32, t) { ParallelThreshold = 0 };
            trainer.LoadParameters(ModelInitializer.Initialize(spec, 5));
            for (int b = 0; b < 3; b++)
                trainer.TrainBatch(data, Enumerable.Range(b * 32, 32 - b).ToArray(), new SgdOptions(0.1f, 0.9f, 1e-3f));
            var result = new float[spec.ParameterCount];
            trainer.ReadParameters(result);
            return result;
        }

        Assert.Equal(Run(1), Run(threads));
    }

    [Fact]
    public void Evaluate_BatchOfOne_MatchesLargeBatch()
    {
        var data = ReferenceMlp.RandomData(29, Small.InputSize, Small.OutputSize, seed: 51);
        var p = ModelInitializer.Initialize(Small, 6);
        using var one = new CpuTrainer(Small, 1);
        using var many = new CpuTrainer(Small, 64);
        one.LoadParameters(p);
        many.LoadParameters(p);

        var a = one.Evaluate(data, 3, 20);
        var b = many.Evaluate(data, 3, 20);

        Assert.Equal(20, a.Count);
        Assert.Equal(b.Accuracy, a.Accuracy);
        Assert.Equal(b.Loss, a.Loss, 1e-5);
    }

    [Fact]
    public void TrainBatch_BatchOfOne_MatchesReferenceGradientStep()
    {
        var data = ReferenceMlp.RandomData(4, Small.InputSize, Small.OutputSize, seed: 61);
        var p = ModelInitializer.Initialize(Small, 7);
        using var trainer = new CpuTrainer(Small, 1);
        trainer.LoadParameters(p);

        trainer.TrainBatch(data, [2], new SgdOptions(0.1f));

        var actual = new float[p.Length];
        trainer.ReadParameters(actual);
        var g = new double[p.Length];
        ReferenceMlp.LossAndGradient(Small, p, data, [2], g);
        for (int i = 0; i < p.Length; i++)
            Assert.True(Math.Abs(p[i] - 0.1 * g[i] - actual[i]) <= 1e-4 * (1 + Math.Abs(p[i])), $"w[{i}]");
    }

    [Fact]
    public void TrainBatch_InvalidOptionsOrData_Throws()
    {
        var data = ReferenceMlp.RandomData(8, Small.InputSize, Small.OutputSize, seed: 71);
        var wrongWidth = ReferenceMlp.RandomData(8, 36, Small.OutputSize, seed: 72);
        using var trainer = new CpuTrainer(Small, 4);
        trainer.LoadParameters(ModelInitializer.Initialize(Small, 1));

        Assert.Throws<ArgumentOutOfRangeException>(() => trainer.TrainBatch(data, [0], new SgdOptions(float.NaN)));
        Assert.Throws<ArgumentOutOfRangeException>(() => trainer.TrainBatch(data, [0], new SgdOptions(0.1f, Momentum: 1f)));
        Assert.Throws<ArgumentOutOfRangeException>(() => trainer.TrainBatch(data, [-1], new SgdOptions(0.1f)));
        Assert.Throws<ArgumentException>(() => trainer.TrainBatch(data, [], new SgdOptions(0.1f)));
        Assert.Throws<ArgumentException>(() => trainer.TrainBatch(wrongWidth, [0], new SgdOptions(0.1f)));
        Assert.Throws<ArgumentException>(() => trainer.ComputeGradient(data, [0], new float[3]));
        Assert.Throws<ArgumentOutOfRangeException>(() => trainer.Evaluate(data, 5, 4));
        Assert.Throws<ArgumentOutOfRangeException>(() => trainer.SetProximalTerm(new float[Small.ParameterCount], float.NaN));
    }

    [Fact]
    public void Constructor_Default_NamesVectorWidthAndThreads()
    {
        using var one = new CpuTrainer(Small, 4);
        using var two = new CpuTrainer(Small, 4, threads: 2);
        string isa = System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated ? "AVX-512" : System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated ? "AVX2" : "";

        Assert.StartsWith($"cpu ({isa}", one.Description);
        Assert.EndsWith(", 1 thread)", one.Description);
        Assert.EndsWith(", 2 threads)", two.Description);
        Assert.Throws<ArgumentOutOfRangeException>(() => new CpuTrainer(Small, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new CpuTrainer(Small, 4, threads: 0));
    }

    [Fact]
    public void ResetOptimizerState_ThenStep_StartsMomentumAfresh()
    {
        var data = ReferenceMlp.RandomData(16, Small.InputSize, Small.OutputSize, seed: 81);
        var p = ModelInitializer.Initialize(Small, 9);
        var sgd = new SgdOptions(0.1f, 0.9f);
        using var a = new CpuTrainer(Small, 8);
        using var b = new CpuTrainer(Small, 8);
        a.LoadParameters(p);
        a.TrainBatch(data, Enumerable.Range(8, 8).ToArray(), sgd);
        var mid = new float[p.Length];
        a.ReadParameters(mid);
        a.ResetOptimizerState();
        a.TrainBatch(data, Enumerable.Range(0, 8).ToArray(), sgd);
        b.LoadParameters(mid);
        b.TrainBatch(data, Enumerable.Range(0, 8).ToArray(), sgd);

        var pa = new float[p.Length];
        var pb = new float[p.Length];
        a.ReadParameters(pa);
        b.ReadParameters(pb);
        Assert.Equal(pb, pa);
    }
}
