using FleetLearn.Compute.Cpu;
using FleetLearn.Core.Model;
using FleetLearn.Core.Privacy;
using FleetLearn.Onnx;
using FleetLearn.Perception.Onnx;

namespace FleetLearn.Perception.Tests.Onnx;

public sealed class OnnxEvaluatorTests
{
    private static readonly OnnxModelOptions Cpu = new()
    {
        ExecutionProvider = ExecutionProviderPreference.Cpu, IntraOpThreads = 1, MaxBatchSize = 500, OutputName = OnnxExporter.ProbabilitiesOutput,
    };

    [Fact]
    public void Evaluate_ExportedHead_SameAccuracyAsTrainer()
    {
        var holdout = TestModels.Test.Take(3000);
        var checkpoint = TestModels.Trained(ModelSpec.Parse("784-64-10"), TestModels.Train);
        using var trainer = new CpuTrainer(checkpoint.Spec, 256);
        trainer.LoadParameters(checkpoint.Parameters);
        var expected = trainer.Evaluate(holdout);

        using var model = OnnxModel.Load(TestModels.Export(checkpoint), Cpu);
        var result = OnnxEvaluator.Evaluate(model, holdout);
        Assert.Equal(3000, result.Count);
        Assert.Equal(expected.Accuracy, result.Accuracy, 12);
        Assert.Equal(result.Accuracy, result.ReportedAccuracy);
        Assert.Null(result.Privacy);
        Assert.InRange(result.Accuracy, 0.6, 1.0);
    }

    [Fact]
    public void Evaluate_Laplace_NoiseScaleIsSensitivityOverEpsilon()
    {
        var holdout = TestModels.Test.Take(500);
        var spec = ModelSpec.Parse("784-10");
        using var model = OnnxModel.Load(TestModels.Export(new Checkpoint(spec, 0, ModelInitializer.Initialize(spec, 1))), Cpu);
        var privacy = new AccuracyPrivacy(AccuracyNoise.Laplace, 0.5);
        var result = OnnxEvaluator.Evaluate(model, holdout, privacy, new SeededNoiseSource(3));
        Assert.Equal(1.0 / 500 / 0.5, result.NoiseScale, 15);
        Assert.NotEqual(result.Accuracy, result.ReportedAccuracy);
        Assert.InRange(result.ReportedAccuracy, 0, 1);
    }

    [Fact]
    public void Laplace_ManyDraws_MeanAbsoluteDeviationIsTheScale()
    {
        var noise = new SeededNoiseSource(11);
        double sum = 0, sumAbs = 0;
        const int n = 200_000;
        for (int i = 0; i < n; i++)
        {
            double x = OnnxEvaluator.Laplace(noise);
            sum += x;
            sumAbs += Math.Abs(x);
        }
        Assert.InRange(sum / n, -0.01, 0.01);
        Assert.InRange(sumAbs / n, 0.99, 1.01); // E|X| = b = 1
    }

    [Fact]
    public void AccuracyPrivacy_GaussianAboveEpsilonOne_Rejected()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new AccuracyPrivacy(AccuracyNoise.Gaussian, 2));
        Assert.Contains("ε ≤ 1", e.Message, StringComparison.Ordinal);
        var gaussian = new AccuracyPrivacy(AccuracyNoise.Gaussian, 1, 1e-5);
        Assert.Equal(1.0 / 1000 * Math.Sqrt(2 * Math.Log(1.25e5)), gaussian.NoiseScale(1000), 12);
    }

    [Fact]
    public void Evaluate_LabelsAndRowsDisagree_ClearError()
    {
        var spec = ModelSpec.Parse("4-3");
        using var model = OnnxModel.Load(TestModels.Export(new Checkpoint(spec, 0, ModelInitializer.Initialize(spec, 1))), Cpu);
        var e = Assert.Throws<ArgumentException>(() => OnnxEvaluator.Evaluate(model, new float[9], new byte[] { 0, 1 }));
        Assert.Contains("2 labels need 8 input values", e.Message, StringComparison.Ordinal);
    }
}
