using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using FleetLearn.Core.Model;
using FleetLearn.Core.Training;

namespace FleetLearn.Compute.Cpu;

/// <summary>SIMD width a <see cref="CpuTrainer"/> runs its kernels at.</summary>
internal enum SimdWidth
{
    Vector128 = 128,
    Vector256 = 256,
    Vector512 = 512,
}

/// <summary>
/// The SIMD CPU training backend: register-blocked GEMM kernels over <see cref="Vector512{T}"/>,
/// <see cref="Vector256{T}"/> or <see cref="Vector128{T}"/> (the widest the hardware accelerates),
/// ReLU MLP with softmax cross-entropy, SGD fused into the weight-gradient kernel.
/// </summary>
/// <remarks>
/// <para>Internally every weight row, activation row and bias vector is padded with zeros to a
/// multiple of 16 floats, so every inner loop runs whole vectors; the pads stay exactly zero through
/// training (their gradients are zero), and <see cref="LoadParameters"/>/<see cref="ReadParameters"/>
/// convert to and from the flat layout of <see cref="ModelSpec"/>. All buffers are allocated at
/// construction for <see cref="MaxBatchSize"/>: a training step allocates nothing.</para>
/// <para>With more than one thread, each product is split over output units (or input columns) into
/// fixed contiguous ranges; every element is computed by one thread in a fixed order, so results are
/// bit-identical across runs and across thread counts.</para>
/// <para>One file over 450 lines because every member works on one pinned arena through raw pointers laid out with the
/// same padding, and the worker threads run the forward and backward phases from the shared phase state here; the GEMM
/// kernels themselves live in Gemm.cs.</para>
/// </remarks>
public sealed unsafe class CpuTrainer : ITrainer, IPartitionedWork
{
    private const int Pad = 16;

    private readonly Layer[] _layers;
    private readonly float[] _arena; // pinned; every pointer below points into it
    private readonly int[] _labels;
    private readonly WorkerPool? _pool;
    private readonly SimdWidth _width;
    private readonly float* _dyLast, _dxA, _dxB, _zero, _sink, _biasScratch;
    private float _proximal;
    private bool _momentumStarted;
    private bool _disposed;

    // The phase being run (read by every part of a parallel run).
    private Phase _phase;
    private int _phaseLayer, _phaseRows;
    private float* _phaseDy, _phaseDx;
    private SgdStep _phaseStep;

    /// <summary>Creates a trainer for <paramref name="spec"/> accepting batches of up to <paramref name="maxBatchSize"/> rows.</summary>
    /// <param name="spec">The architecture.</param>
    /// <param name="maxBatchSize">Largest batch; buffers are sized for it once.</param>
    /// <param name="threads">Threads per step (1: everything on the calling thread, no pool).</param>
    public CpuTrainer(ModelSpec spec, int maxBatchSize, int threads = 1)
        : this(spec, maxBatchSize, threads, WidestAccelerated())
    {
    }

    /// <summary>Creates a trainer that runs its kernels at <paramref name="width"/> (tests use narrower widths).</summary>
    internal CpuTrainer(ModelSpec spec, int maxBatchSize, int threads, SimdWidth width)
    {
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBatchSize, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(maxBatchSize, 1 << 20);
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(threads, 256);
        Spec = spec;
        MaxBatchSize = maxBatchSize;
        Threads = threads;
        _width = width;

        int layerCount = spec.LayerCount;
        _layers = new Layer[layerCount];
        int maxPadded = 0;
        long total = 0;
        long Take(long floats)
        {
            long at = total;
            total += RoundUp(floats, Pad) + Pad; // a spare vector after each block: edge tiles may read past a row
            return at;
        }

        var offsets = new long[layerCount, 9];
        for (int l = 0; l < layerCount; l++)
        {
            int inP = RoundUp(spec.InputsOf(l), Pad), outP = RoundUp(spec.OutputsOf(l), Pad);
            maxPadded = Math.Max(maxPadded, Math.Max(inP, outP));
            long weights = (long)spec.OutputsOf(l) * inP;
            offsets[l, 0] = Take(weights);
            offsets[l, 1] = Take(outP);
            offsets[l, 2] = Take(weights);
            offsets[l, 3] = Take(outP);
            offsets[l, 4] = Take(weights);
            offsets[l, 5] = Take(outP);
            offsets[l, 6] = Take(weights);
            offsets[l, 7] = Take(outP);
            offsets[l, 8] = Take((long)maxBatchSize * inP); // this layer's input activations
        }
        int outPLast = RoundUp(spec.OutputSize, Pad);
        long logits = Take((long)maxBatchSize * outPLast);
        long dyLast = Take((long)maxBatchSize * outPLast);
        long dxA = Take((long)maxBatchSize * maxPadded);
        long dxB = Take((long)maxBatchSize * maxPadded);
        long zero = Take(maxPadded);
        long sink = Take(maxPadded);
        long scratch = Take(maxPadded);
        if (total + Pad > Array.MaxLength)
            throw new ArgumentException($"Model {spec} with batch {maxBatchSize} needs more memory than one array holds.", nameof(maxBatchSize));

        // One pinned, zeroed array: no finalizer needed, stable pointers, 64-byte aligned blocks.
        _arena = GC.AllocateArray<float>((int)(total + Pad), pinned: true);
        float* origin = (float*)Unsafe.AsPointer(ref _arena[0]);
        float* basePtr = (float*)(((nuint)origin + 63) & ~(nuint)63);
        for (int l = 0; l < layerCount; l++)
        {
            ref var layer = ref _layers[l];
            layer.In = spec.InputsOf(l);
            layer.Out = spec.OutputsOf(l);
            layer.InP = RoundUp(layer.In, Pad);
            layer.OutP = RoundUp(layer.Out, Pad);
            layer.W = basePtr + offsets[l, 0];
            layer.Bias = basePtr + offsets[l, 1];
            layer.MomentumW = basePtr + offsets[l, 2];
            layer.MomentumB = basePtr + offsets[l, 3];
            layer.AnchorW = basePtr + offsets[l, 4];
            layer.AnchorB = basePtr + offsets[l, 5];
            layer.GradW = basePtr + offsets[l, 6];
            layer.GradB = basePtr + offsets[l, 7];
            layer.Input = basePtr + offsets[l, 8];
        }
        for (int l = 0; l < layerCount - 1; l++) _layers[l].Output = _layers[l + 1].Input;
        _layers[^1].Output = basePtr + logits;
        _dyLast = basePtr + dyLast;
        _dxA = basePtr + dxA;
        _dxB = basePtr + dxB;
        _zero = basePtr + zero;
        _sink = basePtr + sink;
        _biasScratch = basePtr + scratch;
        _labels = new int[maxBatchSize];
        if (threads > 1) _pool = new WorkerPool(threads);

        string isa = width switch
        {
            SimdWidth.Vector512 => "AVX-512",
            SimdWidth.Vector256 => Avx2.IsSupported ? "AVX2" : "256-bit",
            _ => AdvSimd.IsSupported ? "NEON" : Sse2.IsSupported ? "SSE" : "128-bit",
        };
        if (width switch
            {
                SimdWidth.Vector512 => !Vector512.IsHardwareAccelerated,
                SimdWidth.Vector256 => !Vector256.IsHardwareAccelerated,
                _ => !Vector128.IsHardwareAccelerated,
            })
            isa += " emulated";
        Description = $"cpu ({isa}, {threads} thread{(threads == 1 ? "" : "s")})";
    }

    /// <inheritdoc/>
    public ModelSpec Spec { get; }

    /// <inheritdoc/>
    public string Description { get; }

    /// <inheritdoc/>
    public int MaxBatchSize { get; }

    /// <summary>Threads each step runs on (the calling thread included).</summary>
    public int Threads { get; }

    internal SimdWidth Width => _width;

    /// <summary>
    /// Phases with fewer multiply-adds than this run on the calling thread even when a pool exists:
    /// handing a few microseconds of work to another thread costs more than it saves. The split
    /// never changes results, so tests set 0 to exercise it on small models.
    /// </summary>
    internal long ParallelThreshold { get; init; } = 200_000;

    /// <summary>The widest vector the hardware accelerates: 512, then 256, then 128 bits.</summary>
    internal static SimdWidth WidestAccelerated() =>
        Vector512.IsHardwareAccelerated ? SimdWidth.Vector512
        : Vector256.IsHardwareAccelerated ? SimdWidth.Vector256
        : SimdWidth.Vector128;

    /// <inheritdoc/>
    public void LoadParameters(ReadOnlySpan<float> parameters)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        CheckLength(parameters.Length, nameof(parameters));
        for (int l = 0; l < _layers.Length; l++)
        {
            ref var layer = ref _layers[l];
            Unpack(parameters, l, layer.W, layer.Bias);
        }
        ResetOptimizerState();
    }

    /// <inheritdoc/>
    public void ReadParameters(Span<float> destination)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        CheckLength(destination.Length, nameof(destination));
        for (int l = 0; l < _layers.Length; l++)
            Pack(l, _layers[l].W, _layers[l].Bias, destination);
    }

    /// <inheritdoc/>
    public void ResetOptimizerState()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _momentumStarted = false; // the next momentum step sets v = d, overwriting the buffer
    }

    /// <inheritdoc/>
    public void SetProximalTerm(ReadOnlySpan<float> anchor, float mu)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!(mu >= 0) || !float.IsFinite(mu))
            throw new ArgumentOutOfRangeException(nameof(mu), mu, "The proximal weight must be a non-negative finite number.");
        if (mu == 0)
        {
            _proximal = 0;
            return;
        }
        CheckLength(anchor.Length, nameof(anchor));
        for (int l = 0; l < _layers.Length; l++)
            Unpack(anchor, l, _layers[l].AnchorW, _layers[l].AnchorB);
        _proximal = mu;
    }

    /// <inheritdoc/>
    public float TrainBatch(LabeledData data, ReadOnlySpan<int> indices, in SgdOptions options)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        options.Validate();
        int rows = GatherBatch(data, indices);
        bool plain = options.Momentum == 0 && options.WeightDecay == 0 && _proximal == 0;
        var step = new SgdStep(plain ? UpdateMode.PlainSgd : UpdateMode.FullSgd, options.LearningRate, options.Momentum,
            options.WeightDecay, _proximal, firstMomentumStep: !_momentumStarted);
        float loss = ForwardAndLoss(rows, gradient: true);
        Backward(rows, step);
        if (options.Momentum != 0) _momentumStarted = true;
        return loss;
    }

    /// <inheritdoc/>
    public float ComputeGradient(LabeledData data, ReadOnlySpan<int> indices, Span<float> gradient)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        CheckLength(gradient.Length, nameof(gradient));
        int rows = GatherBatch(data, indices);
        float loss = ForwardAndLoss(rows, gradient: true);
        Backward(rows, new SgdStep(UpdateMode.StoreGradient, 0, 0, 0, 0, false));
        for (int l = 0; l < _layers.Length; l++)
            Pack(l, _layers[l].GradW, _layers[l].GradB, gradient);
        return loss;
    }

    /// <inheritdoc/>
    /// <remarks>Processes the rows in chunks of <see cref="MaxBatchSize"/>. Ties in the argmax go to the
    /// lowest class index. An empty range gives NaN loss and accuracy with <c>Count = 0</c>.</remarks>
    public EvaluationResult Evaluate(LabeledData data, int start = 0, int count = -1)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        CheckData(data);
        if (start < 0 || start > data.Count)
            throw new ArgumentOutOfRangeException(nameof(start), start, $"Start must be within 0..{data.Count}.");
        if (count == -1) count = data.Count - start;
        if (count < 0 || count > data.Count - start)
            throw new ArgumentOutOfRangeException(nameof(count), count, $"Rows [{start}, {start}+{count}) are not within the {data.Count} rows of {data.Name}.");
        if (count == 0) return new EvaluationResult(double.NaN, double.NaN, 0);

        ref var last = ref _layers[^1];
        double loss = 0;
        int correct = 0;
        fixed (float* features = data.Features)
        {
            for (int done = 0; done < count; done += MaxBatchSize)
            {
                int rows = Math.Min(MaxBatchSize, count - done);
                CopyRows(features + (long)(start + done) * data.FeatureSize, rows);
                for (int b = 0; b < rows; b++) _labels[b] = data.Labels[start + done + b];
                loss += ForwardAndLoss(rows, gradient: false) * (double)rows;
                for (int b = 0; b < rows; b++)
                {
                    float* z = last.Output + (long)b * last.OutP;
                    int best = 0;
                    for (int c = 1; c < last.Out; c++)
                        if (z[c] > z[best]) best = c;
                    if (best == _labels[b]) correct++;
                }
            }
        }
        return new EvaluationResult(loss / count, correct / (double)count, count);
    }

    /// <inheritdoc/>
    public void Forward(ReadOnlySpan<float> inputs, int count, Span<float> logits)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        int inSize = Spec.InputSize, classes = Spec.OutputSize;
        if (inputs.Length < (long)count * inSize)
            throw new ArgumentException($"{count} rows need {(long)count * inSize} input values; got {inputs.Length}.", nameof(inputs));
        if (logits.Length < (long)count * classes)
            throw new ArgumentException($"{count} rows need room for {(long)count * classes} logits; got {logits.Length}.", nameof(logits));
        ref var last = ref _layers[^1];
        fixed (float* x = inputs)
        {
            for (int done = 0; done < count; done += MaxBatchSize)
            {
                int rows = Math.Min(MaxBatchSize, count - done);
                CopyRows(x + (long)done * inSize, rows);
                ForwardLayers(rows);
                for (int b = 0; b < rows; b++)
                    new ReadOnlySpan<float>(last.Output + (long)b * last.OutP, classes).CopyTo(logits.Slice((done + b) * classes, classes));
            }
        }
    }

    /// <summary>Stops the worker threads (if any).</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _pool?.Dispose();
    }

    // ---- one step ----

    private int GatherBatch(LabeledData data, ReadOnlySpan<int> indices)
    {
        CheckData(data);
        int rows = indices.Length;
        if (rows < 1 || rows > MaxBatchSize)
            throw new ArgumentException($"A batch must have 1..{MaxBatchSize} rows; got {rows}.", nameof(indices));
        int inSize = Spec.InputSize, inP = _layers[0].InP, n = data.Count;
        float* dst = _layers[0].Input;
        var labels = data.Labels;
        fixed (float* src = data.Features)
        {
            for (int b = 0; b < rows; b++)
            {
                int index = indices[b];
                if ((uint)index >= (uint)n)
                    throw new ArgumentOutOfRangeException(nameof(indices), index, $"Row index at batch position {b} is outside 0..{n - 1}.");
                Buffer.MemoryCopy(src + (long)index * inSize, dst + (long)b * inP, (long)inP * sizeof(float), (long)inSize * sizeof(float));
                _labels[b] = labels[index];
            }
        }
        return rows;
    }

    private void CopyRows(float* src, int rows)
    {
        int inSize = Spec.InputSize, inP = _layers[0].InP;
        float* dst = _layers[0].Input;
        for (int b = 0; b < rows; b++)
            Buffer.MemoryCopy(src + (long)b * inSize, dst + (long)b * inP, (long)inP * sizeof(float), (long)inSize * sizeof(float));
    }

    private void ForwardLayers(int rows)
    {
        for (int l = 0; l < _layers.Length; l++)
            RunPhase(Phase.Forward, l, rows, null, null, default);
    }

    /// <summary>
    /// Forward pass, then the batch's mean softmax cross-entropy (max subtracted before exp); with
    /// <paramref name="gradient"/>, also <c>dY = (softmax − onehot)/rows</c> for the last layer.
    /// </summary>
    private float ForwardAndLoss(int rows, bool gradient)
    {
        ForwardLayers(rows);
        ref var last = ref _layers[^1];
        int classes = last.Out, ld = last.OutP;
        float inv = 1f / rows;
        double loss = 0;
        for (int b = 0; b < rows; b++)
        {
            float* z = last.Output + (long)b * ld;
            float* dy = _dyLast + (long)b * ld;
            float max = z[0];
            for (int c = 1; c < classes; c++) max = MathF.Max(max, z[c]);
            float sum = 0;
            for (int c = 0; c < classes; c++)
            {
                float e = MathF.Exp(z[c] - max);
                dy[c] = e;
                sum += e;
            }
            int label = _labels[b];
            loss += max + Math.Log(sum) - z[label];
            if (!gradient) continue;
            float scale = inv / sum;
            for (int c = 0; c < classes; c++) dy[c] *= scale;
            dy[label] -= inv;
        }
        return (float)(loss / rows);
    }

    /// <summary>
    /// Back-propagation from the last layer down. Per layer, the input gradient is computed first
    /// (it needs the weights before the step), then the weight gradient with the step fused in.
    /// The first layer's input gradient is never needed and never computed.
    /// </summary>
    private void Backward(int rows, in SgdStep step)
    {
        float* dy = _dyLast;
        for (int l = _layers.Length - 1; l >= 0; l--)
        {
            float* dx = null;
            if (l > 0)
            {
                dx = ((_layers.Length - 1 - l) & 1) == 0 ? _dxA : _dxB;
                RunPhase(Phase.BackwardData, l, rows, dy, dx, step);
            }
            RunPhase(Phase.WeightGrad, l, rows, dy, null, step);
            dy = dx;
        }
    }

    private void RunPhase(Phase phase, int layer, int rows, float* dy, float* dx, in SgdStep step)
    {
        _phase = phase;
        _phaseLayer = layer;
        _phaseRows = rows;
        _phaseDy = dy;
        _phaseDx = dx;
        _phaseStep = step;
        if (_pool is null || PhaseMultiplyAdds(layer, rows) < ParallelThreshold) ExecutePart(0, 1);
        else _pool.Run(this);
    }

    /// <summary>Multiply-adds of each phase of a layer (forward, input gradient, weight gradient alike).</summary>
    private long PhaseMultiplyAdds(int layer, int rows) => (long)rows * _layers[layer].Out * _layers[layer].InP;

    void IPartitionedWork.Execute(int part, int parts) => ExecutePart(part, parts);

    private void ExecutePart(int part, int parts)
    {
        switch (_width)
        {
            case SimdWidth.Vector512: ExecutePart<Simd512, Vector512<float>>(part, parts); break;
            case SimdWidth.Vector256: ExecutePart<Simd256, Vector256<float>>(part, parts); break;
            default: ExecutePart<Simd128, Vector128<float>>(part, parts); break;
        }
    }

    private void ExecutePart<TS, TV>(int part, int parts) where TS : ISimd<TV> where TV : unmanaged
    {
        ref var layer = ref _layers[_phaseLayer];
        int rows = _phaseRows;
        switch (_phase)
        {
            case Phase.Forward:
            {
                var (t0, t1) = Split(DivUp(layer.Out, Gemm.ForwardOutTile), part, parts);
                if (t0 < t1)
                {
                    Gemm.ForwardNT<TS, TV>(layer.Input, layer.InP, rows, layer.W, layer.InP, layer.Out, layer.Bias, layer.InP,
                        layer.Output, layer.OutP, relu: _phaseLayer < _layers.Length - 1,
                        t0 * Gemm.ForwardOutTile, t1 * Gemm.ForwardOutTile, _zero, _sink);
                }
                break;
            }
            case Phase.BackwardData:
            {
                int vectors = layer.InP / TS.Count;
                var (u0, u1) = Split(DivUp(vectors, Gemm.VectorTile), part, parts);
                if (u0 < u1)
                {
                    Gemm.BackwardDataNN<TS, TV>(_phaseDy, layer.OutP, rows, layer.W, layer.InP, layer.Out, layer.Input, layer.InP,
                        _phaseDx, layer.InP, u0 * Gemm.VectorTile, Math.Min(vectors, u1 * Gemm.VectorTile), _zero, _sink);
                }
                break;
            }
            case Phase.WeightGrad:
            {
                int vectors = layer.InP / TS.Count;
                var (t0, t1) = Split(DivUp(layer.Out, Gemm.GradOutTile), part, parts);
                // Keep the X columns of one block (all rows) within ~32 KiB of L1 across the output tiles.
                int kBlock = Math.Max(Gemm.VectorTile, 32 * 1024 / (rows * TS.Count * sizeof(float)) / Gemm.VectorTile * Gemm.VectorTile);
                if (t0 < t1)
                {
                    var weights = new UpdateTarget(layer.W, layer.MomentumW, _proximal != 0 ? layer.AnchorW : null, layer.GradW, layer.InP);
                    Gemm.WeightGradTN<TS, TV>(_phaseDy, layer.OutP, rows, layer.Input, layer.InP, vectors, layer.Out,
                        t0 * Gemm.GradOutTile, t1 * Gemm.GradOutTile, kBlock, weights, _phaseStep);
                }
                if (part == 0)
                {
                    var biases = new UpdateTarget(layer.Bias, layer.MomentumB, _proximal != 0 ? layer.AnchorB : null, layer.GradB, layer.OutP);
                    Gemm.BiasGrad<TS, TV>(_phaseDy, layer.OutP, rows, layer.OutP, _biasScratch, biases, _phaseStep);
                }
                break;
            }
        }
    }

    // ---- layout helpers ----

    private void Unpack(ReadOnlySpan<float> flat, int l, float* w, float* bias)
    {
        ref var layer = ref _layers[l];
        var weights = flat.Slice(Spec.WeightOffset(l), layer.Out * layer.In);
        for (int o = 0; o < layer.Out; o++)
            weights.Slice(o * layer.In, layer.In).CopyTo(new Span<float>(w + (long)o * layer.InP, layer.In));
        flat.Slice(Spec.BiasOffset(l), layer.Out).CopyTo(new Span<float>(bias, layer.Out));
    }

    private void Pack(int l, float* w, float* bias, Span<float> flat)
    {
        ref var layer = ref _layers[l];
        var weights = flat.Slice(Spec.WeightOffset(l), layer.Out * layer.In);
        for (int o = 0; o < layer.Out; o++)
            new ReadOnlySpan<float>(w + (long)o * layer.InP, layer.In).CopyTo(weights.Slice(o * layer.In, layer.In));
        new ReadOnlySpan<float>(bias, layer.Out).CopyTo(flat.Slice(Spec.BiasOffset(l), layer.Out));
    }

    private void CheckLength(int length, string name)
    {
        if (length != Spec.ParameterCount)
            throw new ArgumentException($"Model {Spec} has {Spec.ParameterCount} parameters; got {length}.", name);
    }

    private void CheckData(LabeledData data)
    {
        ArgumentNullException.ThrowIfNull(data);
        if (data.FeatureSize != Spec.InputSize)
            throw new ArgumentException($"Data {data.Name} has {data.FeatureSize} features per row; model {Spec} expects {Spec.InputSize}.", nameof(data));
        if (data.ClassCount > Spec.OutputSize)
            throw new ArgumentException($"Data {data.Name} has {data.ClassCount} classes; model {Spec} outputs {Spec.OutputSize}.", nameof(data));
    }

    private static (int Begin, int End) Split(int units, int part, int parts) =>
        ((int)((long)units * part / parts), (int)((long)units * (part + 1) / parts));

    private static int DivUp(int a, int b) => (a + b - 1) / b;

    private static int RoundUp(int a, int b) => DivUp(a, b) * b;

    private static long RoundUp(long a, int b) => (a + b - 1) / b * b;

    private enum Phase
    {
        Forward,
        BackwardData,
        WeightGrad,
    }

    /// <summary>One dense layer's padded buffers (rows of W and activations have stride InP / OutP).</summary>
    private struct Layer
    {
        public int In, Out, InP, OutP;
        public float* W, Bias, MomentumW, MomentumB, AnchorW, AnchorB, GradW, GradB;
        public float* Input, Output;
    }
}
