using System.Globalization;
using System.Text.Json;
using FleetLearn.Core.Model;

namespace FleetLearn.Onnx;

/// <summary>What an export wrote: the tensor names and the metadata.</summary>
public sealed record OnnxExportResult(string InputName, IReadOnlyList<string> OutputNames, IReadOnlyDictionary<string, string> Metadata, long Bytes);

/// <summary>
/// Writes the perception head as an ONNX model with FleetLearn's own protobuf writer: <c>Gemm(transB=1) → Relu → … →
/// Gemm</c> giving <c>logits</c>, then <c>Softmax(axis=1)</c> giving <c>probabilities</c>, opset 13, IR version 8, a
/// symbolic batch dimension, and the model's identity in <c>metadata_props</c>. The aggregator calls
/// <see cref="ExportHead"/> for every published global model; this library needs no ONNX Runtime, so neither does the
/// aggregator (FleetLearn.Perception's <c>BackboneFusion</c> fuses a backbone in front of the same head).
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

    /// <summary>Writes the head to a file (atomically: temporary file, then rename).</summary>
    public static OnnxExportResult ExportToFile(Checkpoint checkpoint, string path) =>
        WriteAtomically(path, stream => ExportHead(checkpoint, stream));

    /// <summary>Runs <paramref name="export"/> into <c>path.tmp</c>, flushes it to disk and renames it to <paramref name="path"/>; a failed export leaves nothing behind.</summary>
    internal static OnnxExportResult WriteAtomically(string path, Func<Stream, OnnxExportResult> export)
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
                result = export(stream);
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

    /// <summary>The checkpoint's spec, after checking its parameter count and that every parameter is finite.</summary>
    internal static ModelSpec Validate(Checkpoint checkpoint)
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

    /// <summary>Adds the head's nodes and initializers reading <paramref name="input"/>, ending in <see cref="LogitsOutput"/> and <see cref="ProbabilitiesOutput"/>.</summary>
    internal static void AddHead(OnnxGraph graph, Checkpoint checkpoint, string input, string prefix)
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

    /// <summary>The <see cref="Keys"/> entries for a checkpoint; <paramref name="kind"/> is <c>head</c> or <c>backbone+head</c>.</summary>
    internal static Dictionary<string, string> Metadata(Checkpoint checkpoint, string kind)
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

    /// <summary>The model's doc string.</summary>
    internal static string Doc(ModelSpec spec, string? backboneOutput) =>
        $"FleetLearn perception head {spec}: Gemm(transB=1)+Relu per hidden layer, Gemm to '{LogitsOutput}', Softmax(axis=1) to '{ProbabilitiesOutput}'." +
        (backboneOutput is null ? "" : $" Reads the backbone's '{backboneOutput}'.");
}
