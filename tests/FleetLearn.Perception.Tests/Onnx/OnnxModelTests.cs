using FleetLearn.Core.Model;
using FleetLearn.Perception.Onnx;

namespace FleetLearn.Perception.Tests.Onnx;

public sealed class OnnxModelTests
{
    private static readonly OnnxModelOptions Cpu = new() { ExecutionProvider = ExecutionProviderPreference.Cpu, IntraOpThreads = 1 };

    private static bool HasNvidiaGpu => File.Exists("/dev/nvidiactl") || File.Exists("/dev/nvidia0");

    [SkippableFact]
    public void Load_PreferCudaWithoutGpu_FallsBackToCpuAndSaysWhy()
    {
        Skip.If(HasNvidiaGpu, "This machine has an NVIDIA GPU: the CUDA provider may load.");
        var log = new List<string>();
        using var model = OnnxModel.Load(GeneratedBackbone.Create(), new OnnxModelOptions { IntraOpThreads = 1, Log = log.Add });
        Assert.Equal("CPU", model.ExecutionProvider);
        var line = Assert.Single(log);
        Assert.Contains("CUDA execution provider not available", line, StringComparison.Ordinal);
        Assert.Contains("on the CPU execution provider", line, StringComparison.Ordinal);
        // And it works.
        Assert.Equal(GeneratedBackbone.FeatureSize, model.Run(new float[model.RowSize * 3], 3).Length / 3);
    }

    [SkippableFact]
    public void Load_RequireCudaWithoutGpu_ClearError()
    {
        Skip.If(HasNvidiaGpu, "This machine has an NVIDIA GPU: the CUDA provider may load.");
        var e = Assert.Throws<OnnxModelException>(() => OnnxModel.Load(GeneratedBackbone.Create(), Cpu with { ExecutionProvider = ExecutionProviderPreference.RequireCuda }));
        Assert.Contains("CUDA execution provider is required but did not load", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Load_GeneratedBackbone_DeclaredShapesAndFeatureWidth()
    {
        using var model = OnnxModel.Load(GeneratedBackbone.Create(), Cpu);
        Assert.Equal(GeneratedBackbone.InputName, model.InputName);
        Assert.Equal(GeneratedBackbone.OutputName, model.OutputName);
        Assert.Equal([1, 28, 28], model.RowShape);
        Assert.Equal(GeneratedBackbone.FeatureSize, model.OutputSize);
        Assert.Equal(0, model.FixedBatchSize);
    }

    [Fact]
    public void Load_WrongDeclaredInputShape_NamesBothShapes()
    {
        var e = Assert.Throws<OnnxModelException>(() => OnnxModel.Load(GeneratedBackbone.Create(), Cpu with { RowShape = [3, 224, 224] }));
        Assert.Contains("input 'image' has shape [batch,1,28,28]", e.Message, StringComparison.Ordinal);
        Assert.Contains("declared frame shape [3x224x224] does not match", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Load_MissingOutputName_ListsTheOutputs()
    {
        var e = Assert.Throws<OnnxModelException>(() => OnnxModel.Load(GeneratedBackbone.Create(), Cpu with { OutputName = "logits" }));
        Assert.Contains("has no output 'logits'", e.Message, StringComparison.Ordinal);
        Assert.Contains("'features' float[batch,833]", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Load_TwoOutputsNoneNamed_AsksForOne()
    {
        var spec = ModelSpec.Parse("4-3");
        var bytes = TestModels.Export(new Checkpoint(spec, 0, ModelInitializer.Initialize(spec, 1)));
        var e = Assert.Throws<OnnxModelException>(() => OnnxModel.Load(bytes, Cpu));
        Assert.Contains("has 2 outputs", e.Message, StringComparison.Ordinal);
        Assert.Contains("name the one to read", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Load_CorruptFile_ClearError()
    {
        var bytes = GeneratedBackbone.Create();
        var garbage = new byte[bytes.Length];
        new Random(5).NextBytes(garbage);
        var e = Assert.Throws<OnnxModelException>(() => OnnxModel.Load(garbage, Cpu, "garbage.onnx"));
        Assert.Contains("'garbage.onnx' is not a valid ONNX model", e.Message, StringComparison.Ordinal);

        var truncated = bytes.AsSpan(0, bytes.Length / 2).ToArray();
        e = Assert.Throws<OnnxModelException>(() => OnnxModel.Load(truncated, Cpu, "truncated.onnx"));
        Assert.Contains("'truncated.onnx' is not a valid ONNX model", e.Message, StringComparison.Ordinal);

        e = Assert.Throws<OnnxModelException>(() => OnnxModel.Load([], Cpu, "empty.onnx"));
        Assert.Contains("the file is empty", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Load_MissingFile_FileNotFound()
    {
        var path = Path.Combine(Path.GetTempPath(), $"fleetlearn-missing-{Guid.NewGuid():N}.onnx");
        var e = Assert.Throws<FileNotFoundException>(() => OnnxModel.Load(path, Cpu));
        Assert.Contains(path, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Run_WrongRowLength_ClearError()
    {
        using var model = OnnxModel.Load(GeneratedBackbone.Create(), Cpu);
        var e = Assert.Throws<ArgumentException>(() => model.Run(new float[783], 1));
        Assert.Contains("rows of shape [1x28x28] are 784 floats; got 783", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Run_ManyBatches_SameAsOneRowAtATime()
    {
        var frames = TestModels.Test.Features.AsSpan(0, 300 * 784).ToArray();
        using var batched = OnnxModel.Load(GeneratedBackbone.Create(), Cpu with { MaxBatchSize = 64 });
        var all = batched.Run(frames, 300);
        using var single = OnnxModel.Load(GeneratedBackbone.Create(), Cpu with { MaxBatchSize = 1 });
        for (int r = 0; r < 300; r += 37)
        {
            var one = single.Run(frames.AsSpan(r * 784, 784), 1);
            for (int i = 0; i < one.Length; i++) Assert.Equal(one[i], all[r * one.Length + i], 5);
        }
    }
}
