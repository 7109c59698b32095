using FleetLearn.Core.Model;
using FleetLearn.Core.Privacy;
using FleetLearn.Onnx;
using FleetLearn.Perception.Onnx;
using FleetLearn.Perception.Tests.Onnx;

namespace FleetLearn.Perception.Tests.Attacks;

/// <summary>
/// Issue 13 item 8: a floating-point Laplace draw added to an accuracy leaks through its low-order bits (Mironov 2012);
/// the report must be the integer count plus discrete Laplace noise, so every reported accuracy is k/n.
/// </summary>
public sealed class EvaluationReportAttackTests
{
    [Fact]
    public void FloatingPointLaplaceOnAccuracy_ReportedAccuracy_IsANoisyIntegerCountOverN()
    {
        var holdout = TestModels.Test.Take(500);
        var spec = ModelSpec.Parse("784-10");
        using var model = OnnxModel.Load(TestModels.Export(new Checkpoint(spec, 0, ModelInitializer.Initialize(spec, 1))), new OnnxModelOptions
        {
            ExecutionProvider = ExecutionProviderPreference.Cpu, IntraOpThreads = 1, MaxBatchSize = 500, OutputName = OnnxExporter.ProbabilitiesOutput,
        });
        for (ulong seed = 1; seed <= 20; seed++)
        {
            var result = OnnxEvaluator.Evaluate(model, holdout, new AccuracyPrivacy(AccuracyNoise.Laplace, 0.5), new SeededNoiseSource(seed));
            double count = result.ReportedAccuracy * 500;
            Assert.Equal(Math.Round(count), count, 9);
        }
    }
}
