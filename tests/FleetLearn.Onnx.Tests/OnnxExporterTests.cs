using FleetLearn.Core.Model;

namespace FleetLearn.Onnx.Tests;

/// <summary>The head export read back with the library's own protobuf reader: no ONNX Runtime in this project (Perception.Tests runs the exports through it).</summary>
public sealed class OnnxExporterTests
{
    private static readonly ModelSpec Spec = ModelSpec.Parse("20-8-3");

    [Fact]
    public void ExportHead_ReadBack_IrOpsetInputsOutputsAndMetadata()
    {
        var checkpoint = new Checkpoint(Spec, 41, ModelInitializer.Initialize(Spec, 3), """{"round":40}""");
        using var stream = new MemoryStream();
        var result = OnnxExporter.ExportHead(checkpoint, stream);
        var model = Read(stream.ToArray());

        Assert.Equal(stream.Length, result.Bytes);
        Assert.Equal(8, model.IrVersion);
        Assert.Equal(13, model.Opset);
        Assert.Equal([OnnxExporter.FeaturesInput], model.Inputs);
        Assert.Equal([OnnxExporter.LogitsOutput, OnnxExporter.ProbabilitiesOutput], model.Outputs);
        // Two Gemm layers, one Relu between them, Softmax at the end.
        Assert.Equal(["Gemm", "Relu", "Gemm", "Softmax"], model.Ops);
        Assert.Equal(4, model.Initializers); // weight and bias per layer
        Assert.Equal("head", model.Metadata[OnnxExporter.Keys.Kind]);
        Assert.Equal("20-8-3", model.Metadata[OnnxExporter.Keys.ModelSpec]);
        Assert.Equal("41", model.Metadata[OnnxExporter.Keys.ModelVersion]);
        Assert.Equal("40", model.Metadata[OnnxExporter.Keys.Round]);
        Assert.Equal(Checkpoint.ParameterHash(checkpoint.Parameters), model.Metadata[OnnxExporter.Keys.ParametersSha256]);
        Assert.Equal(result.Metadata.OrderBy(kv => kv.Key), model.Metadata.OrderBy(kv => kv.Key));
    }

    [Fact]
    public void ExportToFile_NaNParameter_ThrowsAndLeavesNoFile()
    {
        var parameters = ModelInitializer.Initialize(Spec, 3);
        parameters[5] = float.NaN;
        var dir = Directory.CreateTempSubdirectory("fleetlearn-onnx-");
        try
        {
            string path = Path.Combine(dir.FullName, "head.onnx");
            var e = Assert.Throws<ArgumentException>(() => OnnxExporter.ExportToFile(new Checkpoint(Spec, 1, parameters), path));
            Assert.Equal("The checkpoint holds a NaN or infinite parameter; it cannot be exported.", e.Message);
            Assert.Empty(dir.GetFileSystemInfos()); // neither head.onnx nor head.onnx.tmp
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public void ExportToFile_Twice_SameBytesAndNoTemporaryLeft()
    {
        var dir = Directory.CreateTempSubdirectory("fleetlearn-onnx-");
        try
        {
            string path = Path.Combine(dir.FullName, "models", "head.onnx");
            var checkpoint = new Checkpoint(Spec, 2, ModelInitializer.Initialize(Spec, 7));
            OnnxExporter.ExportToFile(checkpoint, path);
            var first = File.ReadAllBytes(path);
            OnnxExporter.ExportToFile(checkpoint, path);
            Assert.Equal(first, File.ReadAllBytes(path));
            Assert.Equal(["head.onnx"], Directory.GetFiles(Path.GetDirectoryName(path)!).Select(f => Path.GetFileName(f)));
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public void Assembly_ReferencesNeitherOnnxRuntimeNorPerception()
    {
        // The point of this library: the aggregator exports models without ONNX Runtime (and its CUDA provider).
        var references = typeof(OnnxExporter).Assembly.GetReferencedAssemblies().Select(a => a.Name!).ToList();
        Assert.DoesNotContain(references, n => n.StartsWith("Microsoft.ML", StringComparison.Ordinal) || n == "FleetLearn.Perception");
        Assert.Contains("FleetLearn.Core", references);
    }

    private sealed record ReadModel(long IrVersion, long Opset, List<string> Inputs, List<string> Outputs, List<string> Ops, int Initializers,
        Dictionary<string, string> Metadata);

    private static ReadModel Read(byte[] bytes)
    {
        long ir = 0, opset = 0;
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        byte[] graph = [];
        var reader = new ProtoReader(bytes);
        while (reader.TryRead(out var field))
        {
            switch (field.Number)
            {
                case OnnxProto.ModelIrVersion: ir = (long)field.Value; break;
                case OnnxProto.ModelGraph: graph = field.Payload.ToArray(); break;
                case OnnxProto.ModelOpsetImport:
                    opset = (long)Field(field.Payload, OnnxProto.OpsetVersion).Value;
                    break;
                case OnnxProto.ModelMetadataProps:
                    metadata[Text(field.Payload, OnnxProto.EntryKey)] = Text(field.Payload, OnnxProto.EntryValue);
                    break;
            }
        }
        List<string> inputs = [], outputs = [], ops = [];
        int initializers = 0;
        var g = new ProtoReader(graph);
        while (g.TryRead(out var field))
        {
            switch (field.Number)
            {
                case OnnxProto.GraphInput: inputs.Add(Text(field.Payload, OnnxProto.ValueInfoName)); break;
                case OnnxProto.GraphOutput: outputs.Add(Text(field.Payload, OnnxProto.ValueInfoName)); break;
                case OnnxProto.GraphNode: ops.Add(Text(field.Payload, OnnxProto.NodeOpType)); break;
                case OnnxProto.GraphInitializer: initializers++; break;
            }
        }
        return new ReadModel(ir, opset, inputs, outputs, ops, initializers, metadata);
    }

    private static string Text(ReadOnlySpan<byte> message, int number) => Field(message, number).Text;

    private static Found Field(ReadOnlySpan<byte> message, int number)
    {
        var reader = new ProtoReader(message);
        while (reader.TryRead(out var f))
        {
            if (f.Number == number) return new Found(f.Value, f.Wire == WireType.LengthDelimited ? f.Text : "");
        }
        throw new InvalidOperationException($"field {number} not found");
    }

    private readonly record struct Found(ulong Value, string Text);
}
