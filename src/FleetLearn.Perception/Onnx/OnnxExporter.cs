using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text.Json;
using FleetLearn.Core.Model;

namespace FleetLearn.Perception.Onnx;

/// <summary>The backbone to fuse in front of the head: its ONNX bytes and which of its tensors are the input and the features.</summary>
/// <param name="Model">The backbone's ONNX file.</param>
/// <param name="OutputName">Feature tensor; null: the backbone's only output.</param>
/// <param name="InputName">Frame input; null: the backbone's only input.</param>
/// <param name="RowShape">Frame shape when the backbone leaves it symbolic (see <see cref="OnnxModelOptions.RowShape"/>).</param>
public sealed record BackboneSource(byte[] Model, string? OutputName = null, string? InputName = null, IReadOnlyList<int>? RowShape = null);

/// <summary>What an export wrote: the tensor names and the metadata.</summary>
public sealed record OnnxExportResult(string InputName, IReadOnlyList<string> OutputNames, IReadOnlyDictionary<string, string> Metadata, long Bytes);

/// <summary>
/// Writes the perception head (and optionally a backbone in front of it) as an ONNX model with FleetLearn's own
/// protobuf writer: <c>Gemm(transB=1) → Relu → … → Gemm</c> giving <c>logits</c>, then <c>Softmax(axis=1)</c> giving
/// <c>probabilities</c>, opset 13, IR version 8, a symbolic batch dimension, and the model's identity in
/// <c>metadata_props</c>. The aggregator calls <see cref="ExportHead"/> for every published global model.
/// </summary>
public static class OnnxExporter
{
    /// <summary>Input of a head-only model: <c>[batch, In]</c> feature rows.</summary>
    public const string FeaturesInput = "features";

    /// <summary>Pre-softmax scores <c>[batch, classes]</c>; equal to <c>ITrainer.Forward</c>.</summary>
    public const string LogitsOutput = "logits";

    /// <summary>Softmax of the logits <c>[batch, classes]</c>.</summary>
    public const string ProbabilitiesOutput = "probabilities";

    /// <summary>Metadata keys written into <c>metadata_props</c>.</summary>
    public static class Keys
    {
        /// <summary>Version of this metadata layout ("1").</summary>
        public const string Format = "fleetlearn.format";

        /// <summary><c>head</c> or <c>backbone+head</c>.</summary>
        public const string Kind = "fleetlearn.kind";

        /// <summary>Layer widths, e.g. <c>784-200-200-10</c>.</summary>
        public const string ModelSpec = "fleetlearn.model_spec";

        /// <summary>The checkpoint's model version (the global round that produced it).</summary>
        public const string ModelVersion = "fleetlearn.model_version";

        /// <summary>The federated round: the checkpoint metadata's <c>round</c> when present, else the model version.</summary>
        public const string Round = "fleetlearn.round";

        /// <summary>Hex SHA-256 of the parameters as little-endian float32 in the flat layout of <see cref="Core.Model.ModelSpec"/>.</summary>
        public const string ParametersSha256 = "fleetlearn.parameters_sha256";

        /// <summary>The checkpoint's JSON metadata, verbatim.</summary>
        public const string CheckpointMetadata = "fleetlearn.checkpoint_metadata";

        /// <summary>Hex SHA-256 of the backbone's ONNX file (fused models only).</summary>
        public const string BackboneSha256 = "fleetlearn.backbone_sha256";

        /// <summary>The backbone tensor the head reads (fused models only).</summary>
        public const string BackboneOutput = "fleetlearn.backbone_output";
    }

    /// <summary>Hex SHA-256 of parameters as little-endian float32: the identity of a model's weights.</summary>
    public static string ParameterHash(ReadOnlySpan<float> parameters) => Checkpoint.ParameterHash(parameters);

    /// <summary>Writes the head alone: input <c>features [batch, In]</c>, outputs <c>logits</c> and <c>probabilities</c>.</summary>
    public static OnnxExportResult ExportHead(Checkpoint checkpoint, Stream destination)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        ArgumentNullException.ThrowIfNull(destination);
        var spec = Validate(checkpoint);
        var graph = new OnnxGraph("head/");
        graph.Input(FeaturesInput, "batch", spec.InputSize);
        AddHead(graph, checkpoint, FeaturesInput, "head");
        graph.Output(LogitsOutput, "batch", spec.OutputSize);
        graph.Output(ProbabilitiesOutput, "batch", spec.OutputSize);
        var metadata = Metadata(checkpoint, "head");
        var bytes = OnnxGraph.Model(graph.ToGraphBytes("fleetlearn_head", $"FleetLearn perception head {spec}"),
            OnnxProto.IrVersion, [("", OnnxProto.Opset)], checkpoint.Version, metadata, Doc(spec, null));
        destination.Write(bytes);
        return new OnnxExportResult(FeaturesInput, [LogitsOutput, ProbabilitiesOutput], metadata, bytes.Length);
    }

    /// <summary>
    /// Writes one graph: the backbone's nodes, then (Flatten when its features are not already <c>[batch, F]</c>) the
    /// head. The fused model's input is the backbone's; its outputs are <c>logits</c> and <c>probabilities</c>. The
    /// backbone keeps its own IR version and opset (raising an opset can change what its nodes mean); the head's
    /// operators read the same in every opset from 7 on.
    /// </summary>
    public static OnnxExportResult ExportWithBackbone(Checkpoint checkpoint, BackboneSource backbone, Stream destination)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        ArgumentNullException.ThrowIfNull(backbone);
        ArgumentNullException.ThrowIfNull(destination);
        var spec = Validate(checkpoint);

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
        foreach (var reserved in new[] { LogitsOutput, ProbabilitiesOutput })
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
        AddHead(head, checkpoint, headInput, prefix);
        head.Output(LogitsOutput, "batch", spec.OutputSize);
        head.Output(ProbabilitiesOutput, "batch", spec.OutputSize);

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

        var metadata = Metadata(checkpoint, "backbone+head");
        metadata[Keys.BackboneSha256] = Convert.ToHexStringLower(SHA256.HashData(backbone.Model));
        metadata[Keys.BackboneOutput] = output;
        var allMetadata = parsed.Metadata.Where(kv => !kv.Key.StartsWith("fleetlearn.", StringComparison.Ordinal) && !metadata.ContainsKey(kv.Key))
            .Concat(metadata).ToList();
        var model = new ProtoWriter();
        model.Int64(OnnxProto.ModelIrVersion, parsed.IrVersion);
        model.String(OnnxProto.ModelProducerName, "FleetLearn");
        model.String(OnnxProto.ModelProducerVersion, OnnxGraph.ProducerVersion);
        model.String(OnnxProto.ModelDomain, "ai.fleetlearn");
        model.Int64(OnnxProto.ModelVersion, checkpoint.Version);
        model.String(OnnxProto.ModelDocString, Doc(spec, output));
        model.Bytes(OnnxProto.ModelGraph, graph.WrittenSpan);
        foreach (var opset in parsed.Opsets) model.Raw(opset);
        foreach (var function in parsed.Functions) model.Raw(function);
        foreach (var (key, value) in allMetadata)
            model.Message(OnnxProto.ModelMetadataProps, e => e.String(OnnxProto.EntryKey, key).String(OnnxProto.EntryValue, value));
        destination.Write(model.WrittenSpan);
        return new OnnxExportResult(input, [LogitsOutput, ProbabilitiesOutput], metadata, model.Length);
    }

    /// <summary>Writes the head to a file (atomically: temporary file, then rename).</summary>
    public static OnnxExportResult ExportToFile(Checkpoint checkpoint, string path, BackboneSource? backbone = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        var full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        var temp = full + ".tmp";
        OnnxExportResult result;
        try
        {
            using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
            {
                result = backbone is null ? ExportHead(checkpoint, stream) : ExportWithBackbone(checkpoint, backbone, stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            File.Delete(temp); // a failed export leaves nothing behind (File.Delete ignores a missing file)
            throw;
        }
        return result;
    }

    private static ModelSpec Validate(Checkpoint checkpoint)
    {
        var spec = checkpoint.Spec;
        if (checkpoint.Parameters.Length != spec.ParameterCount)
            throw new ArgumentException($"Checkpoint of {spec} holds {checkpoint.Parameters.Length} parameters; the model has {spec.ParameterCount}.");
        foreach (var p in checkpoint.Parameters)
        {
            if (!float.IsFinite(p)) throw new ArgumentException("The checkpoint holds a NaN or infinite parameter; it cannot be exported.");
        }
        return spec;
    }

    private static void AddHead(OnnxGraph graph, Checkpoint checkpoint, string input, string prefix)
    {
        var spec = checkpoint.Spec;
        var p = checkpoint.Parameters.AsSpan();
        string x = input;
        for (int l = 0; l < spec.LayerCount; l++)
        {
            int inputs = spec.InputsOf(l), outputs = spec.OutputsOf(l);
            string w = $"{prefix}/layer{l}/weight", b = $"{prefix}/layer{l}/bias";
            // W is Out × In row-major, exactly ONNX Gemm's B with transB = 1: y = x·Wᵀ + b.
            graph.Initializer(w, p.Slice(spec.WeightOffset(l), spec.WeightCount(l)), outputs, inputs);
            graph.Initializer(b, p.Slice(spec.BiasOffset(l), outputs), outputs);
            bool last = l == spec.LayerCount - 1;
            string y = last ? LogitsOutput : $"{prefix}/layer{l}/linear";
            graph.Node("Gemm", [x, w, b], [y], new OnnxAttribute.Int("transB", 1));
            if (!last)
            {
                string r = $"{prefix}/layer{l}/relu";
                graph.Node("Relu", [y], [r]);
                x = r;
            }
        }
        graph.Node("Softmax", [LogitsOutput], [ProbabilitiesOutput], new OnnxAttribute.Int("axis", 1));
    }

    private static Dictionary<string, string> Metadata(Checkpoint checkpoint, string kind)
    {
        long round = checkpoint.Version;
        try
        {
            using var json = JsonDocument.Parse(checkpoint.MetadataJson);
            if (json.RootElement.ValueKind == JsonValueKind.Object && json.RootElement.TryGetProperty("round", out var r) && r.TryGetInt64(out var value))
                round = value;
        }
        catch (JsonException)
        {
            // Metadata is free-form; a non-JSON string still travels verbatim below.
        }
        return new Dictionary<string, string>(StringComparer.Ordinal)
        {
            [Keys.Format] = "1",
            [Keys.Kind] = kind,
            [Keys.ModelSpec] = checkpoint.Spec.ToString(),
            [Keys.ModelVersion] = checkpoint.Version.ToString(CultureInfo.InvariantCulture),
            [Keys.Round] = round.ToString(CultureInfo.InvariantCulture),
            [Keys.ParametersSha256] = ParameterHash(checkpoint.Parameters),
            [Keys.CheckpointMetadata] = checkpoint.MetadataJson,
        };
    }

    private static string Doc(ModelSpec spec, string? backboneOutput) =>
        $"FleetLearn perception head {spec}: Gemm(transB=1)+Relu per hidden layer, Gemm to '{LogitsOutput}', Softmax(axis=1) to '{ProbabilitiesOutput}'." +
        (backboneOutput is null ? "" : $" Reads the backbone's '{backboneOutput}'.");

    /// <summary>The parts of a ModelProto the fusion needs; every other top-level field is dropped.</summary>
    private sealed record ParsedModel(long IrVersion, long DefaultOpset, List<byte[]> Opsets, List<byte[]> Functions, byte[] Graph,
        HashSet<string> Names, List<KeyValuePair<string, string>> Metadata);

    private static ParsedModel ParseModel(byte[] bytes)
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
