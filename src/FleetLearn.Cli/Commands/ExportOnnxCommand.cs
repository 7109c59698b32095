using FleetLearn.Onnx;
using System.CommandLine;
using System.Globalization;
using FleetLearn.Compute.Cpu;
using FleetLearn.Core.Model;
using FleetLearn.Core.Random;
using FleetLearn.Perception.Onnx;

namespace FleetLearn.Cli.Commands;

/// <summary>
/// <c>fleetlearn export-onnx</c>: a checkpoint as an ONNX model (the head alone, or fused behind a backbone), then a
/// check that ONNX Runtime's output equals FleetLearn's own forward pass on random inputs.
/// </summary>
internal static class ExportOnnxCommand
{
    public static Command Create()
    {
        var checkpoint = new Option<string>("--checkpoint") { Description = "model.ckpt to export.", Required = true };
        var output = new Option<string>("--out") { Description = "ONNX file to write.", Required = true };
        var backbone = new BackboneCli("--with-backbone", "Fuse this backbone in front of the head: 'generated' or an ONNX file.");
        var verifyRows = new Option<int>("--verify-rows") { Description = "Random inputs on which ONNX Runtime is compared with FleetLearn's forward pass (0: skip).", DefaultValueFactory = _ => 256 };
        var json = new Option<bool>("--json") { Description = "End with one JSON line on stdout." };
        var command = new Command("export-onnx", "Export a checkpoint to ONNX (Gemm/Relu/Softmax, opset 13, dynamic batch, identity in metadata_props).")
        {
            checkpoint, output, verifyRows, json,
        };
        foreach (var o in backbone.All) command.Options.Add(o);
        command.SetAction(parse =>
        {
            var stdout = parse.InvocationConfiguration.Output;
            string path = parse.GetValue(output)!;
            CliOutput.CheckFile(path);
            var model = Checkpoint.Load(parse.GetValue(checkpoint)!);
            bool fused = backbone.IsSet(parse);
            OnnxExportResult result;
            try
            {
                result = fused ? BackboneFusion.ExportToFile(model, path, backbone.Source(parse)) : OnnxExporter.ExportToFile(model, path);
            }
            catch (OnnxModelException e) when (fused)
            {
                // The exporter knows the backbone only as bytes: name the file the user gave.
                throw new OnnxModelException($"--with-backbone '{parse.GetValue(backbone.Backbone)}': {e.Message.Replace("'backbone' ", "", StringComparison.Ordinal)}", e);
            }
            long bytes = new FileInfo(path).Length;
            stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"wrote {path} ({bytes:N0} bytes): input '{result.InputName}' → {string.Join(", ", result.OutputNames.Select(n => $"'{n}'"))}; model {model.Spec} version {model.Version} round {result.Metadata[OnnxExporter.Keys.Round]}{(fused ? $", behind backbone output '{result.Metadata[OnnxExporter.Keys.BackboneOutput]}'" : "")}"));
            stdout.WriteLine($"parameters sha256 {result.Metadata[OnnxExporter.Keys.ParametersSha256]}");

            int rows = Math.Max(0, parse.GetValue(verifyRows));
            double? maxDifference = null;
            if (rows > 0)
            {
                maxDifference = Verify(model, path, fused ? backbone.Source(parse) : null, rows);
                stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"verified: ONNX Runtime logits equal FleetLearn's forward pass on {rows} random inputs within {maxDifference:E2}"));
                if (maxDifference > 1e-4)
                    throw new InvalidOperationException($"The exported model differs from the checkpoint by {maxDifference:E2}; please report this.");
            }
            if (parse.GetValue(json))
            {
                CliJson.Write(stdout, new
                {
                    path,
                    bytes,
                    input = result.InputName,
                    outputs = result.OutputNames,
                    model = model.Spec.ToString(),
                    version = model.Version,
                    parameters_sha256 = result.Metadata[OnnxExporter.Keys.ParametersSha256],
                    fused,
                    max_difference = maxDifference,
                });
            }
            return 0;
        });
        return command;
    }

    /// <summary>Largest |ONNX Runtime logit − FleetLearn logit| over random inputs (frames in [0, 1) for a fused model).</summary>
    private static double Verify(Checkpoint model, string path, BackboneSource? backbone, int rows)
    {
        var cpu = new OnnxModelOptions { ExecutionProvider = ExecutionProviderPreference.Cpu, IntraOpThreads = 1, OutputName = OnnxExporter.LogitsOutput };
        using var exported = OnnxModel.Load(path, cpu);
        var rng = new DeterministicRandom(0x0E0E);
        var inputs = new float[rows * exported.RowSize];
        for (int i = 0; i < inputs.Length; i++) inputs[i] = rng.NextSingle();
        var logits = exported.Run(inputs, rows);

        float[] features = inputs;
        if (backbone is not null)
        {
            using var b = OnnxModel.Load(backbone.Model, cpu with { OutputName = backbone.OutputName, RowShape = backbone.RowShape });
            features = b.Run(inputs, rows);
        }
        using var trainer = new CpuTrainer(model.Spec, Math.Min(rows, 256));
        trainer.LoadParameters(model.Parameters);
        var expected = new float[rows * model.Spec.OutputSize];
        trainer.Forward(features, rows, expected);
        double max = 0;
        for (int i = 0; i < expected.Length; i++) max = Math.Max(max, Math.Abs(expected[i] - logits[i]));
        return max;
    }
}
