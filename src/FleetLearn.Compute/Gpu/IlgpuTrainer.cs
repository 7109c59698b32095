using FleetLearn.Core.Model;
using FleetLearn.Core.Training;
using ILGPU;
using ILGPU.Runtime;

namespace FleetLearn.Compute.Gpu;

/// <summary>
/// <see cref="ITrainer"/> on an ILGPU accelerator (CUDA, OpenCL, or the CPU simulator in tests).
/// Parameters, gradients, momentum, activations and datasets stay on the device; a training step
/// sends only the batch's row indices and reads back one float (the loss).
/// </summary>
/// <remarks>
/// Create through <see cref="IlgpuRuntime.TryCreateGpu"/> or <see cref="IlgpuRuntime.CreateOnCpuAccelerator"/>.
/// Datasets are uploaded once per trainer, cached by reference (<see cref="LabeledData"/> is immutable),
/// least recently used first out beyond <see cref="MaxCachedDatasets"/>.
/// One file over 450 lines because every member works on the same device buffers (parameters, gradient, momentum,
/// per-layer activations, the dataset cache), and the forward and backward passes that launch the kernels over them
/// index those buffers the same way; the kernels themselves live in IlgpuKernels.cs.
/// </remarks>
public sealed class IlgpuTrainer : ITrainer
{
    /// <summary>Datasets kept on the device at once (train and test sets fit with room to spare).</summary>
    public const int MaxCachedDatasets = 4;

    private readonly IlgpuDevice _device;
    private readonly Accelerator _accelerator;
    private readonly IlgpuKernels _kernels;
    private readonly AcceleratorStream _stream;

    private readonly MemoryBuffer1D<float, Stride1D.Dense> _parameters;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _gradient;
    private MemoryBuffer1D<float, Stride1D.Dense>? _velocity;
    private MemoryBuffer1D<float, Stride1D.Dense>? _anchor;

    // _activations[l] is the input of layer l (MaxBatchSize × Layers[l]); the last holds the logits.
    private readonly MemoryBuffer1D<float, Stride1D.Dense>[] _activations;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _deltaA;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _deltaB;
    private readonly MemoryBuffer1D<int, Stride1D.Dense> _indices;
    private readonly MemoryBuffer1D<int, Stride1D.Dense> _batchLabels;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _rowLoss;
    private readonly MemoryBuffer1D<int, Stride1D.Dense> _rowCorrect;
    private MemoryBuffer1D<float, Stride1D.Dense> _lossSums;
    private MemoryBuffer1D<int, Stride1D.Dense> _correctSums;

    private readonly Dictionary<LabeledData, DeviceDataset> _datasets = new(ReferenceEqualityComparer.Instance);
    private long _useClock;
    private float _proximal;
    private bool _velocityValid;
    private bool _disposed;

    internal IlgpuTrainer(IlgpuDevice device, ModelSpec spec, int maxBatchSize)
    {
        ValidateArguments(spec, maxBatchSize);
        _device = device;
        _accelerator = device.Accelerator;
        _kernels = device.Kernels;
        _stream = _accelerator.DefaultStream;
        Spec = spec;
        MaxBatchSize = maxBatchSize;
        Description = device.Description;

        var allocated = new List<IDisposable>();
        lock (_device.Gate)
        {
            using var binding = _accelerator.BindScoped();
            try
            {
                MemoryBuffer1D<T, Stride1D.Dense> Allocate<T>(long length) where T : unmanaged
                {
                    var buffer = _accelerator.Allocate1D<T>(Math.Max(1, length));
                    allocated.Add(buffer);
                    return buffer;
                }
                _parameters = Allocate<float>(spec.ParameterCount);
                _gradient = Allocate<float>(spec.ParameterCount);
                _activations = new MemoryBuffer1D<float, Stride1D.Dense>[spec.Layers.Count];
                for (int l = 0; l < _activations.Length; l++)
                    _activations[l] = Allocate<float>((long)maxBatchSize * spec.Layers[l]);
                _deltaA = Allocate<float>((long)maxBatchSize * spec.MaxWidth);
                _deltaB = Allocate<float>((long)maxBatchSize * spec.MaxWidth);
                _indices = Allocate<int>(maxBatchSize);
                _batchLabels = Allocate<int>(maxBatchSize);
                _rowLoss = Allocate<float>(maxBatchSize);
                _rowCorrect = Allocate<int>(maxBatchSize);
                _lossSums = Allocate<float>(16);
                _correctSums = Allocate<int>(16);
                _parameters.MemSetToZero(_stream);
                _stream.Synchronize();
            }
            catch
            {
                foreach (var buffer in allocated) buffer.Dispose();
                throw;
            }
        }
    }

    /// <inheritdoc/>
    public ModelSpec Spec { get; }

    /// <inheritdoc/>
    public string Description { get; }

    /// <inheritdoc/>
    public int MaxBatchSize { get; }

    /// <inheritdoc/>
    public void LoadParameters(ReadOnlySpan<float> parameters)
    {
        RequireLength(parameters.Length, Spec.ParameterCount, nameof(parameters));
        lock (_device.Gate)
        {
            using var binding = Enter();
            _parameters.View.CopyFromCPU(_stream, parameters);
            _velocityValid = false;
        }
    }

    /// <inheritdoc/>
    public void ReadParameters(Span<float> destination)
    {
        RequireLength(destination.Length, Spec.ParameterCount, nameof(destination));
        lock (_device.Gate)
        {
            using var binding = Enter();
            _parameters.View.CopyToCPU(_stream, destination);
        }
    }

    /// <inheritdoc/>
    public void ResetOptimizerState()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _velocityValid = false;
    }

    /// <inheritdoc/>
    public void SetProximalTerm(ReadOnlySpan<float> anchor, float mu)
    {
        if (!(mu >= 0) || !float.IsFinite(mu))
            throw new ArgumentOutOfRangeException(nameof(mu), mu, "The proximal weight must be a non-negative finite number.");
        if (mu == 0)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _proximal = 0;
            return;
        }
        RequireLength(anchor.Length, Spec.ParameterCount, nameof(anchor));
        lock (_device.Gate)
        {
            using var binding = Enter();
            _anchor ??= _accelerator.Allocate1D<float>(Spec.ParameterCount);
            _anchor.View.CopyFromCPU(_stream, anchor);
            _proximal = mu;
        }
    }

    /// <inheritdoc/>
    public float TrainBatch(LabeledData data, ReadOnlySpan<int> indices, in SgdOptions options)
    {
        options.Validate();
        ValidateBatch(data, indices);
        lock (_device.Gate)
        {
            using var binding = Enter();
            int n = indices.Length;
            LossAndGradient(data, indices);

            int mode = 0;
            if (options.Momentum > 0)
            {
                _velocity ??= _accelerator.Allocate1D<float>(Spec.ParameterCount);
                mode = _velocityValid ? 2 : 1;
            }
            var step = new SgdStep(options.LearningRate, options.Momentum, options.WeightDecay, _proximal, mode);
            var dummy = _parameters.View; // never read: mode 0 skips velocity, ρ = 0 skips the anchor
            _kernels.Sgd(_parameters.View, _gradient.View, mode == 0 ? dummy : _velocity!.View,
                _proximal == 0 || _anchor is null ? dummy : _anchor.View, Spec.ParameterCount, step);
            if (mode != 0) _velocityValid = true;
            return ReadBatchLoss(n);
        }
    }

    /// <inheritdoc/>
    public float ComputeGradient(LabeledData data, ReadOnlySpan<int> indices, Span<float> gradient)
    {
        RequireLength(gradient.Length, Spec.ParameterCount, nameof(gradient));
        ValidateBatch(data, indices);
        lock (_device.Gate)
        {
            using var binding = Enter();
            LossAndGradient(data, indices);
            float loss = ReadBatchLoss(indices.Length);
            _gradient.View.CopyToCPU(_stream, gradient);
            return loss;
        }
    }

    /// <inheritdoc/>
    public EvaluationResult Evaluate(LabeledData data, int start = 0, int count = -1)
    {
        ValidateData(data);
        if (count == -1) count = data.Count - start;
        ArgumentOutOfRangeException.ThrowIfNegative(start);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(start, data.Count);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(count, data.Count - start);
        if (count == 0)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return new EvaluationResult(double.NaN, double.NaN, 0);
        }

        lock (_device.Gate)
        {
            using var binding = Enter();
            var dataset = Upload(data);
            int chunks = (count + MaxBatchSize - 1) / MaxBatchSize;
            EnsureSumSlots(chunks);
            int features = Spec.InputSize, classes = Spec.OutputSize;
            for (int chunk = 0; chunk < chunks; chunk++)
            {
                int first = start + chunk * MaxBatchSize;
                int n = Math.Min(MaxBatchSize, start + count - first);
                // Contiguous rows need no gather: the dataset's own rows are the first layer's input.
                var input = dataset.Features.View.SubView((long)first * features, (long)n * features);
                var labels = dataset.Labels.View.SubView(first, n);
                Forward(input, n);
                _kernels.SoftmaxCrossEntropy(Logits, labels, _deltaA.View, _rowLoss.View, _rowCorrect.View, n, classes, 0f, writeGradient: false);
                _kernels.RowReduce(_rowLoss.View, _rowCorrect.View, n, _lossSums.View, _correctSums.View, chunk);
            }
            var lossSums = new float[chunks];
            var correctSums = new int[chunks];
            _lossSums.View.SubView(0, chunks).CopyToCPU(_stream, lossSums.AsSpan());
            _correctSums.View.SubView(0, chunks).CopyToCPU(_stream, correctSums.AsSpan());
            double loss = 0;
            long correct = 0;
            for (int i = 0; i < chunks; i++)
            {
                loss += lossSums[i];
                correct += correctSums[i];
            }
            return new EvaluationResult(loss / count, (double)correct / count, count);
        }
    }

    /// <inheritdoc/>
    public void Forward(ReadOnlySpan<float> inputs, int count, Span<float> logits)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        int features = Spec.InputSize, classes = Spec.OutputSize;
        if (inputs.Length < (long)count * features)
            throw new ArgumentException($"{count} rows of {features} features need {(long)count * features} inputs; got {inputs.Length}.", nameof(inputs));
        if (logits.Length < (long)count * classes)
            throw new ArgumentException($"{count} rows of {classes} logits need {(long)count * classes} floats; got {logits.Length}.", nameof(logits));
        lock (_device.Gate)
        {
            using var binding = Enter();
            for (int first = 0; first < count; first += MaxBatchSize)
            {
                int n = Math.Min(MaxBatchSize, count - first);
                var input = _activations[0].View.SubView(0, (long)n * features);
                input.CopyFromCPU(_stream, inputs.Slice(first * features, n * features));
                Forward(input, n);
                _activations[^1].View.SubView(0, (long)n * classes).CopyToCPU(_stream, logits.Slice(first * classes, n * classes));
            }
        }
    }

    /// <summary>Releases this trainer's device buffers (the shared accelerator stays).</summary>
    public void Dispose()
    {
        lock (_device.Gate)
        {
            if (_disposed) return;
            _disposed = true;
            using var binding = _accelerator.BindScoped();
            foreach (var dataset in _datasets.Values) dataset.Dispose();
            _datasets.Clear();
            _parameters.Dispose();
            _gradient.Dispose();
            _velocity?.Dispose();
            _anchor?.Dispose();
            foreach (var a in _activations) a.Dispose();
            _deltaA.Dispose();
            _deltaB.Dispose();
            _indices.Dispose();
            _batchLabels.Dispose();
            _rowLoss.Dispose();
            _rowCorrect.Dispose();
            _lossSums.Dispose();
            _correctSums.Dispose();
        }
    }

    /// <summary>Number of datasets currently held on the device (for tests and diagnostics).</summary>
    internal int CachedDatasetCount => _datasets.Count;

    internal static void ValidateArguments(ModelSpec spec, int maxBatchSize)
    {
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxBatchSize);
        // Kernels index batch matrices with 32-bit ints.
        if ((long)maxBatchSize * spec.MaxWidth > int.MaxValue / 2)
            throw new ArgumentOutOfRangeException(nameof(maxBatchSize), maxBatchSize, $"A batch of {maxBatchSize} rows of up to {spec.MaxWidth} values is too large for one device matrix.");
    }

    private ArrayView<float> Logits => _activations[^1].View;

    private ScopedAcceleratorBinding Enter()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return _accelerator.BindScoped();
    }

    /// <summary>Gathers the batch, runs forward and backward; leaves per-row losses in _rowLoss and ∇ in _gradient.</summary>
    private void LossAndGradient(LabeledData data, ReadOnlySpan<int> indices)
    {
        int n = indices.Length;
        var dataset = Upload(data);
        _indices.View.SubView(0, n).CopyFromCPU(_stream, indices);
        var input = _activations[0].View.SubView(0, (long)n * Spec.InputSize);
        var labels = _batchLabels.View.SubView(0, n);
        _kernels.Gather(dataset.Features.View, dataset.Labels.View, _indices.View, input, labels, n, Spec.InputSize);
        Forward(input, n);
        _kernels.SoftmaxCrossEntropy(Logits, labels, _deltaA.View, _rowLoss.View, _rowCorrect.View, n, Spec.OutputSize, 1f / n, writeGradient: true);
        Backward(input, n);
        _kernels.RowReduce(_rowLoss.View, _rowCorrect.View, n, _lossSums.View, _correctSums.View, 0);
    }

    private float ReadBatchLoss(int n)
    {
        Span<float> sum = stackalloc float[1];
        _lossSums.View.SubView(0, 1).CopyToCPU(_stream, sum);
        return sum[0] / n;
    }

    /// <summary>Logits of <paramref name="n"/> rows of <paramref name="input"/> into the last activation buffer.</summary>
    private void Forward(ArrayView<float> input, int n)
    {
        var current = input;
        for (int l = 0; l < Spec.LayerCount; l++)
        {
            int nIn = Spec.InputsOf(l), nOut = Spec.OutputsOf(l);
            var output = _activations[l + 1].View;
            // Y[n×Out] = X[n×In] · Wᵀ (W is Out×In row-major).
            _kernels.Gemm(current, Weights(_parameters, l), output, new GemmShape(n, nOut, nIn, nIn, nIn, nOut, transA: 0, transB: 1));
            _kernels.BiasActivation(output, Biases(_parameters, l), n, nOut, relu: l < Spec.LayerCount - 1);
            current = output;
        }
    }

    /// <summary>Back-propagates dLogits (in _deltaA, already scaled by 1/n) into _gradient.</summary>
    private void Backward(ArrayView<float> input, int n)
    {
        var delta = _deltaA.View;
        var spare = _deltaB.View;
        for (int l = Spec.LayerCount - 1; l >= 0; l--)
        {
            int nIn = Spec.InputsOf(l), nOut = Spec.OutputsOf(l);
            ArrayView<float> layerInput = l == 0 ? input : _activations[l].View;
            // dW[Out×In] = dYᵀ · X: op(A)(m, k) = dY[k·Out + m].
            _kernels.Gemm(delta, layerInput, Weights(_gradient, l), new GemmShape(nOut, nIn, n, nOut, nIn, nIn, transA: 1, transB: 0));
            _kernels.ColumnSum(delta, Biases(_gradient, l), n, nOut);
            if (l == 0) break;
            // dX[n×In] = dY · W, then through the ReLU of the previous layer.
            _kernels.Gemm(delta, Weights(_parameters, l), spare, new GemmShape(n, nIn, nOut, nOut, nIn, nIn, transA: 0, transB: 0));
            _kernels.ReluMask(spare, layerInput, n * nIn);
            (delta, spare) = (spare, delta);
        }
    }

    private ArrayView<float> Weights(MemoryBuffer1D<float, Stride1D.Dense> flat, int layer) =>
        flat.View.SubView(Spec.WeightOffset(layer), Spec.WeightCount(layer));

    private ArrayView<float> Biases(MemoryBuffer1D<float, Stride1D.Dense> flat, int layer) =>
        flat.View.SubView(Spec.BiasOffset(layer), Spec.OutputsOf(layer));

    private void EnsureSumSlots(int slots)
    {
        if (_lossSums.Length >= slots) return;
        long size = Math.Max(slots, _lossSums.Length * 2);
        var loss = _accelerator.Allocate1D<float>(size);
        var correct = _accelerator.Allocate1D<int>(size);
        _lossSums.Dispose();
        _correctSums.Dispose();
        _lossSums = loss;
        _correctSums = correct;
    }

    private DeviceDataset Upload(LabeledData data)
    {
        _useClock++;
        if (_datasets.TryGetValue(data, out var cached))
        {
            cached.LastUse = _useClock;
            return cached;
        }
        while (_datasets.Count >= MaxCachedDatasets)
        {
            var oldest = _datasets.MinBy(pair => pair.Value.LastUse);
            oldest.Value.Dispose();
            _datasets.Remove(oldest.Key);
        }
        var labels = new int[data.Count];
        for (int i = 0; i < labels.Length; i++) labels[i] = data.Labels[i];
        var features = _accelerator.Allocate1D<float>(data.Features.Length);
        MemoryBuffer1D<int, Stride1D.Dense>? deviceLabels = null;
        try
        {
            deviceLabels = _accelerator.Allocate1D<int>(labels.Length);
            features.View.CopyFromCPU(_stream, data.Features.AsSpan());
            deviceLabels.View.CopyFromCPU(_stream, labels.AsSpan());
        }
        catch
        {
            features.Dispose();
            deviceLabels?.Dispose();
            throw;
        }
        var dataset = new DeviceDataset(features, deviceLabels) { LastUse = _useClock };
        _datasets.Add(data, dataset);
        return dataset;
    }

    private void ValidateData(LabeledData data)
    {
        ArgumentNullException.ThrowIfNull(data);
        if (data.FeatureSize != Spec.InputSize)
            throw new ArgumentException($"The data has {data.FeatureSize} features per row; model {Spec} expects {Spec.InputSize}.", nameof(data));
        if (data.ClassCount > Spec.OutputSize)
            throw new ArgumentException($"The data has {data.ClassCount} classes; model {Spec} has only {Spec.OutputSize} outputs.", nameof(data));
    }

    private void ValidateBatch(LabeledData data, ReadOnlySpan<int> indices)
    {
        ValidateData(data);
        if (indices.Length == 0)
            throw new ArgumentException("A batch needs at least one row.", nameof(indices));
        if (indices.Length > MaxBatchSize)
            throw new ArgumentException($"A batch of {indices.Length} rows exceeds this trainer's maximum of {MaxBatchSize}.", nameof(indices));
        foreach (int index in indices)
        {
            if ((uint)index >= (uint)data.Count)
                throw new ArgumentOutOfRangeException(nameof(indices), index, $"Row index {index} is outside the {data.Count} rows of '{data.Name}'.");
        }
    }

    private static void RequireLength(int actual, int expected, string name)
    {
        if (actual != expected)
            throw new ArgumentException($"Expected {expected} parameters, got {actual}.", name);
    }

    private sealed class DeviceDataset(MemoryBuffer1D<float, Stride1D.Dense> features, MemoryBuffer1D<int, Stride1D.Dense> labels) : IDisposable
    {
        public MemoryBuffer1D<float, Stride1D.Dense> Features { get; } = features;
        public MemoryBuffer1D<int, Stride1D.Dense> Labels { get; } = labels;
        public long LastUse { get; set; }

        public void Dispose()
        {
            Features.Dispose();
            Labels.Dispose();
        }
    }
}
