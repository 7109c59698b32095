using System.Globalization;
using FleetLearn.Compute.Cpu;
using FleetLearn.Core.Model;
using FleetLearn.Core.Random;
using FleetLearn.Core.Training;
using FleetLearn.Perception.Onnx;
using Xunit.Abstractions;

namespace FleetLearn.Perception.Tests.Onnx;

/// <summary>
/// How the generated backbone's design was chosen: features of variants, then 3 epochs of a 200-unit MLP (lr 0.05,
/// batch 50) and the Fashion-MNIST test accuracy. About a minute per variant, so it runs only on request:
/// <c>FLEETLEARN_TUNE=1 dotnet test tests/FleetLearn.Perception.Tests --filter BackboneTuning --logger "console;verbosity=detailed"</c>.
/// </summary>
public sealed class BackboneTuningTests(ITestOutputHelper output)
{
    [SkippableTheory]
    [InlineData(0f, 0)] // raw pixels
    [InlineData(2f, 2)] // the generated backbone
    [InlineData(1f, 2)]
    [InlineData(2f, 4)]
    public void Variant_ThreeEpochs_ReportsFeatureScaleAndAccuracy(float gain, int cell)
    {
        Skip.IfNot(Environment.GetEnvironmentVariable("FLEETLEARN_TUNE") == "1", "set FLEETLEARN_TUNE=1 to run the tuning runs");
        var train = TestModels.Train;
        var test = TestModels.Test;
        if (cell > 0)
        {
            using var backbone = OnnxModel.Load(GeneratedBackbone.Create(gain, cell), new OnnxModelOptions { ExecutionProvider = ExecutionProviderPreference.Cpu, IntraOpThreads = 1 });
            train = new LabeledData(backbone.Run(train.Features, train.Count), train.Labels, backbone.OutputSize, 10);
            test = new LabeledData(backbone.Run(test.Features, test.Count), test.Labels, backbone.OutputSize, 10);
        }
        var spec = new ModelSpec([train.FeatureSize, 200, 10]);
        using var trainer = new CpuTrainer(spec, 50);
        trainer.LoadParameters(ModelInitializer.Initialize(spec, 1));
        long step = 0;
        var indices = Enumerable.Range(0, train.Count).ToArray();
        var rng = new DeterministicRandom(1);
        var accuracy = new List<double>();
        for (int e = 0; e < 3; e++)
        {
            TrainingLoop.RunEpoch(trainer, train, indices, 50, new SgdOptions(0.05f), new LearningRateSchedule.Constant(0.05f), ref step, 0, rng);
            accuracy.Add(trainer.Evaluate(test).Accuracy);
        }
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"gain {gain} cell {cell}: {train.FeatureSize} features, mean {train.Features.Average():F3}; test accuracy by epoch {string.Join(" ", accuracy.Select(a => a.ToString("F4", CultureInfo.InvariantCulture)))}"));
        Assert.True(accuracy[^1] > 0.5);
    }
}
