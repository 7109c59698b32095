using System.Diagnostics;
using FleetLearn.Perception.Features;
using FleetLearn.Perception.Onnx;

namespace FleetLearn.Perception.Tests.Onnx;

/// <summary>The package's pretrained ResNet18, composed with its preprocessing and a dynamic batch.</summary>
public sealed class ResNet18BackboneTests
{
    private static readonly OnnxModelOptions Cpu = new() { ExecutionProvider = ExecutionProviderPreference.Cpu, IntraOpThreads = 2, MaxBatchSize = 4 };

    [Fact]
    public void Create_FromPackageRestore_DynamicBatchOf512Features()
    {
        using var model = OnnxModel.Load(ResNet18Backbone.Create(), Cpu, "resnet18");
        Assert.Equal(0, model.FixedBatchSize);
        Assert.Equal(4, model.BatchSize);
        Assert.Equal([3, 224, 224], model.RowShape);
        Assert.Equal(512, model.OutputSize);
        Assert.Equal(ResNet18Backbone.InputName, model.InputName);
    }

    [Fact]
    public void Compose_TruncatedFile_OnnxModelExceptionNamingTheFile()
    {
        // FleetLearn.Onnx's reader reports malformed protobuf as InvalidDataException; Perception's callers catch OnnxModelException.
        var e = Assert.Throws<OnnxModelException>(() => ResNet18Backbone.Compose([0x3a, 0x05, 0x0a], [0x3a, 0x00]));
        Assert.Equal("ResNetPreprocess.onnx: Not a valid ONNX model (protobuf is malformed: field 7 claims 5 bytes but 1 remain).", e.Message);
        Assert.IsType<InvalidDataException>(e.InnerException);
    }

    [Fact]
    public void Run_BatchOfThree_EqualsThePackageFilesRunFrameByFrame()
    {
        string root = ResNet18Backbone.ResolveFolder();
        using var composed = OnnxModel.Load(ResNet18Backbone.Create(), Cpu, "resnet18");
        using var prep = OnnxModel.Load(Path.Combine(root, ResNet18Backbone.PreprocessFile), Cpu);
        using var net = OnnxModel.Load(Path.Combine(root, ResNet18Backbone.NetworkFile), Cpu);
        Assert.Equal(1, net.FixedBatchSize); // the file as shipped: batch 1 only
        var resampler = new FrameResampler([1, 28, 28], ResNet18Backbone.FrameShape);
        var frames = new float[3 * resampler.DestinationSize];
        for (int i = 0; i < 3; i++) resampler.Convert(TestModels.Test.Row(i), frames.AsSpan(i * resampler.DestinationSize, resampler.DestinationSize));
        var batched = composed.Run(frames, 3);
        for (int i = 0; i < 3; i++)
        {
            var pixels = frames.AsSpan(i * resampler.DestinationSize, resampler.DestinationSize).ToArray().Select(v => v * 255f).ToArray();
            var expected = net.Run(prep.Run(pixels, 1), 1);
            double scale = expected.Max(Math.Abs);
            for (int k = 0; k < 512; k++) Assert.True(Math.Abs(expected[k] - batched[i * 512 + k]) <= 1e-4 * scale + 1e-5, $"frame {i} feature {k}: {batched[i * 512 + k]} vs {expected[k]}");
        }
        // Different garments, different features (the weights are loaded, not zeros).
        Assert.NotEqual(batched.AsSpan(0, 512).ToArray(), batched.AsSpan(512, 512).ToArray());
    }

    [Fact]
    public void ResolveFolder_Missing_SaysWhichPackageBringsIt()
    {
        var e = Assert.Throws<FileNotFoundException>(() => ResNet18Backbone.ResolveFolder(Path.Combine(Path.GetTempPath(), "no-such-folder")));
        Assert.Contains("Microsoft.ML.DnnImageFeaturizer.ResNet18", e.Message, StringComparison.Ordinal);
    }

    [SkippableFact]
    public void Repository_HoldsNoOnnxFile()
    {
        string? dir = AppContext.BaseDirectory;
        while (dir is not null && !Directory.Exists(Path.Combine(dir, ".git")) && !File.Exists(Path.Combine(dir, ".git"))) dir = Path.GetDirectoryName(dir);
        Skip.If(dir is null, "not inside a git checkout");
        var start = new ProcessStartInfo("git") { WorkingDirectory = dir, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "ls-files", "*.onnx", "**/*.onnx" }) start.ArgumentList.Add(a);
        using var git = Process.Start(start)!;
        string tracked = git.StandardOutput.ReadToEnd();
        git.WaitForExit();
        Assert.Equal(0, git.ExitCode);
        Assert.Equal("", tracked.Trim());
    }
}
