using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace FleetLearn.Compute.Gpu;

/// <summary>Shape and operand layout of one <see cref="IlgpuKernels.Gemm"/> call (kernel argument).</summary>
/// <remarks>
/// C[M×N] = op(A)·op(B) with op(A)(m, k) = TransA ? A[k·Lda + m] : A[m·Lda + k] and
/// op(B)(k, n) = TransB ? B[n·Ldb + k] : B[k·Ldb + n]; C[m·Ldc + n], all row-major.
/// Flags are ints because kernel arguments must be blittable with a fixed layout on every backend.
/// </remarks>
internal readonly struct GemmShape(int m, int n, int k, int lda, int ldb, int ldc, int transA, int transB)
{
    public readonly int M = m;
    public readonly int N = n;
    public readonly int K = k;
    public readonly int Lda = lda;
    public readonly int Ldb = ldb;
    public readonly int Ldc = ldc;
    public readonly int TransA = transA;
    public readonly int TransB = transB;
}

/// <summary>Scalars of the fused SGD update (kernel argument).</summary>
internal readonly struct SgdStep(float learningRate, float momentum, float weightDecay, float proximal, int momentumMode)
{
    public readonly float LearningRate = learningRate;
    public readonly float Momentum = momentum;
    public readonly float WeightDecay = weightDecay;
    /// <summary>FedProx ρ; 0 leaves the anchor unread.</summary>
    public readonly float Proximal = proximal;
    /// <summary>0: no momentum buffer; 1: first momentum step (v = d); 2: v = μ·v + d.</summary>
    public readonly int MomentumMode = momentumMode;
}

/// <summary>
/// The training kernels (static methods over <see cref="ArrayView{T}"/>s) and their compiled
/// launchers for one accelerator. Built once per accelerator by <see cref="IlgpuDevice"/>; every
/// launch goes to the accelerator's default stream, so calls are ordered and results are read
/// back with a synchronizing copy.
/// </summary>
internal sealed class IlgpuKernels
{
    /// <summary>Edge of the square GEMM output tile computed by one group.</summary>
    public const int Tile = 16;

    /// <summary>Edge of a GEMM group (8×8 threads); each thread computes a 2×2 micro-tile.</summary>
    public const int GemmThreads = 8;

    /// <summary>
    /// Threads per group of every explicitly grouped kernel. 64 is two CUDA warps (one AMD
    /// wavefront) and keeps ILGPU's CPU simulator, which runs each thread on an OS thread, at 64 threads.
    /// </summary>
    public const int GroupSize = GemmThreads * GemmThreads;

    /// <summary>Rows handled side by side by one <see cref="ColumnSum"/> group (Tile columns × this).</summary>
    private const int ColumnSumRowLanes = GroupSize / Tile;

    // Shared tiles carry one padding column so that transposed stores (stride Tile+1) hit distinct banks.
    private const int TileStride = Tile + 1;

    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmShape> _gemm;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, int, int> _biasActivation;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>> _reluMask;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<int>, int, float, int> _softmaxCrossEntropy;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, int, int> _columnSum;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<int>, int, ArrayView<float>, ArrayView<int>, int> _rowReduce;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, SgdStep> _sgd;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<int>, ArrayView<int>, ArrayView<float>, ArrayView<int>, int> _gather;

    /// <summary>Compiles every kernel for <paramref name="accelerator"/> (seconds on first use; do it once).</summary>
    public IlgpuKernels(Accelerator accelerator)
    {
        ArgumentNullException.ThrowIfNull(accelerator);
        if (accelerator.MaxNumThreadsPerGroup < GroupSize)
            throw new NotSupportedException($"{accelerator.Name} allows {accelerator.MaxNumThreadsPerGroup} threads per group; the kernels need {GroupSize}.");
        _gemm = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmShape>(GemmKernel);
        _biasActivation = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, int, int>(BiasActivationKernel);
        _reluMask = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>>(ReluMaskKernel);
        _softmaxCrossEntropy = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<int>, int, float, int>(SoftmaxCrossEntropyKernel);
        _columnSum = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int, int>(ColumnSumKernel);
        _rowReduce = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<int>, int, ArrayView<float>, ArrayView<int>, int>(RowReduceKernel);
        _sgd = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, SgdStep>(SgdKernel);
        _gather = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<int>, ArrayView<int>, ArrayView<float>, ArrayView<int>, int>(GatherKernel);
    }

    // ---------------------------------------------------------------- launchers

    /// <summary>C[M×N] = op(A)·op(B) (see <see cref="GemmShape"/>); C is overwritten.</summary>
    public void Gemm(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, in GemmShape shape)
    {
        if (shape.M == 0 || shape.N == 0) return;
        var grid = new Index2D(DivUp(shape.N, Tile), DivUp(shape.M, Tile));
        _gemm(new KernelConfig(grid, new Index2D(GemmThreads, GemmThreads)), a, b, c, shape);
    }

    /// <summary>y[r, o] += bias[o], then ReLU when <paramref name="relu"/>; y is rows×cols.</summary>
    public void BiasActivation(ArrayView<float> y, ArrayView<float> bias, int rows, int cols, bool relu)
    {
        if (rows * cols == 0) return;
        _biasActivation(rows * cols, y, bias, cols, relu ? 1 : 0);
    }

    /// <summary>Backward ReLU: gradient[i] = 0 where activation[i] ≤ 0 (activation is post-ReLU).</summary>
    public void ReluMask(ArrayView<float> gradient, ArrayView<float> activation, int count)
    {
        if (count == 0) return;
        _reluMask(count, gradient, activation);
    }

    /// <summary>
    /// Per row of logits (rows×classes): loss = logsumexp(z) − z[label], correct = (first argmax = label),
    /// and when <paramref name="writeGradient"/>, dLogits = (softmax(z) − onehot)·<paramref name="gradientScale"/>.
    /// </summary>
    public void SoftmaxCrossEntropy(ArrayView<float> logits, ArrayView<int> labels, ArrayView<float> dLogits,
        ArrayView<float> rowLoss, ArrayView<int> rowCorrect, int rows, int classes, float gradientScale, bool writeGradient)
    {
        if (rows == 0) return;
        _softmaxCrossEntropy(rows, logits, labels, dLogits, rowLoss, rowCorrect, classes, gradientScale, writeGradient ? 1 : 0);
    }

    /// <summary>sums[o] = Σ_r matrix[r, o] over a rows×cols matrix (bias gradient), in a fixed order.</summary>
    public void ColumnSum(ArrayView<float> matrix, ArrayView<float> sums, int rows, int cols)
    {
        if (cols == 0) return;
        _columnSum(new KernelConfig(new Index2D(DivUp(cols, Tile), 1), new Index2D(Tile, ColumnSumRowLanes)), matrix, sums, rows, cols);
    }

    /// <summary>lossSums[slot] = Σ rowLoss[0..n), correctSums[slot] = Σ rowCorrect[0..n), in a fixed order.</summary>
    public void RowReduce(ArrayView<float> rowLoss, ArrayView<int> rowCorrect, int count, ArrayView<float> lossSums, ArrayView<int> correctSums, int slot) =>
        _rowReduce(new KernelConfig(1, GroupSize), rowLoss, rowCorrect, count, lossSums, correctSums, slot);

    /// <summary>Fused SGD step over <paramref name="count"/> parameters (PyTorch semantics, see <see cref="SgdStep"/>).</summary>
    public void Sgd(ArrayView<float> weights, ArrayView<float> gradient, ArrayView<float> velocity, ArrayView<float> anchor, int count, in SgdStep step)
    {
        if (count == 0) return;
        _sgd(count, weights, gradient, velocity, anchor, step);
    }

    /// <summary>x[r, :] = source[indices[r], :] and labels[r] = sourceLabels[indices[r]] for r &lt; rows.</summary>
    public void Gather(ArrayView<float> source, ArrayView<int> sourceLabels, ArrayView<int> indices,
        ArrayView<float> x, ArrayView<int> labels, int rows, int features)
    {
        if (rows * features == 0) return;
        _gather(rows * features, source, sourceLabels, indices, x, labels, features);
    }

    private static int DivUp(int value, int divisor) => (value + divisor - 1) / divisor;

    // ---------------------------------------------------------------- kernels

    /// <summary>
    /// Shared-memory tiled GEMM: each 8×8 group computes one 16×16 block of C, walking K one tile
    /// at a time; thread (x, y) owns outputs (y + 8i, x + 8j), i, j ∈ {0, 1}. Transposed operands
    /// are loaded with the roles of row and column swapped so that consecutive threads read
    /// consecutive addresses (coalesced) in every layout.
    /// </summary>
    internal static void GemmKernel(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, GemmShape s)
    {
        var aTile = SharedMemory.Allocate<float>(Tile * TileStride); // [m][k]
        var bTile = SharedMemory.Allocate<float>(Tile * TileStride); // [k][n]
        int tx = Group.IdxX, ty = Group.IdxY;
        int thread = ty * GemmThreads + tx;
        int rowBase = Grid.IdxY * Tile, colBase = Grid.IdxX * Tile;
        float c00 = 0f, c01 = 0f, c10 = 0f, c11 = 0f;
        for (int k0 = 0; k0 < s.K; k0 += Tile)
        {
            for (int e = 0; e < Tile * Tile / GroupSize; e++)
            {
                int linear = e * GroupSize + thread;
                int major = linear / Tile, minor = linear - major * Tile; // minor runs along memory
                // Out-of-range elements read index 0 (always valid) and store 0: the loads stay in
                // bounds even if the compiler turns the bounds test into a select.
                int m = rowBase + (s.TransA == 0 ? major : minor);
                int k = k0 + (s.TransA == 0 ? minor : major);
                bool inside = m < s.M && k < s.K;
                float value = a[inside ? (s.TransA == 0 ? m * s.Lda + k : k * s.Lda + m) : 0];
                aTile[(m - rowBase) * TileStride + (k - k0)] = inside ? value : 0f;

                int kb = k0 + (s.TransB == 0 ? major : minor);
                int n = colBase + (s.TransB == 0 ? minor : major);
                inside = kb < s.K && n < s.N;
                value = b[inside ? (s.TransB == 0 ? kb * s.Ldb + n : n * s.Ldb + kb) : 0];
                bTile[(kb - k0) * TileStride + (n - colBase)] = inside ? value : 0f;
            }
            Group.Barrier();
            for (int kk = 0; kk < Tile; kk++)
            {
                float a0 = aTile[ty * TileStride + kk];
                float a1 = aTile[(ty + GemmThreads) * TileStride + kk];
                float b0 = bTile[kk * TileStride + tx];
                float b1 = bTile[kk * TileStride + tx + GemmThreads];
                c00 += a0 * b0;
                c01 += a0 * b1;
                c10 += a1 * b0;
                c11 += a1 * b1;
            }
            Group.Barrier();
        }
        int row = rowBase + ty, col = colBase + tx;
        StoreIfInside(c, s, row, col, c00);
        StoreIfInside(c, s, row, col + GemmThreads, c01);
        StoreIfInside(c, s, row + GemmThreads, col, c10);
        StoreIfInside(c, s, row + GemmThreads, col + GemmThreads, c11);
    }

    private static void StoreIfInside(ArrayView<float> c, GemmShape s, int row, int col, float value)
    {
        if (row < s.M && col < s.N)
            c[row * s.Ldc + col] = value;
    }

    internal static void BiasActivationKernel(Index1D index, ArrayView<float> y, ArrayView<float> bias, int cols, int relu)
    {
        int i = index;
        float v = y[i] + bias[i % cols];
        if (relu != 0 && v < 0f) v = 0f;
        y[i] = v;
    }

    internal static void ReluMaskKernel(Index1D index, ArrayView<float> gradient, ArrayView<float> activation)
    {
        int i = index;
        if (!(activation[i] > 0f)) gradient[i] = 0f;
    }

    internal static void SoftmaxCrossEntropyKernel(Index1D index, ArrayView<float> logits, ArrayView<int> labels, ArrayView<float> dLogits,
        ArrayView<float> rowLoss, ArrayView<int> rowCorrect, int classes, float gradientScale, int writeGradient)
    {
        int row = index;
        int offset = row * classes;
        float max = logits[offset];
        int argmax = 0;
        for (int c = 1; c < classes; c++)
        {
            float z = logits[offset + c];
            if (z > max) { max = z; argmax = c; }
        }
        float sum = 0f;
        for (int c = 0; c < classes; c++)
            sum += XMath.Exp(logits[offset + c] - max);
        int label = labels[row];
        rowLoss[row] = max + XMath.Log(sum) - logits[offset + label];
        rowCorrect[row] = argmax == label ? 1 : 0;
        if (writeGradient != 0)
        {
            float inverse = 1f / sum;
            for (int c = 0; c < classes; c++)
            {
                float p = XMath.Exp(logits[offset + c] - max) * inverse;
                dLogits[offset + c] = (c == label ? p - 1f : p) * gradientScale;
            }
        }
    }

    /// <summary>
    /// Column sums with Tile×4 groups: thread (x, y) adds rows y, y+4, … of column
    /// groupX·Tile + x (coalesced along x), then the 4 partial sums of a column are added in a
    /// fixed tree order in shared memory.
    /// </summary>
    internal static void ColumnSumKernel(ArrayView<float> matrix, ArrayView<float> sums, int rows, int cols)
    {
        var partial = SharedMemory.Allocate<float>(GroupSize);
        int tx = Group.IdxX, ty = Group.IdxY;
        int col = Grid.IdxX * Tile + tx;
        float acc = 0f;
        if (col < cols)
        {
            for (int r = ty; r < rows; r += ColumnSumRowLanes)
                acc += matrix[r * cols + col];
        }
        partial[ty * Tile + tx] = acc;
        Group.Barrier();
        for (int half = ColumnSumRowLanes / 2; half > 0; half /= 2)
        {
            if (ty < half)
                partial[ty * Tile + tx] += partial[(ty + half) * Tile + tx];
            Group.Barrier();
        }
        if (ty == 0 && col < cols)
            sums[col] = partial[tx];
    }

    /// <summary>One group: strided per-thread sums, then a shared-memory tree (deterministic order).</summary>
    internal static void RowReduceKernel(ArrayView<float> rowLoss, ArrayView<int> rowCorrect, int count,
        ArrayView<float> lossSums, ArrayView<int> correctSums, int slot)
    {
        var loss = SharedMemory.Allocate<float>(GroupSize);
        var correct = SharedMemory.Allocate<int>(GroupSize);
        int t = Group.IdxX;
        float l = 0f;
        int k = 0;
        for (int r = t; r < count; r += GroupSize)
        {
            l += rowLoss[r];
            k += rowCorrect[r];
        }
        loss[t] = l;
        correct[t] = k;
        Group.Barrier();
        for (int half = GroupSize / 2; half > 0; half /= 2)
        {
            if (t < half)
            {
                loss[t] += loss[t + half];
                correct[t] += correct[t + half];
            }
            Group.Barrier();
        }
        if (t == 0)
        {
            lossSums[slot] = loss[0];
            correctSums[slot] = correct[0];
        }
    }

    /// <summary>
    /// d = g + λ·w + ρ·(w − w₀); v ← μ·v + d (v = d on the first step); w ← w − lr·v
    /// (torch.optim.SGD without dampening or Nesterov, plus the FedProx term of Li et al. 2020).
    /// </summary>
    internal static void SgdKernel(Index1D index, ArrayView<float> weights, ArrayView<float> gradient, ArrayView<float> velocity,
        ArrayView<float> anchor, SgdStep s)
    {
        int i = index;
        float w = weights[i];
        float d = gradient[i] + s.WeightDecay * w;
        if (s.Proximal != 0f)
            d += s.Proximal * (w - anchor[i]);
        if (s.MomentumMode == 1)
        {
            velocity[i] = d;
        }
        else if (s.MomentumMode == 2)
        {
            d += s.Momentum * velocity[i];
            velocity[i] = d;
        }
        weights[i] = w - s.LearningRate * d;
    }

    internal static void GatherKernel(Index1D index, ArrayView<float> source, ArrayView<int> sourceLabels, ArrayView<int> indices,
        ArrayView<float> x, ArrayView<int> labels, int features)
    {
        int i = index;
        int row = i / features;
        int col = i - row * features;
        int sourceRow = indices[row];
        x[i] = source[(long)sourceRow * features + col];
        if (col == 0)
            labels[row] = sourceLabels[sourceRow];
    }
}
