using FleetLearn.Onnx;

namespace FleetLearn.Perception.Onnx;

/// <summary>
/// The ImageNet-pretrained ResNet18 that NuGet package <c>Microsoft.ML.DnnImageFeaturizer.ResNet18</c> ships as ONNX,
/// composed with its preprocessing graph into one backbone with a dynamic batch: RGB frames <c>[batch, 3, 224, 224]</c>
/// with pixels in [0, 1] → 512 features.
/// </summary>
/// <remarks>
/// <para>The package's two files (both opset 8, a fixed batch of 1): <c>ResNetPreprocess.onnx</c> turns RGB pixels in
/// 0..255 into the network's BGR order minus a mean image (Split → Concat → Sub); <c>ResNet18.onnx</c> (CNTK export,
/// input <c>Input247</c>, output <c>Pooling395_Output_0</c> [1, 512, 1, 1]) is the network up to its global pool.</para>
/// <para>Composed graph: <c>frames</c> × 255 → preprocess → Identity → ResNet18 → Flatten → <c>features [batch, 512]</c>.
/// The batch dimension becomes symbolic: every node is batch-independent (convolutions, batch norm, pooling, and a
/// mean image of shape [1, 3, 224, 224] that broadcasts), so only the declared shapes fixed it. The graph inputs that
/// merely list initializers (the IR 3 convention of the CNTK export) are dropped and the model is written as IR 4, so
/// ONNX Runtime treats the weights as constants and can fold batch norm into the convolutions.</para>
/// </remarks>
public static class ResNet18Backbone
{
    /// <summary>The value of <c>--backbone</c> that selects it.</summary>
    public const string Name = "resnet18";

    /// <summary>The input tensor of the composed model.</summary>
    public const string InputName = "frames";

    /// <summary>The feature tensor of the composed model.</summary>
    public const string OutputName = "features";

    /// <summary>Features per frame.</summary>
    public const int FeatureSize = 512;

    /// <summary>Frame shape: RGB, 224×224.</summary>
    public static IReadOnlyList<int> FrameShape { get; } = [3, 224, 224];

    /// <summary>Where the files lie below the folder of a binary built with FleetLearn.Perception (copied by its csproj).</summary>
    public const string ModelFolder = "DnnImageModels";

    /// <summary>The network file, relative to <see cref="ModelFolder"/>'s parent.</summary>
    public static string NetworkFile { get; } = Path.Combine(ModelFolder, "ResNet18Onnx", "ResNet18.onnx");

    /// <summary>The preprocessing file, relative to <see cref="ModelFolder"/>'s parent.</summary>
    public static string PreprocessFile { get; } = Path.Combine(ModelFolder, "ResNetPrepOnnx", "ResNetPreprocess.onnx");

    /// <summary>True when <paramref name="source"/> names this backbone.</summary>
    public static bool Matches(string source) => source.Trim().Equals(Name, StringComparison.OrdinalIgnoreCase);

    /// <summary>
    /// The folder holding <see cref="NetworkFile"/>: <paramref name="folder"/> when given, else <c>$FLEETLEARN_RESNET18</c>,
    /// else the running binary's folder (where the build copies the package's files).
    /// </summary>
    public static string ResolveFolder(string? folder = null)
    {
        var candidates = new List<string>();
        if (!string.IsNullOrWhiteSpace(folder)) candidates.Add(folder);
        else
        {
            if (Environment.GetEnvironmentVariable("FLEETLEARN_RESNET18") is { Length: > 0 } env) candidates.Add(env);
            candidates.Add(AppContext.BaseDirectory);
        }
        foreach (var c in candidates)
        {
            if (File.Exists(Path.Combine(c, NetworkFile)) && File.Exists(Path.Combine(c, PreprocessFile))) return c;
        }
        throw new FileNotFoundException(
            $"The resnet18 backbone's files ({NetworkFile}, {PreprocessFile}) are not in {string.Join(" or ", candidates.Select(c => $"'{c}'"))}. " +
            "They come from the NuGet package Microsoft.ML.DnnImageFeaturizer.ResNet18 0.24.0, which the build of FleetLearn.Perception restores " +
            "and copies next to the binary; set FLEETLEARN_RESNET18 to a folder holding DnnImageModels/ to use another copy.");
    }

    /// <summary>The composed model's bytes, read from <see cref="ResolveFolder"/>.</summary>
    public static byte[] Create(string? folder = null)
    {
        var root = ResolveFolder(folder);
        return Compose(File.ReadAllBytes(Path.Combine(root, PreprocessFile)), File.ReadAllBytes(Path.Combine(root, NetworkFile)));
    }

    /// <summary>Composes the package's preprocessing and network graphs (see the remarks) into one model.</summary>
    public static byte[] Compose(byte[] preprocess, byte[] network)
    {
        ArgumentNullException.ThrowIfNull(preprocess);
        ArgumentNullException.ThrowIfNull(network);
        var prep = Parts(preprocess, "ResNetPreprocess.onnx");
        var net = Parts(network, "ResNet18.onnx");
        if (prep.Inputs.Count != 1 || prep.Outputs.Count != 1 || net.Inputs.Count != 1 || net.Outputs.Count != 1)
            throw new OnnxModelException($"Unexpected ResNet18 package files: preprocessing has inputs [{string.Join(",", prep.Inputs)}] and outputs [{string.Join(",", prep.Outputs)}], " +
                $"the network inputs [{string.Join(",", net.Inputs)}] and outputs [{string.Join(",", net.Outputs)}]; expected one of each.");
        const string scale = "fleetlearn_prep/255";
        var glue = new OnnxGraph("fleetlearn_prep/");
        glue.Initializer(scale, [255f], 1);
        glue.Node("Mul", [InputName, scale], [prep.Inputs[0]]);
        glue.Node("Identity", [prep.Outputs[0]], [net.Inputs[0]]);
        glue.Node("Flatten", [net.Outputs[0]], [OutputName], new OnnxAttribute.Int("axis", 1));

        var graph = new ProtoWriter();
        graph.Raw(glue.EncodedNodes[..NodeLength(glue, 0)]); // Mul first: topological order
        graph.Raw(prep.Nodes);
        graph.Raw(glue.EncodedNodes[NodeLength(glue, 0)..NodeLength(glue, 1)]);
        graph.Raw(net.Nodes);
        graph.Raw(glue.EncodedNodes[NodeLength(glue, 1)..]);
        graph.String(OnnxProto.GraphName, "resnet18_imagenet");
        graph.Raw(glue.EncodedInitializers);
        graph.Raw(prep.Initializers);
        graph.Raw(net.Initializers);
        var io = new ProtoWriter();
        io.Bytes(OnnxProto.GraphInput, OnnxGraph.ValueInfo(InputName, ["batch", 3, 224, 224]));
        io.Bytes(OnnxProto.GraphOutput, OnnxGraph.ValueInfo(OutputName, ["batch", FeatureSize]));
        graph.Raw(io.WrittenSpan);
        return OnnxGraph.Model(graph.WrittenSpan, irVersion: 4, [("", 8)], modelVersion: 1,
            [new("fleetlearn.backbone", "resnet18-imagenet (Microsoft.ML.DnnImageFeaturizer.ResNet18 0.24.0)")],
            "ImageNet ResNet18 (CNTK export shipped by Microsoft.ML.DnnImageFeaturizer.ResNet18) with its preprocessing, composed by FleetLearn: frames [batch,3,224,224] RGB in [0,1] → features [batch,512].");
    }

    /// <summary>Byte offset in the glue's encoded nodes just after node <paramref name="index"/>.</summary>
    private static int NodeLength(OnnxGraph glue, int index)
    {
        var reader = new ProtoReader(glue.EncodedNodes);
        int offset = 0;
        for (int i = 0; i <= index && reader.TryRead(out var field); i++) offset += field.Encoded.Length;
        return offset;
    }

    private sealed record GraphParts(byte[] Nodes, byte[] Initializers, List<string> Inputs, List<string> Outputs);

    /// <summary>A graph's nodes and initializers (encoded), and its real inputs (those that are not initializers) and outputs.</summary>
    private static GraphParts Parts(byte[] model, string name)
    {
        try
        {
            return ReadParts(model, name);
        }
        catch (InvalidDataException e)
        {
            throw new OnnxModelException($"{name}: {e.Message}", e);
        }
    }

    private static GraphParts ReadParts(byte[] model, string name)
    {
        byte[]? graph = null;
        var reader = new ProtoReader(model);
        while (reader.TryRead(out var field))
        {
            if (field.Number == OnnxProto.ModelGraph && field.Wire == WireType.LengthDelimited) graph = field.Payload.ToArray();
        }
        if (graph is null) throw new OnnxModelException($"{name} has no graph.");
        var nodes = new ProtoWriter();
        var initializers = new ProtoWriter();
        var initializerNames = new HashSet<string>(StringComparer.Ordinal);
        var inputs = new List<string>();
        var outputs = new List<string>();
        var g = new ProtoReader(graph);
        while (g.TryRead(out var field))
        {
            if (field.Wire != WireType.LengthDelimited) continue;
            switch (field.Number)
            {
                case OnnxProto.GraphNode:
                    nodes.Raw(field.Encoded);
                    break;
                case OnnxProto.GraphInitializer:
                    initializers.Raw(field.Encoded);
                    initializerNames.Add(NameOf(field.Payload, OnnxProto.TensorName));
                    break;
                case OnnxProto.GraphInput:
                    inputs.Add(NameOf(field.Payload, OnnxProto.ValueInfoName));
                    break;
                case OnnxProto.GraphOutput:
                    outputs.Add(NameOf(field.Payload, OnnxProto.ValueInfoName));
                    break;
            }
        }
        inputs.RemoveAll(initializerNames.Contains);
        return new GraphParts(nodes.ToArray(), initializers.ToArray(), inputs, outputs);
    }

    private static string NameOf(ReadOnlySpan<byte> message, int field)
    {
        var reader = new ProtoReader(message);
        while (reader.TryRead(out var f))
        {
            if (f.Number == field && f.Wire == WireType.LengthDelimited) return f.Text;
        }
        return "";
    }
}
