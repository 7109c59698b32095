using System.CommandLine;
using FleetLearn.Perception.Features;
using FleetLearn.Perception.Onnx;

namespace FleetLearn.Cli.Commands;

/// <summary>The options every command that runs a backbone shares, and how they open one.</summary>
internal sealed class BackboneCli
{
    public Option<string?> Backbone { get; }
    public Option<string?> Output { get; } = new("--backbone-output") { Description = "Feature tensor of a user backbone (default: its only output)." };
    public Option<string?> InputShape { get; } = new("--backbone-input-shape") { Description = "Frame shape CxHxW a user backbone takes, when its file leaves it symbolic (e.g. 1x28x28)." };
    public Option<string> Provider { get; } = new("--onnx-provider") { Description = "auto (CUDA when it loads, else CPU) | cpu | cuda.", DefaultValueFactory = _ => "auto" };
    public Option<int> Threads { get; } = new("--onnx-threads") { Description = "CPU threads per ONNX Runtime inference (0: one per core).", DefaultValueFactory = _ => 0 };

    public BackboneCli(string name, string description, string? defaultValue = null)
    {
        Backbone = new Option<string?>(name) { Description = description + " 'resnet18': the ImageNet-pretrained ResNet18 of NuGet package Microsoft.ML.DnnImageFeaturizer.ResNet18 (restored by the build)." };
        if (defaultValue is not null) Backbone.DefaultValueFactory = _ => defaultValue;
    }

    public IEnumerable<Option> All => [Backbone, Output, InputShape, Provider, Threads];

    /// <summary>True when the backbone option was given.</summary>
    public bool IsSet(ParseResult parse) => !string.IsNullOrWhiteSpace(parse.GetValue(Backbone));

    /// <summary>The backbone's bytes: FleetLearn's generated one for <c>generated</c>, the package's pretrained ResNet18 for <c>resnet18</c>, else the file.</summary>
    public static byte[] ReadModel(string source)
    {
        if (source.Trim().Equals("generated", StringComparison.OrdinalIgnoreCase)) return GeneratedBackbone.Create();
        if (ResNet18Backbone.Matches(source)) return ResNet18Backbone.Create();
        if (!File.Exists(source)) throw new FileNotFoundException($"Backbone '{source}' does not exist (give an ONNX file, or 'generated').", source);
        var length = new FileInfo(source).Length;
        if (length > OnnxModel.MaxModelBytes) throw new OnnxModelException($"Backbone '{source}' is {length} bytes, over the 2 GiB limit of one protobuf.");
        return File.ReadAllBytes(source);
    }

    public BackboneSource Source(ParseResult parse)
    {
        var source = parse.GetValue(Backbone)!;
        return new BackboneSource(ReadModel(source), parse.GetValue(Output), null, Shape(parse));
    }

    /// <summary>Opens the backbone session; <paramref name="log"/> gets the execution-provider line.</summary>
    /// <param name="parse">The parsed command line.</param>
    /// <param name="log">Receives the execution-provider line.</param>
    /// <param name="maxBatch">Frames per ONNX Runtime call; default 256, or 16 for resnet18 (a frame is 150,528 floats).</param>
    /// <param name="threads">CPU threads, overriding --onnx-threads.</param>
    public OnnxModel Open(ParseResult parse, Action<string> log, int? maxBatch = null, int? threads = null)
    {
        var source = parse.GetValue(Backbone)!;
        var options = new OnnxModelOptions
        {
            OutputName = parse.GetValue(Output),
            RowShape = Shape(parse),
            ExecutionProvider = ParseProvider(parse.GetValue(Provider)!),
            IntraOpThreads = threads ?? parse.GetValue(Threads),
            MaxBatchSize = maxBatch ?? (ResNet18Backbone.Matches(source) ? 16 : 256),
            Log = log,
        };
        bool named = source.Trim().Equals("generated", StringComparison.OrdinalIgnoreCase) || ResNet18Backbone.Matches(source);
        return OnnxModel.Load(ReadModel(source), options, named ? source.Trim().ToLowerInvariant() : source);
    }

    private int[]? Shape(ParseResult parse) => parse.GetValue(InputShape) is { } text ? FrameFormat.ParseShape(text) : null;

    public static ExecutionProviderPreference ParseProvider(string text) => text.Trim().ToLowerInvariant() switch
    {
        "auto" => ExecutionProviderPreference.PreferCuda,
        "cpu" => ExecutionProviderPreference.Cpu,
        "cuda" or "gpu" => ExecutionProviderPreference.RequireCuda,
        _ => throw new FormatException($"Unknown ONNX provider '{text}'; expected auto, cpu or cuda."),
    };
}
