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
        Backbone = new Option<string?>(name) { Description = description };
        if (defaultValue is not null) Backbone.DefaultValueFactory = _ => defaultValue;
    }

    public IEnumerable<Option> All => [Backbone, Output, InputShape, Provider, Threads];

    /// <summary>True when the backbone option was given.</summary>
    public bool IsSet(ParseResult parse) => !string.IsNullOrWhiteSpace(parse.GetValue(Backbone));

    /// <summary>The backbone's bytes: FleetLearn's generated one for <c>generated</c>, else the file.</summary>
    public static byte[] ReadModel(string source)
    {
        if (source.Trim().Equals("generated", StringComparison.OrdinalIgnoreCase)) return GeneratedBackbone.Create();
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
    public OnnxModel Open(ParseResult parse, Action<string> log, int maxBatch = 256)
    {
        var source = parse.GetValue(Backbone)!;
        var options = new OnnxModelOptions
        {
            OutputName = parse.GetValue(Output),
            RowShape = Shape(parse),
            ExecutionProvider = ParseProvider(parse.GetValue(Provider)!),
            IntraOpThreads = parse.GetValue(Threads),
            MaxBatchSize = maxBatch,
            Log = log,
        };
        bool generated = source.Trim().Equals("generated", StringComparison.OrdinalIgnoreCase);
        return OnnxModel.Load(ReadModel(source), options, generated ? "generated" : source);
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
