using FleetLearn.Compute.Cpu;
using FleetLearn.Core.Model;
using FleetLearn.Core.Random;
using FleetLearn.Core.Training;
using FleetLearn.Perception.Datasets;

namespace FleetLearn.Perception.Tests.Onnx;

/// <summary>Shared fixtures: Fashion-MNIST loaded once, a briefly trained checkpoint.</summary>
internal static class TestModels
{
    private static readonly Lazy<LabeledData> s_train = new(() => FashionMnist.LoadTrain());
    private static readonly Lazy<LabeledData> s_test = new(() => FashionMnist.LoadTest());

    public static LabeledData Train => s_train.Value;

    public static LabeledData Test => s_test.Value;

    /// <summary>A model trained for one epoch over <paramref name="rows"/> rows of <paramref name="data"/> (realistic weights, not just the initialization).</summary>
    public static Checkpoint Trained(ModelSpec spec, LabeledData data, int rows = 3000, ulong seed = 7, long version = 12)
    {
        using var trainer = new CpuTrainer(spec, 50);
        trainer.LoadParameters(ModelInitializer.Initialize(spec, seed));
        var indices = Enumerable.Range(0, Math.Min(rows, data.Count)).ToArray();
        long step = 0;
        TrainingLoop.RunEpoch(trainer, data, indices, 50, new SgdOptions(0.05f), new LearningRateSchedule.Constant(0.05f), ref step, 0, new DeterministicRandom(seed));
        var parameters = new float[spec.ParameterCount];
        trainer.ReadParameters(parameters);
        return new Checkpoint(spec, version, parameters, """{"round":12,"note":"test"}""");
    }

    public static float[] Logits(Checkpoint checkpoint, ReadOnlySpan<float> rows, int count)
    {
        using var trainer = new CpuTrainer(checkpoint.Spec, 256);
        trainer.LoadParameters(checkpoint.Parameters);
        var logits = new float[count * checkpoint.Spec.OutputSize];
        trainer.Forward(rows, count, logits);
        return logits;
    }

    public static byte[] Export(Checkpoint checkpoint)
    {
        using var stream = new MemoryStream();
        FleetLearn.Onnx.OnnxExporter.ExportHead(checkpoint, stream);
        return stream.ToArray();
    }
}
