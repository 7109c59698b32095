using FleetLearn.Core.Model;
using FleetLearn.Onnx;
using FleetLearn.Perception.Features;
using FleetLearn.Perception.Onnx;

namespace FleetLearn.Perception.Tests.Onnx;

public sealed class OnnxExporterTests(Xunit.Abstractions.ITestOutputHelper output)
{
    private static readonly OnnxModelOptions Cpu = new() { ExecutionProvider = ExecutionProviderPreference.Cpu, IntraOpThreads = 1, MaxBatchSize = 1000 };

    [Fact]
    public void ExportHead_FashionMnistTestSet_OnnxRuntimeEqualsOwnForwardWithin1e5()
    {
        var test = TestModels.Test;
        var checkpoint = TestModels.Trained(ModelSpec.TwoNN, TestModels.Train);
        var bytes = TestModels.Export(checkpoint);
        var expected = TestModels.Logits(checkpoint, test.Features, test.Count);

        using var logitsModel = OnnxModel.Load(bytes, Cpu with { OutputName = OnnxExporter.LogitsOutput });
        var logits = logitsModel.Run(test.Features, test.Count);
        using var probabilitiesModel = OnnxModel.Load(bytes, Cpu with { OutputName = OnnxExporter.ProbabilitiesOutput });
        var probabilities = probabilitiesModel.Run(test.Features, test.Count);

        Assert.Equal(expected.Length, logits.Length);
        double maxLogit = 0, maxProbability = 0;
        int classes = checkpoint.Spec.OutputSize;
        for (int r = 0; r < test.Count; r++)
        {
            var z = expected.AsSpan(r * classes, classes);
            double max = double.NegativeInfinity, sum = 0;
            foreach (var v in z) max = Math.Max(max, v);
            foreach (var v in z) sum += Math.Exp(v - max);
            for (int c = 0; c < classes; c++)
            {
                maxLogit = Math.Max(maxLogit, Math.Abs(logits[r * classes + c] - z[c]));
                maxProbability = Math.Max(maxProbability, Math.Abs(probabilities[r * classes + c] - Math.Exp(z[c] - max) / sum));
            }
        }
        output.WriteLine($"Fashion-MNIST test set ({test.Count} images), 784-200-200-10: max |logit difference| {maxLogit:E2}, max |probability difference| {maxProbability:E2}");
        Assert.True(maxLogit <= 1e-5, $"max |logit difference| = {maxLogit:E2}");
        Assert.True(maxProbability <= 1e-5, $"max |probability difference| = {maxProbability:E2}");
    }

    [Fact]
    public void ExportHead_Metadata_CarriesSpecVersionRoundAndParameterHash()
    {
        var checkpoint = new Checkpoint(ModelSpec.Parse("20-8-3"), 41, ModelInitializer.Initialize(ModelSpec.Parse("20-8-3"), 3), """{"round":40}""");
        using var model = OnnxModel.Load(TestModels.Export(checkpoint), Cpu with { OutputName = OnnxExporter.ProbabilitiesOutput });

        Assert.Equal(OnnxExporter.FeaturesInput, model.InputName);
        Assert.Equal([20], model.RowShape);
        Assert.Equal(0, model.FixedBatchSize); // symbolic batch dimension
        Assert.Equal("20-8-3", model.Metadata[OnnxExporter.Keys.ModelSpec]);
        Assert.Equal("41", model.Metadata[OnnxExporter.Keys.ModelVersion]);
        Assert.Equal("40", model.Metadata[OnnxExporter.Keys.Round]);
        Assert.Equal("head", model.Metadata[OnnxExporter.Keys.Kind]);
        Assert.Equal(OnnxExporter.ParameterHash(checkpoint.Parameters), model.Metadata[OnnxExporter.Keys.ParametersSha256]);
        Assert.Equal(64, model.Metadata[OnnxExporter.Keys.ParametersSha256].Length);
        Assert.Equal("""{"round":40}""", model.Metadata[OnnxExporter.Keys.CheckpointMetadata]);
    }

    [Fact]
    public void ExportHead_SameCheckpointTwice_IdenticalBytes()
    {
        var spec = ModelSpec.Parse("30-5-4");
        var checkpoint = new Checkpoint(spec, 1, ModelInitializer.Initialize(spec, 9));
        Assert.Equal(TestModels.Export(checkpoint), TestModels.Export(checkpoint));
    }

    [Fact]
    public void BackboneFusionExport_GeneratedBackbone_EqualsBackboneThenHead()
    {
        var test = TestModels.Test.Take(2000);
        var spec = new ModelSpec([GeneratedBackbone.FeatureSize, 64, 10]);
        using var backbone = OnnxModel.Load(GeneratedBackbone.Create(), Cpu);
        var features = backbone.Run(test.Features, test.Count);
        var checkpoint = TestModels.Trained(spec, new Core.Training.LabeledData(features, test.Labels, spec.InputSize, 10), rows: 2000);
        var expected = TestModels.Logits(checkpoint, features, test.Count);

        using var stream = new MemoryStream();
        var result = BackboneFusion.Export(checkpoint, new BackboneSource(GeneratedBackbone.Create()), stream);
        Assert.Equal(GeneratedBackbone.InputName, result.InputName);
        using var fused = OnnxModel.Load(stream.ToArray(), Cpu with { OutputName = OnnxExporter.LogitsOutput });
        Assert.Equal(GeneratedBackbone.FrameShape, fused.RowShape);
        Assert.Equal("backbone+head", fused.Metadata[OnnxExporter.Keys.Kind]);
        Assert.Equal(GeneratedBackbone.OutputName, fused.Metadata[OnnxExporter.Keys.BackboneOutput]);
        var logits = fused.Run(test.Features, test.Count);
        double max = 0;
        for (int i = 0; i < logits.Length; i++) max = Math.Max(max, Math.Abs(logits[i] - expected[i]));
        Assert.True(max <= 1e-4, $"max |logit difference| = {max:E2}");
    }

    [Fact]
    public void BackboneFusionExport_FeatureWidthDiffers_ClearError()
    {
        var spec = ModelSpec.Parse("100-10");
        var checkpoint = new Checkpoint(spec, 0, ModelInitializer.Initialize(spec, 1));
        var e = Assert.Throws<ArgumentException>(() => BackboneFusion.Export(checkpoint, new BackboneSource(GeneratedBackbone.Create()), Stream.Null));
        Assert.Contains($"gives {GeneratedBackbone.FeatureSize} features per frame", e.Message, StringComparison.Ordinal);
        Assert.Contains("takes 100 inputs", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void BackboneFusionExport_MissingOutputName_ListsTheOutputs()
    {
        var spec = new ModelSpec([GeneratedBackbone.FeatureSize, 10]);
        var checkpoint = new Checkpoint(spec, 0, ModelInitializer.Initialize(spec, 1));
        var e = Assert.Throws<OnnxModelException>(() => BackboneFusion.Export(checkpoint, new BackboneSource(GeneratedBackbone.Create(), OutputName: "embedding"), Stream.Null));
        Assert.Contains("has no output 'embedding'", e.Message, StringComparison.Ordinal);
        Assert.Contains("'features' float[batch,833]", e.Message, StringComparison.Ordinal);
    }
}
