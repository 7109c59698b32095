namespace FleetLearn.Onnx;

/// <summary>Field numbers and enum values of <c>onnx.proto</c> (ONNX IR, github.com/onnx/onnx/blob/main/onnx/onnx.proto) that FleetLearn writes.</summary>
internal static class OnnxProto
{
    // ModelProto
    public const int ModelIrVersion = 1, ModelProducerName = 2, ModelProducerVersion = 3, ModelDomain = 4, ModelVersion = 5,
        ModelDocString = 6, ModelGraph = 7, ModelOpsetImport = 8, ModelMetadataProps = 14;

    // OperatorSetIdProto, StringStringEntryProto
    public const int OpsetDomain = 1, OpsetVersion = 2, EntryKey = 1, EntryValue = 2;

    // GraphProto
    public const int GraphNode = 1, GraphName = 2, GraphInitializer = 5, GraphDocString = 10, GraphInput = 11, GraphOutput = 12,
        GraphValueInfo = 13, GraphSparseInitializer = 15;

    // NodeProto
    public const int NodeInput = 1, NodeOutput = 2, NodeName = 3, NodeOpType = 4, NodeAttribute = 5, NodeDomain = 7;

    // AttributeProto and its AttributeType enum
    public const int AttributeName = 1, AttributeF = 2, AttributeI = 3, AttributeInts = 8, AttributeType = 20;
    public const int AttributeTypeFloat = 1, AttributeTypeInt = 2, AttributeTypeInts = 7;

    // TensorProto and its DataType enum
    public const int TensorDims = 1, TensorDataType = 2, TensorName = 8, TensorRawData = 9;
    public const int DataTypeFloat = 1;

    // ValueInfoProto, TypeProto, TypeProto.Tensor, TensorShapeProto, TensorShapeProto.Dimension
    public const int ValueInfoName = 1, ValueInfoType = 2;
    public const int TypeTensor = 1, TensorTypeElemType = 1, TensorTypeShape = 2, ShapeDim = 1, DimValue = 1, DimParam = 2;

    /// <summary>IR version 8 (ONNX 1.12, July 2021): read by every ONNX Runtime since 1.10 and by Debian's python3-onnx 1.12.</summary>
    public const long IrVersion = 8;

    /// <summary>Opset FleetLearn's own graphs import: 13 (Softmax over one axis, stable since 2020).</summary>
    public const long Opset = 13;
}

/// <summary>One dimension of a declared tensor shape: a fixed size or a symbolic name such as <c>batch</c>.</summary>
internal readonly record struct OnnxDim(long Value, string? Param)
{
    public static implicit operator OnnxDim(long value) => new(value, null);

    public static implicit operator OnnxDim(string param) => new(0, param);

    public override string ToString() => Param ?? Value.ToString(System.Globalization.CultureInfo.InvariantCulture);
}

/// <summary>A node attribute (only the kinds FleetLearn's graphs use).</summary>
internal abstract record OnnxAttribute(string Name)
{
    public sealed record Int(string Name, long Value) : OnnxAttribute(Name);

    public sealed record Ints(string Name, long[] Values) : OnnxAttribute(Name);

    public sealed record Float(string Name, float Value) : OnnxAttribute(Name);

    public void Write(ProtoWriter w)
    {
        w.String(OnnxProto.AttributeName, Name);
        switch (this)
        {
            case Int i:
                w.Int64(OnnxProto.AttributeI, i.Value).Int64(OnnxProto.AttributeType, OnnxProto.AttributeTypeInt);
                break;
            case Ints many:
                foreach (var v in many.Values) w.Int64(OnnxProto.AttributeInts, v);
                w.Int64(OnnxProto.AttributeType, OnnxProto.AttributeTypeInts);
                break;
            case Float f:
                w.Float(OnnxProto.AttributeF, f.Value).Int64(OnnxProto.AttributeType, OnnxProto.AttributeTypeFloat);
                break;
        }
    }
}

/// <summary>
/// Builds an ONNX <c>GraphProto</c> (and the <c>ModelProto</c> around it) with float tensors only: nodes in
/// topological order, float initializers as raw little-endian data, inputs and outputs with declared shapes.
/// </summary>
internal sealed class OnnxGraph(string nodePrefix = "")
{
    private readonly ProtoWriter _nodes = new();
    private readonly ProtoWriter _initializers = new();
    private readonly ProtoWriter _inputs = new();
    private readonly ProtoWriter _outputs = new();
    private int _nodeCount;

    /// <summary>Adds a node of the default (ai.onnx) domain.</summary>
    public void Node(string opType, string[] inputs, string[] outputs, params OnnxAttribute[] attributes)
    {
        _nodes.Message(OnnxProto.GraphNode, w =>
        {
            foreach (var i in inputs) w.String(OnnxProto.NodeInput, i);
            foreach (var o in outputs) w.String(OnnxProto.NodeOutput, o);
            w.String(OnnxProto.NodeName, $"{nodePrefix}{opType}_{_nodeCount}");
            w.String(OnnxProto.NodeOpType, opType);
            foreach (var a in attributes) w.Message(OnnxProto.NodeAttribute, a.Write);
        });
        _nodeCount++;
    }

    /// <summary>Adds a float constant tensor.</summary>
    public void Initializer(string name, ReadOnlySpan<float> data, params long[] dims)
    {
        long count = 1;
        foreach (var d in dims) count *= d;
        if (count != data.Length) throw new ArgumentException($"Initializer {name}: shape [{string.Join(",", dims)}] needs {count} values, got {data.Length}.");
        var tensor = new ProtoWriter();
        foreach (var d in dims) tensor.Int64(OnnxProto.TensorDims, d);
        tensor.Int64(OnnxProto.TensorDataType, OnnxProto.DataTypeFloat);
        tensor.String(OnnxProto.TensorName, name);
        tensor.FloatsAsBytes(OnnxProto.TensorRawData, data);
        _initializers.Bytes(OnnxProto.GraphInitializer, tensor.WrittenSpan);
    }

    /// <summary>Declares a float graph input.</summary>
    public void Input(string name, params OnnxDim[] shape) => _inputs.Bytes(OnnxProto.GraphInput, ValueInfo(name, shape));

    /// <summary>Declares a float graph output.</summary>
    public void Output(string name, params OnnxDim[] shape) => _outputs.Bytes(OnnxProto.GraphOutput, ValueInfo(name, shape));

    /// <summary>Encoded node fields (GraphProto field 1), to splice into another graph.</summary>
    public ReadOnlySpan<byte> EncodedNodes => _nodes.WrittenSpan;

    /// <summary>Encoded initializer fields (GraphProto field 5).</summary>
    public ReadOnlySpan<byte> EncodedInitializers => _initializers.WrittenSpan;

    /// <summary>Encoded output fields (GraphProto field 12).</summary>
    public ReadOnlySpan<byte> EncodedOutputs => _outputs.WrittenSpan;

    /// <summary>The GraphProto bytes, fields in the order the ONNX tools write them.</summary>
    public byte[] ToGraphBytes(string name, string? docString = null)
    {
        var g = new ProtoWriter();
        g.Raw(_nodes.WrittenSpan);
        g.String(OnnxProto.GraphName, name);
        g.Raw(_initializers.WrittenSpan);
        if (docString is not null) g.String(OnnxProto.GraphDocString, docString);
        g.Raw(_inputs.WrittenSpan);
        g.Raw(_outputs.WrittenSpan);
        return g.ToArray();
    }

    /// <summary>A ValueInfoProto for a float tensor of the given shape.</summary>
    public static byte[] ValueInfo(string name, OnnxDim[] shape)
    {
        var w = new ProtoWriter();
        w.String(OnnxProto.ValueInfoName, name);
        w.Message(OnnxProto.ValueInfoType, type => type.Message(OnnxProto.TypeTensor, tensor =>
        {
            tensor.Int64(OnnxProto.TensorTypeElemType, OnnxProto.DataTypeFloat);
            tensor.Message(OnnxProto.TensorTypeShape, s =>
            {
                foreach (var d in shape)
                {
                    s.Message(OnnxProto.ShapeDim, dim =>
                    {
                        if (d.Param is not null) dim.String(OnnxProto.DimParam, d.Param);
                        else dim.Int64(OnnxProto.DimValue, d.Value);
                    });
                }
            });
        }));
        return w.ToArray();
    }

    /// <summary>Wraps a graph into a ModelProto.</summary>
    public static byte[] Model(ReadOnlySpan<byte> graph, long irVersion, IEnumerable<(string Domain, long Version)> opsets,
        long modelVersion, IEnumerable<KeyValuePair<string, string>> metadata, string? docString = null)
    {
        var m = new ProtoWriter();
        m.Int64(OnnxProto.ModelIrVersion, irVersion);
        m.String(OnnxProto.ModelProducerName, "FleetLearn");
        m.String(OnnxProto.ModelProducerVersion, ProducerVersion);
        m.String(OnnxProto.ModelDomain, "ai.fleetlearn");
        m.Int64(OnnxProto.ModelVersion, modelVersion);
        if (docString is not null) m.String(OnnxProto.ModelDocString, docString);
        m.Bytes(OnnxProto.ModelGraph, graph);
        foreach (var (domain, version) in opsets)
            m.Message(OnnxProto.ModelOpsetImport, o => o.String(OnnxProto.OpsetDomain, domain).Int64(OnnxProto.OpsetVersion, version));
        foreach (var (key, value) in metadata)
            m.Message(OnnxProto.ModelMetadataProps, e => e.String(OnnxProto.EntryKey, key).String(OnnxProto.EntryValue, value));
        return m.ToArray();
    }

    /// <summary>This assembly's version, written as ModelProto.producer_version.</summary>
    public static string ProducerVersion { get; } =
        typeof(OnnxGraph).Assembly.GetName().Version?.ToString(3) ?? "0.0.0";
}
