using System.Globalization;
using System.Security.Cryptography;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace FleetLearn.Perception.Onnx;

/// <summary>
/// Thrown when an ONNX model cannot be used: not a valid ONNX file, a missing input or output name, an input
/// shape that does not match the declared frame shape, a non-float tensor, or a model that fails to run.
/// The message says what is wrong and what the model offers instead.
/// </summary>
public sealed class OnnxModelException : Exception
{
    /// <summary>Creates the exception.</summary>
    public OnnxModelException(string message) : base(message) { }

    /// <summary>Creates the exception with its cause.</summary>
    public OnnxModelException(string message, Exception inner) : base(message, inner) { }
}

/// <summary>Which ONNX Runtime execution provider a session should use.</summary>
public enum ExecutionProviderPreference
{
    /// <summary>The CUDA provider when it loads (an NVIDIA GPU and the CUDA libraries this ONNX Runtime build links: 1.31 asks for CUDA 13's libcublasLt.so.13), else the CPU provider. The default.</summary>
    PreferCuda,

    /// <summary>The CPU provider only.</summary>
    Cpu,

    /// <summary>The CUDA provider; fails when it does not load.</summary>
    RequireCuda,
}

/// <summary>How to open an <see cref="OnnxModel"/>.</summary>
public sealed record OnnxModelOptions
{
    /// <summary>Input tensor to feed; null: the model's only input.</summary>
    public string? InputName { get; init; }

    /// <summary>Output tensor to read; null: the model's only output.</summary>
    public string? OutputName { get; init; }

    /// <summary>
    /// Shape of one row (the input without its batch dimension), e.g. <c>[1, 28, 28]</c>. Required when the
    /// model leaves any of those dimensions symbolic; otherwise it must equal what the model declares.
    /// </summary>
    public IReadOnlyList<int>? RowShape { get; init; }

    /// <summary>Execution provider preference; default: CUDA when it loads, else CPU.</summary>
    public ExecutionProviderPreference ExecutionProvider { get; init; } = ExecutionProviderPreference.PreferCuda;

    /// <summary>CUDA device ordinal.</summary>
    public int CudaDeviceId { get; init; }

    /// <summary>CPU threads one inference uses (0: ONNX Runtime's default, one per physical core).</summary>
    public int IntraOpThreads { get; init; }

    /// <summary>Rows per <c>Run</c> call when the model's batch dimension is symbolic.</summary>
    public int MaxBatchSize { get; init; } = 256;

    /// <summary>Receives one line saying which execution provider was picked, and why CUDA was not.</summary>
    public Action<string>? Log { get; init; }
}

/// <summary>
/// An ONNX Runtime session over a model with one float input of shape <c>[batch, …row]</c> and a chosen float
/// output of shape <c>[batch, …]</c>: feeds rows in batches and returns one flattened output row per input row.
/// Used for backbones (frames → features) and exported classifiers (features or frames → probabilities).
/// </summary>
/// <remarks>
/// On a machine without CUDA, ONNX Runtime's CUDA provider fails to load cleanly
/// (<see cref="OnnxRuntimeException"/> naming the missing library); the session then uses the CPU provider and
/// says so through <see cref="OnnxModelOptions.Log"/>. <see cref="Run(ReadOnlySpan{float}, int, Span{float})"/> is
/// serialized by a lock (one reusable input buffer); open one model per thread for parallel inference.
/// One file over 450 lines because it is the whole ONNX Runtime boundary: the process-wide environment and its log hook,
/// CUDA-then-CPU session creation, and the input/output resolution whose failures become <see cref="OnnxModelException"/>s.
/// </remarks>
public sealed class OnnxModel : IDisposable
{
    /// <summary>Largest model file accepted (protobuf's own limit).</summary>
    public const long MaxModelBytes = int.MaxValue;

    private readonly InferenceSession _session;
    private readonly RunOptions _runOptions = new();
    private readonly float[] _buffer;
    private readonly long[] _shape;
    private readonly string[] _inputNames;
    private readonly string[] _outputNames;
    private readonly object _gate = new();
    private bool _disposed;

    private OnnxModel(InferenceSession session, string name, string provider, string input, string output, int[] rowShape,
        int fixedBatch, int maxBatch, string sha256)
    {
        _session = session;
        Name = name;
        ExecutionProvider = provider;
        InputName = input;
        OutputName = output;
        RowShape = rowShape;
        RowSize = rowShape.Aggregate(1, (a, b) => checked(a * b));
        FixedBatchSize = fixedBatch;
        BatchSize = fixedBatch > 0 ? fixedBatch : maxBatch;
        Sha256 = sha256;
        _buffer = new float[checked(BatchSize * RowSize)];
        _shape = [BatchSize, .. rowShape.Select(d => (long)d)];
        _inputNames = [input];
        _outputNames = [output];
        Metadata = session.ModelMetadata.CustomMetadataMap.ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
    }

    /// <summary>Name used in messages (the file path, or a given name).</summary>
    public string Name { get; }

    /// <summary><c>CUDA</c> or <c>CPU</c>.</summary>
    public string ExecutionProvider { get; }

    /// <summary>The input tensor fed.</summary>
    public string InputName { get; }

    /// <summary>The output tensor read.</summary>
    public string OutputName { get; }

    /// <summary>Shape of one input row (batch dimension excluded).</summary>
    public IReadOnlyList<int> RowShape { get; }

    /// <summary>Floats per input row.</summary>
    public int RowSize { get; }

    /// <summary>Shape of one output row (batch dimension excluded), learnt by running one batch of zeros at load.</summary>
    public IReadOnlyList<int> OutputRowShape { get; private set; } = [];

    /// <summary>Floats per output row (e.g. a backbone's feature width).</summary>
    public int OutputSize { get; private set; }

    /// <summary>The model's batch size when it is fixed in the file (0: symbolic).</summary>
    public int FixedBatchSize { get; }

    /// <summary>Rows per ONNX Runtime call.</summary>
    public int BatchSize { get; }

    /// <summary>Hex SHA-256 of the model file's bytes.</summary>
    public string Sha256 { get; }

    /// <summary>The model's <c>metadata_props</c>.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Opens a model file.</summary>
    public static OnnxModel Load(string path, OnnxModelOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        var info = new FileInfo(path);
        if (!info.Exists) throw new FileNotFoundException($"ONNX model '{path}' does not exist.", path);
        if (info.Length > MaxModelBytes) throw new OnnxModelException($"ONNX model '{path}' is {info.Length} bytes, over the 2 GiB limit of one protobuf.");
        return Load(File.ReadAllBytes(path), options, path);
    }

    /// <summary>Opens a model from its bytes; <paramref name="name"/> is used in messages.</summary>
    public static OnnxModel Load(byte[] model, OnnxModelOptions? options = null, string name = "model")
    {
        ArgumentNullException.ThrowIfNull(model);
        options ??= new OnnxModelOptions();
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxBatchSize, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(options.IntraOpThreads);
        if (model.Length == 0) throw new OnnxModelException($"'{name}' is not a valid ONNX model: the file is empty.");
        string sha = Convert.ToHexStringLower(SHA256.HashData(model));
        var (session, provider) = CreateSession(model, options, name);
        try
        {
            var (input, rowShape, fixedBatch) = ResolveInput(session, options, name);
            string output = ResolveOutput(session, options, name);
            var result = new OnnxModel(session, name, provider, input, output, rowShape, fixedBatch, options.MaxBatchSize, sha);
            result.Probe();
            return result;
        }
        catch
        {
            session.Dispose();
            throw;
        }
    }

    /// <summary>Runs <paramref name="count"/> rows (row-major, <see cref="RowSize"/> floats each) and writes <see cref="OutputSize"/> floats per row.</summary>
    public void Run(ReadOnlySpan<float> rows, int count, Span<float> outputs)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if (rows.Length != (long)count * RowSize)
            throw new ArgumentException($"{count} rows of shape [{Shape(RowShape)}] are {(long)count * RowSize} floats; got {rows.Length}.", nameof(rows));
        if (outputs.Length < (long)count * OutputSize)
            throw new ArgumentException($"{count} rows need room for {(long)count * OutputSize} outputs; got {outputs.Length}.", nameof(outputs));
        lock (_gate)
        {
            for (int done = 0; done < count; done += BatchSize)
            {
                int n = Math.Min(BatchSize, count - done);
                RunBatch(rows.Slice(done * RowSize, n * RowSize), n, outputs.Slice(done * OutputSize, n * OutputSize));
            }
        }
    }

    /// <summary>Runs <paramref name="count"/> rows and returns their outputs.</summary>
    public float[] Run(ReadOnlySpan<float> rows, int count)
    {
        var outputs = new float[checked(count * OutputSize)];
        Run(rows, count, outputs);
        return outputs;
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _session.Dispose();
        _runOptions.Dispose();
    }

    private void Probe()
    {
        // Learn the output row shape (symbolic output dimensions are common) and check that the model runs at all
        // on the declared input shape: a mismatch deep inside the graph shows up here, at load, not mid-extraction.
        int batch = FixedBatchSize > 0 ? FixedBatchSize : 1;
        Array.Clear(_buffer);
        _shape[0] = batch;
        using var input = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, _buffer.AsMemory(0, batch * RowSize), _shape);
        try
        {
            using var results = _session.Run(_runOptions, _inputNames, [input], _outputNames);
            var shape = results[0].GetTensorTypeAndShape().Shape;
            if (shape.Length < 1 || shape[0] != batch)
                throw new OnnxModelException($"{Name}: output '{OutputName}' has shape [{string.Join(",", shape)}] for a batch of {batch}; expected the batch size first.");
            if (results[0].GetTensorTypeAndShape().ElementDataType != TensorElementType.Float)
                throw new OnnxModelException($"{Name}: output '{OutputName}' is {results[0].GetTensorTypeAndShape().ElementDataType}; FleetLearn reads float tensors.");
            OutputRowShape = shape.Skip(1).Select(d => checked((int)d)).ToArray();
            OutputSize = OutputRowShape.Aggregate(1, (a, b) => checked(a * b));
            if (OutputSize < 1) throw new OnnxModelException($"{Name}: output '{OutputName}' is empty for input shape [{batch},{Shape(RowShape)}].");
        }
        catch (OnnxRuntimeException e)
        {
            throw new OnnxModelException($"{Name}: running the model on input '{InputName}' of shape [{batch},{Shape(RowShape)}] failed: {FirstLine(e.Message)}", e);
        }
    }

    private void RunBatch(ReadOnlySpan<float> rows, int n, Span<float> outputs)
    {
        int batch = FixedBatchSize > 0 ? FixedBatchSize : n;
        rows.CopyTo(_buffer);
        if (batch > n) _buffer.AsSpan(n * RowSize, (batch - n) * RowSize).Clear();
        _shape[0] = batch;
        using var input = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, _buffer.AsMemory(0, batch * RowSize), _shape);
        try
        {
            using var results = _session.Run(_runOptions, _inputNames, [input], _outputNames);
            var data = results[0].GetTensorDataAsSpan<float>();
            if (data.Length != (long)batch * OutputSize)
                throw new OnnxModelException($"{Name}: output '{OutputName}' has {data.Length} values for a batch of {batch}; expected {(long)batch * OutputSize}.");
            data[..(n * OutputSize)].CopyTo(outputs);
        }
        catch (OnnxRuntimeException e)
        {
            throw new OnnxModelException($"{Name}: inference failed: {FirstLine(e.Message)}", e);
        }
    }

    // ONNX Runtime's process-wide environment, created once with a logger that hands the messages logged while a
    // session is being created to that call (the CUDA provider's load failure names the missing library only there),
    // instead of printing them to stderr. Messages outside such a call: errors go to stderr, the rest is dropped.
    private static readonly object s_environmentGate = new();
    private static readonly DOrtLoggingFunction s_logger = OnRuntimeLog; // rooted: native code holds a pointer to it
    [ThreadStatic] private static List<string>? t_captured;

    private static void EnsureEnvironment()
    {
        lock (s_environmentGate)
        {
            if (OrtEnv.IsCreated) return;
            var options = new EnvironmentCreationOptions
            {
                logId = "fleetlearn",
                logLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_WARNING,
                loggingFunction = s_logger,
            };
            try
            {
                OrtEnv.CreateInstanceWithOptions(ref options);
            }
            catch (OnnxRuntimeException)
            {
                // Someone else created the environment first (its own logging applies); nothing to do.
            }
        }
    }

    private static void OnRuntimeLog(IntPtr param, OrtLoggingLevel severity, string category, string logId, string codeLocation, string message)
    {
        if (t_captured is { } captured)
        {
            captured.Add(message);
            return;
        }
        if (severity >= OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR) Console.Error.WriteLine($"onnxruntime: {FirstLine(message)}");
    }

    /// <summary>The most telling part of what ONNX Runtime logged while failing: the library loader's own error.</summary>
    private static string Cause(List<string> captured, string fallback)
    {
        foreach (var message in Enumerable.Reverse(captured))
        {
            int at = message.IndexOf("with error: ", StringComparison.Ordinal);
            if (at >= 0) return FirstLine(message[(at + "with error: ".Length)..]);
        }
        return fallback;
    }

    private static (InferenceSession Session, string Provider) CreateSession(byte[] model, OnnxModelOptions options, string name)
    {
        EnsureEnvironment();
        if (options.ExecutionProvider != ExecutionProviderPreference.Cpu)
        {
            SessionOptions? cuda = null;
            string reason;
            var captured = new List<string>();
            t_captured = captured;
            try
            {
                cuda = NewOptions(options);
                cuda.AppendExecutionProvider_CUDA(options.CudaDeviceId);
                var session = new InferenceSession(model, cuda);
                options.Log?.Invoke($"onnx: {Path.GetFileName(name)} on the CUDA execution provider (device {options.CudaDeviceId})");
                return (session, "CUDA");
            }
            catch (Exception e) when (e is OnnxRuntimeException or DllNotFoundException or EntryPointNotFoundException or BadImageFormatException)
            {
                reason = Cause(captured, FirstLine(e.Message));
            }
            finally
            {
                t_captured = null;
                cuda?.Dispose();
            }
            if (options.ExecutionProvider == ExecutionProviderPreference.RequireCuda)
                throw new OnnxModelException($"{name}: the CUDA execution provider is required but did not load: {reason}");
            options.Log?.Invoke($"onnx: CUDA execution provider not available ({reason}); {Path.GetFileName(name)} on the CPU execution provider");
        }
        else
        {
            options.Log?.Invoke($"onnx: {Path.GetFileName(name)} on the CPU execution provider");
        }
        using var cpu = NewOptions(options);
        var messages = new List<string>();
        t_captured = messages;
        try
        {
            return (new InferenceSession(model, cpu), "CPU");
        }
        catch (OnnxRuntimeException e)
        {
            throw new OnnxModelException($"'{name}' is not a valid ONNX model: {FirstLine(e.Message)}", e);
        }
        finally
        {
            t_captured = null;
        }
    }

    private static SessionOptions NewOptions(OnnxModelOptions options)
    {
        var so = new SessionOptions
        {
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
            LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR,
            IntraOpNumThreads = options.IntraOpThreads,
            InterOpNumThreads = 1,
        };
        return so;
    }

    private static (string Name, int[] RowShape, int FixedBatch) ResolveInput(InferenceSession session, OnnxModelOptions options, string name)
    {
        var inputs = session.InputMetadata;
        string input;
        if (options.InputName is { } wanted)
        {
            if (!inputs.ContainsKey(wanted))
                throw new OnnxModelException($"{name} has no input '{wanted}'; its inputs are: {Describe(inputs)}.");
            input = wanted;
        }
        else if (inputs.Count == 1)
        {
            input = inputs.Keys.First();
        }
        else
        {
            throw new OnnxModelException($"{name} has {inputs.Count} inputs ({Describe(inputs)}); name the one to feed.");
        }
        foreach (var (other, meta) in inputs)
        {
            if (other != input) throw new OnnxModelException($"{name}: input '{other}' ({Describe(meta)}) would be left unfed; FleetLearn feeds models with one input.");
        }
        var metadata = inputs[input];
        if (!metadata.IsTensor || metadata.ElementDataType != TensorElementType.Float)
            throw new OnnxModelException($"{name}: input '{input}' is {Describe(metadata)}; FleetLearn feeds float tensors.");
        var dims = metadata.Dimensions;
        if (dims.Length < 2)
            throw new OnnxModelException($"{name}: input '{input}' has shape [{Shape(dims, metadata.SymbolicDimensions)}]; expected a batch dimension followed by the row shape.");
        var declared = options.RowShape;
        if (declared is not null)
        {
            if (declared.Count != dims.Length - 1 || declared.Where((d, i) => dims[i + 1] > 0 && dims[i + 1] != d).Any())
                throw new OnnxModelException($"{name}: input '{input}' has shape [{Shape(dims, metadata.SymbolicDimensions)}]; the declared frame shape [{Shape(declared)}] does not match it.");
            if (declared.Any(d => d < 1))
                throw new OnnxModelException($"{name}: the declared frame shape [{Shape(declared)}] has a dimension below 1.");
        }
        else if (dims.Skip(1).Any(d => d < 1))
        {
            throw new OnnxModelException($"{name}: input '{input}' has shape [{Shape(dims, metadata.SymbolicDimensions)}] with symbolic dimensions; declare the frame shape (e.g. 3x224x224).");
        }
        int[] rowShape = declared?.ToArray() ?? dims.Skip(1).ToArray();
        int fixedBatch = dims[0] > 0 ? dims[0] : 0;
        return (input, rowShape, fixedBatch);
    }

    private static string ResolveOutput(InferenceSession session, OnnxModelOptions options, string name)
    {
        var outputs = session.OutputMetadata;
        if (options.OutputName is { } wanted)
        {
            if (!outputs.ContainsKey(wanted))
                throw new OnnxModelException($"{name} has no output '{wanted}'; its outputs are: {Describe(outputs)}.");
            return wanted;
        }
        if (outputs.Count == 1) return outputs.Keys.First();
        throw new OnnxModelException($"{name} has {outputs.Count} outputs ({Describe(outputs)}); name the one to read.");
    }

    private static string Describe(IReadOnlyDictionary<string, NodeMetadata> nodes) =>
        string.Join(", ", nodes.Select(kv => $"'{kv.Key}' {Describe(kv.Value)}"));

    private static string Describe(NodeMetadata meta) =>
        meta.IsTensor ? $"{meta.ElementDataType.ToString().ToLowerInvariant()}[{Shape(meta.Dimensions, meta.SymbolicDimensions)}]" : meta.OnnxValueType.ToString();

    private static string Shape(int[] dims, string[] symbolic) =>
        string.Join(",", dims.Select((d, i) => d > 0 ? d.ToString(CultureInfo.InvariantCulture) : i < symbolic.Length && symbolic[i].Length > 0 ? symbolic[i] : "?"));

    internal static string Shape(IEnumerable<int> dims) => string.Join("x", dims.Select(d => d.ToString(CultureInfo.InvariantCulture)));

    internal static string FirstLine(string message)
    {
        int newline = message.IndexOfAny(['\r', '\n']);
        return (newline < 0 ? message : message[..newline]).Trim();
    }
}
