using FleetLearn.Onnx;
using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using FleetLearn.Core.Model;
using FleetLearn.Perception.Onnx;

namespace FleetLearn.Cli.Tests.Commands;

[Collection("Console")]
public sealed class PerceptionCommandTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("fleetlearn-onnx-cli-");

    public void Dispose() => _dir.Delete(true);

    private static (int Exit, string Out, string Err) Run(params string[] args)
    {
        var output = new StringWriter(CultureInfo.InvariantCulture);
        var error = new StringWriter(CultureInfo.InvariantCulture);
        int exit = FleetLearnCommand.Build().Parse(args).Invoke(new InvocationConfiguration { Output = output, Error = error, EnableDefaultExceptionHandler = false });
        return (exit, output.ToString(), error.ToString());
    }

    private static (int Exit, string Err) RunAsUser(params string[] args)
    {
        var error = new StringWriter(CultureInfo.InvariantCulture);
        var saved = Console.Error;
        Console.SetError(error);
        try
        {
            return (FleetLearnCommand.Run(args), error.ToString());
        }
        finally
        {
            Console.SetError(saved);
        }
    }

    private static JsonElement LastLineJson(string stdout) => JsonDocument.Parse(stdout.TrimEnd().Split('\n')[^1]).RootElement;

    private string SaveCheckpoint(string spec, long version = 5)
    {
        var model = ModelSpec.Parse(spec);
        var path = Path.Combine(_dir.FullName, $"{spec}.ckpt");
        new Checkpoint(model, version, ModelInitializer.Initialize(model, 2)).Save(path);
        return path;
    }

    [Fact]
    public void ExportOnnx_Checkpoint_WritesVerifiedModelWithItsIdentity()
    {
        var checkpoint = SaveCheckpoint("784-32-10");
        var onnx = Path.Combine(_dir.FullName, "model.onnx");
        var (exit, stdout, _) = Run("export-onnx", "--checkpoint", checkpoint, "--out", onnx, "--json");
        Assert.Equal(0, exit);
        var json = LastLineJson(stdout);
        Assert.Equal("features", json.GetProperty("input").GetString());
        Assert.True(json.GetProperty("max_difference").GetDouble() <= 1e-5);
        Assert.Contains("verified: ONNX Runtime logits equal FleetLearn's forward pass", stdout, StringComparison.Ordinal);
        using var model = OnnxModel.Load(onnx, new OnnxModelOptions { ExecutionProvider = ExecutionProviderPreference.Cpu, IntraOpThreads = 1, OutputName = "probabilities" });
        Assert.Equal(json.GetProperty("parameters_sha256").GetString(), model.Metadata[OnnxExporter.Keys.ParametersSha256]);
        Assert.Equal("5", model.Metadata[OnnxExporter.Keys.ModelVersion]);
    }

    [Fact]
    public void ExportOnnx_WithGeneratedBackbone_InputIsTheFrame()
    {
        var checkpoint = SaveCheckpoint($"{GeneratedBackbone.FeatureSize}-16-10");
        var onnx = Path.Combine(_dir.FullName, "fused.onnx");
        var (exit, stdout, _) = Run("export-onnx", "--checkpoint", checkpoint, "--out", onnx, "--with-backbone", "generated", "--onnx-provider", "cpu", "--json");
        Assert.Equal(0, exit);
        var json = LastLineJson(stdout);
        Assert.Equal("image", json.GetProperty("input").GetString());
        Assert.True(json.GetProperty("fused").GetBoolean());
        Assert.True(json.GetProperty("max_difference").GetDouble() <= 1e-4);
    }

    [Fact]
    public void ExportOnnx_CorruptBackboneFile_OneClearLineExit2()
    {
        var checkpoint = SaveCheckpoint("784-8-10");
        var backbone = Path.Combine(_dir.FullName, "backbone.onnx");
        File.WriteAllBytes(backbone, [0x08, 0x07, 0x3a, 0xff, 0x01, 0x02]);
        var (exit, stderr) = RunAsUser("export-onnx", "--checkpoint", checkpoint, "--out", Path.Combine(_dir.FullName, "x.onnx"), "--with-backbone", backbone);
        Assert.Equal(2, exit);
        Assert.Contains("is not a valid ONNX model", stderr, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(_dir.FullName, "x.onnx")));
    }

    [Fact]
    public void ExportOnnx_CorruptCheckpoint_OneClearLineExit2()
    {
        var checkpoint = Path.Combine(_dir.FullName, "bad.ckpt");
        File.WriteAllText(checkpoint, "not a checkpoint at all, but long enough to pass the size check of sixty bytes....");
        var (exit, stderr) = RunAsUser("export-onnx", "--checkpoint", checkpoint, "--out", Path.Combine(_dir.FullName, "x.onnx"));
        Assert.Equal(2, exit);
        Assert.Contains("Not a FleetLearn checkpoint", stderr, StringComparison.Ordinal);
    }

    [SkippableFact]
    public void BenchExtract_ResNet18_Batch1AndBestBatchNextToTorchvisionSameThreads()
    {
        Skip.IfNot(HasTorchvision(), "python3-torchvision is not installed");
        var (exit, stdout, stderr) = Run("bench", "extract", "--backbone", "resnet18", "--onnx-provider", "cpu", "--onnx-threads", "1", "--batch", "1,2", "--frames", "4", "--repeat", "1", "--json");
        Assert.True(exit == 0, stderr);
        var json = LastLineJson(stdout);
        Assert.Equal(512, json.GetProperty("feature_size").GetInt32());
        Assert.Equal(1, json.GetProperty("threads").GetInt32());
        Assert.True(json.GetProperty("frames_per_second_batch1").GetDouble() > 0);
        Assert.Contains(json.GetProperty("best_batch").GetInt32(), new[] { 1, 2 });
        var peer = json.GetProperty("peer");
        Assert.True(peer.ValueKind == System.Text.Json.JsonValueKind.Object, stderr);
        Assert.True(peer.GetProperty("frames_per_second_batch1").GetDouble() > 0);
        Assert.True(json.GetProperty("vs_peer").GetDouble() > 0);
    }

    private static bool HasTorchvision()
    {
        if (!File.Exists("/usr/bin/python3")) return false;
        var start = new System.Diagnostics.ProcessStartInfo("/usr/bin/python3") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var a in new[] { "-c", "import torchvision" }) start.ArgumentList.Add(a);
        using var python = System.Diagnostics.Process.Start(start)!;
        python.StandardError.ReadToEnd();
        return python.WaitForExit(60_000) && python.ExitCode == 0;
    }

    [Fact]
    public void BenchExtract_SmallRun_ReportsFramesPerSecondOnCpu()
    {
        var (exit, stdout, stderr) = Run("bench", "extract", "--frames", "500", "--repeat", "1", "--onnx-threads", "1", "--json");
        Assert.Equal(0, exit);
        var json = LastLineJson(stdout);
        Assert.True(json.GetProperty("frames_per_second").GetDouble() > 0);
        Assert.True(json.GetProperty("single_frame_per_second").GetDouble() > 0);
        Assert.Equal(GeneratedBackbone.FeatureSize, json.GetProperty("feature_size").GetInt32());
        if (!File.Exists("/dev/nvidiactl"))
        {
            Assert.Equal("CPU", json.GetProperty("provider").GetString());
            Assert.Contains("CUDA execution provider not available", stderr, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Simulate_GeneratedBackbone_TrainsOnFeatures()
    {
        var (exit, stdout, stderr) = Run("simulate", "--backbone", "generated", "--onnx-threads", "1", "--vehicles", "20", "--fraction", "0.2", "--rounds", "2",
            "--local-epochs", "1", "--workers", "1", "--target", "0.99", "--model", $"{GeneratedBackbone.FeatureSize}-32-10", "--json");
        Assert.Equal(0, exit);
        Assert.Contains("features: generated [1x28x28] → 833", stderr, StringComparison.Ordinal);
        Assert.Contains("70,000 extracted", stderr, StringComparison.Ordinal);
        var summary = LastLineJson(stdout);
        Assert.InRange(summary.GetProperty("final_accuracy").GetDouble(), 0.6, 1.0);
    }

    [Fact]
    public void Simulate_BackboneAndPixelWidthModel_SaysWhichModelFits()
    {
        var (exit, stderr) = RunAsUser("simulate", "--backbone", "generated", "--model", "784-200-200-10", "--onnx-threads", "1");
        Assert.Equal(2, exit);
        Assert.Contains($"the backbone gives {GeneratedBackbone.FeatureSize} features per frame; use --model {GeneratedBackbone.FeatureSize}-200-200-10", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Simulate_MissingBackboneOutputName_ListsOutputs()
    {
        var (exit, stderr) = RunAsUser("simulate", "--backbone", "generated", "--backbone-output", "embedding", "--onnx-threads", "1");
        Assert.Equal(2, exit);
        Assert.Contains("has no output 'embedding'", stderr, StringComparison.Ordinal);
    }
}
