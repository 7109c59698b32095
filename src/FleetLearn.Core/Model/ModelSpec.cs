using System.Globalization;

namespace FleetLearn.Core.Model;

/// <summary>
/// Architecture of the perception head: a multilayer perceptron with ReLU hidden layers and a
/// softmax cross-entropy output, written as layer widths such as <c>784-200-200-10</c>.
/// </summary>
/// <remarks>
/// <para>All parameters live in one contiguous <c>float[]</c>. Layer <c>l</c> (0-based, mapping
/// <c>In = Layers[l]</c> inputs to <c>Out = Layers[l+1]</c> outputs) occupies, in order:</para>
/// <list type="number">
/// <item>its weight matrix <c>W_l</c>, <c>Out × In</c>, row-major: element <c>(o, i)</c> at
/// <c>WeightOffset(l) + o·In + i</c> (row <c>o</c> holds the weights into output unit <c>o</c>, as in
/// PyTorch's <c>nn.Linear</c> and ONNX <c>Gemm</c> with <c>transB = 1</c>);</item>
/// <item>its bias <c>b_l</c>, <c>Out</c> floats, at <c>BiasOffset(l)</c>.</item>
/// </list>
/// <para>Layers follow one another with no padding, so the 2NN <c>784-200-200-10</c> has
/// 784·200+200 + 200·200+200 + 200·10+10 = 199,210 parameters.</para>
/// </remarks>
public sealed class ModelSpec : IEquatable<ModelSpec>
{
    /// <summary>Largest layer width accepted (guards decoders against absurd specs).</summary>
    public const int MaxLayerWidth = 1 << 16;

    /// <summary>Largest number of layers accepted.</summary>
    public const int MaxLayers = 32;

    private readonly int[] _layers;
    private readonly int[] _weightOffsets;
    private readonly int[] _biasOffsets;

    /// <summary>Creates a spec from layer widths (input, hidden…, classes).</summary>
    public ModelSpec(IReadOnlyList<int> layers)
    {
        ArgumentNullException.ThrowIfNull(layers);
        if (layers.Count < 2)
            throw new ArgumentException("A model needs at least an input and an output width (e.g. 784-10).", nameof(layers));
        if (layers.Count > MaxLayers)
            throw new ArgumentException($"A model may have at most {MaxLayers} layers; got {layers.Count}.", nameof(layers));
        _layers = new int[layers.Count];
        for (int i = 0; i < layers.Count; i++)
        {
            if (layers[i] < 1 || layers[i] > MaxLayerWidth)
                throw new ArgumentException($"Layer width {layers[i]} at position {i} is outside 1..{MaxLayerWidth}.", nameof(layers));
            _layers[i] = layers[i];
        }
        if (_layers[^1] < 2)
            throw new ArgumentException("The output layer needs at least 2 classes.", nameof(layers));

        _weightOffsets = new int[LayerCount];
        _biasOffsets = new int[LayerCount];
        long offset = 0;
        for (int l = 0; l < LayerCount; l++)
        {
            _weightOffsets[l] = checked((int)offset);
            offset += (long)_layers[l] * _layers[l + 1];
            _biasOffsets[l] = checked((int)offset);
            offset += _layers[l + 1];
            if (offset > int.MaxValue - 64)
                throw new ArgumentException("The model has more parameters than one array can hold.", nameof(layers));
        }
        ParameterCount = (int)offset;
    }

    /// <summary>Parses <c>784-200-200-10</c> (also accepts <c>x</c> or <c>,</c> as separators).</summary>
    public static ModelSpec Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var parts = text.Split(['-', 'x', ','], StringSplitOptions.TrimEntries);
        var widths = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
        {
            if (!int.TryParse(parts[i], NumberStyles.None, CultureInfo.InvariantCulture, out widths[i]))
                throw new FormatException($"Model '{text}': '{parts[i]}' is not a layer width; expected widths such as 784-200-200-10.");
        }
        try
        {
            return new ModelSpec(widths);
        }
        catch (ArgumentException e)
        {
            throw new FormatException($"Model '{text}': {e.Message}", e);
        }
    }

    /// <summary>The FedAvg paper's "2NN": 784-200-200-10.</summary>
    public static ModelSpec TwoNN { get; } = new([784, 200, 200, 10]);

    /// <summary>Layer widths, input first.</summary>
    public IReadOnlyList<int> Layers => _layers;

    /// <summary>Number of dense (weight) layers: <c>Layers.Count - 1</c>.</summary>
    public int LayerCount => _layers.Length - 1;

    /// <summary>Input feature width.</summary>
    public int InputSize => _layers[0];

    /// <summary>Number of output classes.</summary>
    public int OutputSize => _layers[^1];

    /// <summary>Widest layer (sizes activation buffers).</summary>
    public int MaxWidth => _layers.Max();

    /// <summary>Total number of floats in the flat parameter vector.</summary>
    public int ParameterCount { get; }

    /// <summary>Input width of dense layer <paramref name="layer"/>.</summary>
    public int InputsOf(int layer) => _layers[layer];

    /// <summary>Output width of dense layer <paramref name="layer"/>.</summary>
    public int OutputsOf(int layer) => _layers[layer + 1];

    /// <summary>Offset of <c>W_layer</c> in the flat vector.</summary>
    public int WeightOffset(int layer) => _weightOffsets[layer];

    /// <summary>Offset of <c>b_layer</c> in the flat vector.</summary>
    public int BiasOffset(int layer) => _biasOffsets[layer];

    /// <summary>Number of weights of a layer (<c>Out·In</c>).</summary>
    public int WeightCount(int layer) => _layers[layer] * _layers[layer + 1];

    /// <summary>Forward-pass multiply-adds per sample (for FLOP accounting: ×2 forward, ×6 training).</summary>
    public long MultiplyAddsPerSample
    {
        get
        {
            long total = 0;
            for (int l = 0; l < LayerCount; l++) total += WeightCount(l);
            return total;
        }
    }

    /// <summary>Canonical text form, e.g. <c>784-200-200-10</c>.</summary>
    public override string ToString() => string.Join('-', _layers);

    public bool Equals(ModelSpec? other) => other is not null && _layers.AsSpan().SequenceEqual(other._layers);

    public override bool Equals(object? obj) => Equals(obj as ModelSpec);

    public override int GetHashCode()
    {
        var hash = new HashCode();
        foreach (var w in _layers) hash.Add(w);
        return hash.ToHashCode();
    }
}
