using FleetLearn.Onnx;
using System.Diagnostics;
using FleetLearn.Core.Model;
using FleetLearn.Perception.Onnx;

namespace FleetLearn.Perception.Tests.Onnx;

/// <summary>
/// The exported files pass an independent ONNX implementation's checker: Debian's python3-onnx
/// (<c>onnx.checker.check_model</c> with <c>full_check</c>, which also runs ONNX's shape inference).
/// Skipped on a developer machine without python3-onnx; in CI (<c>CI=true</c>) a missing checker fails.
/// </summary>
public sealed class OnnxCheckerTests
{
    private const string Python = "/usr/bin/python3";

    [SkippableFact]
    public void CheckModel_ExportedHeadFusedModelAndGeneratedBackbone_Pass()
    {
        var (available, why) = Run("-c", "import onnx");
        bool ci = string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase);
        if (!available)
        {
            Assert.False(ci, $"CI must have the independent ONNX checker (Debian package python3-onnx): {why}");
            Skip.If(true, $"python3-onnx is not installed ({why}); apt-get install -y python3-onnx");
        }

        var dir = Directory.CreateTempSubdirectory("fleetlearn-onnx-check-");
        try
        {
            var head = ModelSpec.Parse("784-200-200-10");
            OnnxExporter.ExportToFile(new Checkpoint(head, 3, ModelInitializer.Initialize(head, 1), """{"round":3}"""), Path.Combine(dir.FullName, "head.onnx"));
            var onFeatures = new ModelSpec([GeneratedBackbone.FeatureSize, 64, 10]);
            BackboneFusion.ExportToFile(new Checkpoint(onFeatures, 3, ModelInitializer.Initialize(onFeatures, 1)), Path.Combine(dir.FullName, "fused.onnx"),
                new BackboneSource(GeneratedBackbone.Create()));
            File.WriteAllBytes(Path.Combine(dir.FullName, "backbone.onnx"), GeneratedBackbone.Create());

            const string script = """
                import sys, onnx
                for path in sys.argv[1:]:
                    model = onnx.load(path)
                    onnx.checker.check_model(model, full_check=True)
                    meta = {p.key: p.value for p in model.metadata_props}
                    print(path, model.ir_version, [(o.domain, o.version) for o in model.opset_import], meta.get('fleetlearn.kind'))
                """;
            var (ok, output) = Run("-c", script, Path.Combine(dir.FullName, "head.onnx"), Path.Combine(dir.FullName, "fused.onnx"), Path.Combine(dir.FullName, "backbone.onnx"));
            Assert.True(ok, output);
            Assert.Contains("head.onnx 8 [('', 13)] head", output, StringComparison.Ordinal);
            Assert.Contains("fused.onnx 8 [('', 13)] backbone+head", output, StringComparison.Ordinal);
            Assert.Contains("backbone.onnx 8 [('', 13)] generated-backbone", output, StringComparison.Ordinal);
        }
        finally
        {
            dir.Delete(true);
        }
    }

    private static (bool Ok, string Output) Run(params string[] args)
    {
        if (!File.Exists(Python)) return (false, $"{Python} does not exist");
        var start = new ProcessStartInfo(Python) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        string stdout = process.StandardOutput.ReadToEnd();
        if (!process.WaitForExit(60_000))
        {
            process.Kill(entireProcessTree: true);
            return (false, "python3 did not finish within 60 s");
        }
        return (process.ExitCode == 0, stdout + stderr.Result);
    }
}
