using System.Security.Cryptography;
using FleetLearn.Core.Model;
using FleetLearn.Onnx;

namespace FleetLearn.Perception.Onnx;

/// <summary>The backbone to fuse in front of the head: its ONNX bytes and which of its tensors are the input and the features.</summary>
/// <param name="Model">The backbone's ONNX file.</param>
/// <param name="OutputName">Feature tensor; null: the backbone's only output.</param>
/// <param name="InputName">Frame input; null: the backbone's only input.</param>
/// <param name="RowShape">Frame shape when the backbone leaves it symbolic (see <see cref="OnnxModelOptions.RowShape"/>).</param>
public sealed record BackboneSource(byte[] Model, string? OutputName = null, string? InputName = null, IReadOnlyList<int>? RowShape = null);

/// <summary>
/// Fuses a backbone in front of the head that <see cref="OnnxExporter"/> writes: one graph from frames to
/// <c>logits</c> and <c>probabilities</c>. Lives here, not in FleetLearn.Onnx, because ONNX Runtime checks the backbone first.
/// </summary>
public static class BackboneFusion
{
    /// <summary>
    /// Writes one graph: the backbone's nodes, then (Flatten when its features are not already <c>[batch, F]</c>) the
    /// head. The fused model's input is the backbone's; its outputs are <c>logits</c> and <c>probabilities</c>. The
    /// backbone keeps its own IR version and opset (raising an opset can change what its nodes mean); the head's
    /// operators read the same in every opset from 7 on.
    /// </summary>
    public static OnnxExportResult Export(Checkpoint checkpoint, BackboneSource backbone, Stream destination)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        ArgumentNullException.ThrowIfNull(backbone);
        ArgumentNullException.ThrowIfNull(destination);
        var spec = OnnxExporter.Validate(checkpoint);

        // ONNX Runtime validates the backbone, resolves the tensor names and measures the feature width.
        string input, output;
        int[] featureShape;
        using (var session = OnnxModel.Load(backbone.Model, new OnnxModelOptions
        {
            InputName = backbone.InputName, OutputName = backbone.OutputName, RowShape = backbone.RowShape,
            ExecutionProvider = ExecutionProviderPreference.Cpu, IntraOpThreads = 1,
        }, "backbone"))
        {
            input = session.InputName;
            output = session.OutputName;
            featureShape = [.. session.OutputRowShape];
            if (session.OutputSize != spec.InputSize)
                throw new ArgumentException($"The backbone's '{output}' gives {session.OutputSize} features per frame (shape [{OnnxModel.Shape(featureShape)}]) but model {spec} takes {spec.InputSize} inputs.");
        }

        var parsed = ParseModel(backbone.Model);
        if (parsed.DefaultOpset < 7)
            throw new ArgumentException($"The backbone imports ai.onnx opset {parsed.DefaultOpset}; fusing needs opset 7 or later.");
        foreach (var reserved in new[] { OnnxExporter.LogitsOutput, OnnxExporter.ProbabilitiesOutput })
        {
            if (parsed.Names.Contains(reserved))
                throw new ArgumentException($"The backbone already has a tensor named '{reserved}'; it cannot be fused with the head's output of that name.");
        }
        string prefix = "fleetlearn_head";
        while (parsed.Names.Any(n => n.StartsWith(prefix, StringComparison.Ordinal))) prefix += "_";

        var head = new OnnxGraph(prefix + "/");
        string headInput = output;
        if (featureShape.Length != 1)
        {
            headInput = $"{prefix}/flat";
            head.Node("Flatten", [output], [headInput], new OnnxAttribute.Int("axis", 1));
        }
        OnnxExporter.AddHead(head, checkpoint, headInput, prefix);
        head.Output(OnnxExporter.LogitsOutput, "batch", spec.OutputSize);
        head.Output(OnnxExporter.ProbabilitiesOutput, "batch", spec.OutputSize);

        var graph = new ProtoWriter();
        var reader = new ProtoReader(parsed.Graph);
        while (reader.TryRead(out var field))
        {
            if (field.Number == OnnxProto.GraphOutput) continue; // replaced by the head's outputs
            if (field.Number == OnnxProto.GraphName) { graph.String(OnnxProto.GraphName, "fleetlearn_backbone_head"); continue; }
            graph.Raw(field.Encoded);
        }
        graph.Raw(head.EncodedNodes);
        graph.Raw(head.EncodedInitializers);
        graph.Raw(head.EncodedOutputs);

        var metadata = OnnxExporter.Metadata(checkpoint, "backbone+head");
        metadata[OnnxExporter.Keys.BackboneSha256] = Convert.ToHexStringLower(SHA256.HashData(backbone.Model));
        metadata[OnnxExporter.Keys.BackboneOutput] = output;
        var allMetadata = parsed.Metadata.Where(kv => !kv.Key.StartsWith("fleetlearn.", StringComparison.Ordinal) && !metadata.ContainsKey(kv.Key))
            .Concat(metadata).ToList();
        var model = new ProtoWriter();
        model.Int64(OnnxProto.ModelIrVersion, parsed.IrVersion);
        model.String(OnnxProto.ModelProducerName, "FleetLearn");
        model.String(OnnxProto.ModelProducerVersion, OnnxGraph.ProducerVersion);
        model.String(OnnxProto.ModelDomain, "ai.fleetlearn");
        model.Int64(OnnxProto.ModelVersion, checkpoint.Version);
        model.String(OnnxProto.ModelDocString, OnnxExporter.Doc(spec, output));
        model.Bytes(OnnxProto.ModelGraph, graph.WrittenSpan);
        foreach (var opset in parsed.Opsets) model.Raw(opset);
        foreach (var function in parsed.Functions) model.Raw(function);
        foreach (var (key, value) in allMetadata)
            model.Message(OnnxProto.ModelMetadataProps, e => e.String(OnnxProto.EntryKey, key).String(OnnxProto.EntryValue, value));
        destination.Write(model.WrittenSpan);
        return new OnnxExportResult(input, [OnnxExporter.LogitsOutput, OnnxExporter.ProbabilitiesOutput], metadata, model.Length);
    }

    /// <summary>Writes the fused model to a file (atomically: temporary file, then rename).</summary>
    public static OnnxExportResult ExportToFile(Checkpoint checkpoint, string path, BackboneSource backbone) =>
        OnnxExporter.WriteAtomically(path, stream => Export(checkpoint, backbone, stream));

    /// <summary>The parts of a ModelProto the fusion needs; every other top-level field is dropped.</summary>
    private sealed record ParsedModel(long IrVersion, long DefaultOpset, List<byte[]> Opsets, List<byte[]> Functions, byte[] Graph,
        HashSet<string> Names, List<KeyValuePair<string, string>> Metadata);

    private static ParsedModel ParseModel(byte[] bytes)
    {
        try
        {
            return ReadModel(bytes);
        }
        catch (InvalidDataException e)
        {
            throw new OnnxModelException($"backbone: {e.Message}", e);
        }
    }

    private static ParsedModel ReadModel(byte[] bytes)
    {
        long ir = 0, defaultOpset = 0;
        var opsets = new List<byte[]>();
        var functions = new List<byte[]>();
        var metadata = new List<KeyValuePair<string, string>>();
        byte[]? graph = null;
        var reader = new ProtoReader(bytes);
        while (reader.TryRead(out var field))
        {
            switch (field.Number)
            {
                case OnnxProto.ModelIrVersion when field.Wire == WireType.Varint:
                    ir = (long)field.Value;
                    break;
                case OnnxProto.ModelOpsetImport when field.Wire == WireType.LengthDelimited:
                {
                    opsets.Add(field.Encoded.ToArray());
                    string domain = "";
                    long version = 0;
                    var o = new ProtoReader(field.Payload);
                    while (o.TryRead(out var f))
                    {
                        if (f.Number == OnnxProto.OpsetDomain && f.Wire == WireType.LengthDelimited) domain = f.Text;
                        else if (f.Number == OnnxProto.OpsetVersion && f.Wire == WireType.Varint) version = (long)f.Value;
                    }
                    if (domain is "" or "ai.onnx") defaultOpset = Math.Max(defaultOpset, version);
                    break;
                }
                case OnnxProto.ModelGraph when field.Wire == WireType.LengthDelimited:
                    graph = field.Payload.ToArray();
                    break;
                case 25 when field.Wire == WireType.LengthDelimited: // ModelProto.functions: local functions the nodes may call
                    functions.Add(field.Encoded.ToArray());
                    break;
                case OnnxProto.ModelMetadataProps when field.Wire == WireType.LengthDelimited:
                {
                    string key = "", value = "";
                    var e = new ProtoReader(field.Payload);
                    while (e.TryRead(out var f))
                    {
                        if (f.Number == OnnxProto.EntryKey) key = f.Text;
                        else if (f.Number == OnnxProto.EntryValue) value = f.Text;
                    }
                    metadata.Add(new(key, value));
                    break;
                }
            }
        }
        if (graph is null) throw new OnnxModelException("The backbone has no graph.");
        if (ir < 3) throw new OnnxModelException($"The backbone declares IR version {ir}; FleetLearn fuses models of IR version 3 or later.");
        return new ParsedModel(ir, defaultOpset, opsets, functions, graph, CollectNames(graph), metadata);
    }

    /// <summary>Every tensor and node name of a graph's top level (inputs, outputs, initializers, node inputs, outputs and names).</summary>
    private static HashSet<string> CollectNames(byte[] graph)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        var reader = new ProtoReader(graph);
        while (reader.TryRead(out var field))
        {
            if (field.Wire != WireType.LengthDelimited) continue;
            int nameField = field.Number switch
            {
                OnnxProto.GraphInput or OnnxProto.GraphOutput or OnnxProto.GraphValueInfo => OnnxProto.ValueInfoName,
                OnnxProto.GraphInitializer => OnnxProto.TensorName,
                _ => 0,
            };
            if (field.Number == OnnxProto.GraphNode)
            {
                var node = new ProtoReader(field.Payload);
                while (node.TryRead(out var f))
                {
                    if (f.Number is OnnxProto.NodeInput or OnnxProto.NodeOutput or OnnxProto.NodeName && f.Wire == WireType.LengthDelimited)
                        names.Add(f.Text);
                }
            }
            else if (nameField != 0)
            {
                var inner = new ProtoReader(field.Payload);
                while (inner.TryRead(out var f))
                {
                    if (f.Number == nameField && f.Wire == WireType.LengthDelimited) names.Add(f.Text);
                }
            }
        }
        return names;
    }
}
