using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace FleetLearn.Compute.Cpu;

/// <summary>What the weight-gradient kernel does with each finished gradient tile.</summary>
internal enum UpdateMode
{
    /// <summary>Store the gradient (for <c>ComputeGradient</c>).</summary>
    StoreGradient,

    /// <summary><c>w ← w − lr·g</c> (no momentum, weight decay or proximal term).</summary>
    PlainSgd,

    /// <summary>Full PyTorch SGD: <c>d = g + λw + ρ(w − w₀)</c>; <c>v ← μv + d</c> (or <c>d</c> on the first step); <c>w ← w − lr·v</c>.</summary>
    FullSgd,
}

/// <summary>One SGD step's constants, shared by every parameter block of a step.</summary>
internal readonly struct SgdStep(UpdateMode mode, float learningRate, float momentum, float weightDecay, float proximal, bool firstMomentumStep)
{
    public readonly UpdateMode Mode = mode;
    public readonly float LearningRate = learningRate;
    public readonly float Momentum = momentum;
    public readonly float WeightDecay = weightDecay;
    public readonly float Proximal = proximal;
    public readonly bool FirstMomentumStep = firstMomentumStep;
}

/// <summary>
/// Where the update of one parameter block (a padded weight matrix or a bias vector) goes: the
/// parameters, their momentum buffer, the FedProx anchor (null without a proximal term) and the
/// gradient destination (StoreGradient mode). All share one padded layout with row stride <c>Stride</c>.
/// </summary>
internal readonly unsafe struct UpdateTarget(float* parameters, float* momentum, float* anchor, float* gradient, int stride)
{
    public readonly float* Parameters = parameters;
    public readonly float* MomentumBuffer = momentum;
    public readonly float* Anchor = anchor;
    public readonly float* Gradient = gradient;
    public readonly int Stride = stride;
}

/// <summary>
/// Register-blocked single-precision GEMM kernels for the three products of MLP training, over
/// padded row-major buffers whose reduction length is a multiple of the vector width:
/// forward <c>Y = X·Wᵀ + b</c> (NT), input gradient <c>dX = dY·W</c> (NN) and weight gradient
/// <c>dW = dYᵀ·X</c> (TN) with the optimizer step fused into its store.
/// </summary>
/// <remarks>
/// Edge tiles never branch inside the inner loop: missing input rows read a shared zero row and
/// missing output rows write a scratch sink row, so every tile runs the same straight-line code.
/// Every output element is computed by one tile with a fixed summation order, so results do not
/// depend on how work is split across threads.
/// </remarks>
[SkipLocalsInit]
internal static unsafe class Gemm
{
    /// <summary>Rows of X per forward tile and rows of dY per input-gradient tile.</summary>
    public const int RowTile = 5;

    /// <summary>Rows of W per forward tile.</summary>
    public const int ForwardOutTile = 4;

    /// <summary>Output units (rows of dW) per weight-gradient tile.</summary>
    public const int GradOutTile = 5;

    /// <summary>Vectors along the contiguous dimension per NN / TN tile.</summary>
    public const int VectorTile = 4;

    /// <summary>
    /// <c>y[b, o] = act(bias[o] + Σ_k x[b, k]·w[o, k])</c> for <c>b &lt; rows</c> and
    /// <c>o ∈ [oBegin, oEnd)</c> (multiples of <see cref="ForwardOutTile"/>; rows of W at or past
    /// <paramref name="outCount"/> read as zero, so padded outputs get <c>act(bias[o])</c> = 0).
    /// <paramref name="k"/> is a multiple of the vector width; <paramref name="bias"/> is padded to
    /// <paramref name="oEnd"/>; <paramref name="zeroRow"/> holds at least <paramref name="k"/> zeros.
    /// </summary>
    public static void ForwardNT<TS, TV>(float* x, int ldx, int rows, float* w, int ldw, int outCount, float* bias, int k,
        float* y, int ldy, bool relu, int oBegin, int oEnd, float* zeroRow, float* sink)
        where TS : ISimd<TV> where TV : unmanaged
    {
        for (int o = oBegin; o < oEnd; o += ForwardOutTile)
        {
            float* w0 = o < outCount ? w + (nint)o * ldw : zeroRow;
            float* w1 = o + 1 < outCount ? w + (nint)(o + 1) * ldw : zeroRow;
            float* w2 = o + 2 < outCount ? w + (nint)(o + 2) * ldw : zeroRow;
            float* w3 = o + 3 < outCount ? w + (nint)(o + 3) * ldw : zeroRow;
            var b4 = Vector128.Load(bias + o);
            for (int r = 0; r < rows; r += RowTile)
            {
                float* x0 = x + (nint)r * ldx;
                float* x1 = r + 1 < rows ? x0 + ldx : zeroRow;
                float* x2 = r + 2 < rows ? x0 + 2 * (nint)ldx : zeroRow;
                float* x3 = r + 3 < rows ? x0 + 3 * (nint)ldx : zeroRow;
                float* x4 = r + 4 < rows ? x0 + 4 * (nint)ldx : zeroRow;
                float* y0 = y + (nint)r * ldy + o;
                float* y1 = r + 1 < rows ? y0 + ldy : sink;
                float* y2 = r + 2 < rows ? y0 + 2 * (nint)ldy : sink;
                float* y3 = r + 3 < rows ? y0 + 3 * (nint)ldy : sink;
                float* y4 = r + 4 < rows ? y0 + 4 * (nint)ldy : sink;
                ForwardTile<TS, TV>(x0, x1, x2, x3, x4, w0, w1, w2, w3, k, b4, relu, y0, y1, y2, y3, y4);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ForwardTile<TS, TV>(float* x0, float* x1, float* x2, float* x3, float* x4,
        float* w0, float* w1, float* w2, float* w3, int k, Vector128<float> bias, bool relu,
        float* y0, float* y1, float* y2, float* y3, float* y4)
        where TS : ISimd<TV> where TV : unmanaged
    {
        TV c00 = TS.Zero, c01 = TS.Zero, c02 = TS.Zero, c03 = TS.Zero;
        TV c10 = TS.Zero, c11 = TS.Zero, c12 = TS.Zero, c13 = TS.Zero;
        TV c20 = TS.Zero, c21 = TS.Zero, c22 = TS.Zero, c23 = TS.Zero;
        TV c30 = TS.Zero, c31 = TS.Zero, c32 = TS.Zero, c33 = TS.Zero;
        TV c40 = TS.Zero, c41 = TS.Zero, c42 = TS.Zero, c43 = TS.Zero;
        int step = TS.Count;
        for (nint i = 0; i < k; i += step)
        {
            TV a0 = TS.Load(w0 + i), a1 = TS.Load(w1 + i), a2 = TS.Load(w2 + i), a3 = TS.Load(w3 + i);
            TV v = TS.Load(x0 + i);
            c00 = TS.Fma(v, a0, c00); c01 = TS.Fma(v, a1, c01); c02 = TS.Fma(v, a2, c02); c03 = TS.Fma(v, a3, c03);
            v = TS.Load(x1 + i);
            c10 = TS.Fma(v, a0, c10); c11 = TS.Fma(v, a1, c11); c12 = TS.Fma(v, a2, c12); c13 = TS.Fma(v, a3, c13);
            v = TS.Load(x2 + i);
            c20 = TS.Fma(v, a0, c20); c21 = TS.Fma(v, a1, c21); c22 = TS.Fma(v, a2, c22); c23 = TS.Fma(v, a3, c23);
            v = TS.Load(x3 + i);
            c30 = TS.Fma(v, a0, c30); c31 = TS.Fma(v, a1, c31); c32 = TS.Fma(v, a2, c32); c33 = TS.Fma(v, a3, c33);
            v = TS.Load(x4 + i);
            c40 = TS.Fma(v, a0, c40); c41 = TS.Fma(v, a1, c41); c42 = TS.Fma(v, a2, c42); c43 = TS.Fma(v, a3, c43);
        }
        var s0 = TS.Sum4(c00, c01, c02, c03) + bias;
        var s1 = TS.Sum4(c10, c11, c12, c13) + bias;
        var s2 = TS.Sum4(c20, c21, c22, c23) + bias;
        var s3 = TS.Sum4(c30, c31, c32, c33) + bias;
        var s4 = TS.Sum4(c40, c41, c42, c43) + bias;
        if (relu)
        {
            s0 = Vector128.Max(s0, Vector128<float>.Zero);
            s1 = Vector128.Max(s1, Vector128<float>.Zero);
            s2 = Vector128.Max(s2, Vector128<float>.Zero);
            s3 = Vector128.Max(s3, Vector128<float>.Zero);
            s4 = Vector128.Max(s4, Vector128<float>.Zero);
        }
        s0.Store(y0); s1.Store(y1); s2.Store(y2); s3.Store(y3); s4.Store(y4);
    }

    /// <summary>
    /// <c>dx[b, k] = [act[b, k] &gt; 0] · Σ_{o &lt; outCount} dy[b, o]·w[o, k]</c> for <c>b &lt; rows</c>
    /// and the vectors <c>[vBegin, vEnd)</c> of k (the ReLU derivative of the layer below is fused in).
    /// </summary>
    public static void BackwardDataNN<TS, TV>(float* dy, int lddy, int rows, float* w, int ldw, int outCount,
        float* act, int ldact, float* dx, int lddx, int vBegin, int vEnd, float* zeroRow, float* sink)
        where TS : ISimd<TV> where TV : unmanaged
    {
        int vw = TS.Count;
        for (int r = 0; r < rows; r += RowTile)
        {
            float* d0 = dy + (nint)r * lddy;
            float* d1 = r + 1 < rows ? d0 + lddy : zeroRow;
            float* d2 = r + 2 < rows ? d0 + 2 * (nint)lddy : zeroRow;
            float* d3 = r + 3 < rows ? d0 + 3 * (nint)lddy : zeroRow;
            float* d4 = r + 4 < rows ? d0 + 4 * (nint)lddy : zeroRow;
            float* a0 = act + (nint)r * ldact;
            float* a1 = r + 1 < rows ? a0 + ldact : zeroRow;
            float* a2 = r + 2 < rows ? a0 + 2 * (nint)ldact : zeroRow;
            float* a3 = r + 3 < rows ? a0 + 3 * (nint)ldact : zeroRow;
            float* a4 = r + 4 < rows ? a0 + 4 * (nint)ldact : zeroRow;
            float* o0 = dx + (nint)r * lddx;
            float* o1 = r + 1 < rows ? o0 + lddx : sink;
            float* o2 = r + 2 < rows ? o0 + 2 * (nint)lddx : sink;
            float* o3 = r + 3 < rows ? o0 + 3 * (nint)lddx : sink;
            float* o4 = r + 4 < rows ? o0 + 4 * (nint)lddx : sink;
            int v = vBegin;
            for (; v + VectorTile <= vEnd; v += VectorTile)
            {
                nint c = (nint)v * vw;
                BackwardDataTile4<TS, TV>(d0, d1, d2, d3, d4, w + c, ldw, outCount,
                    a0 + c, a1 + c, a2 + c, a3 + c, a4 + c, o0 + c, o1 + c, o2 + c, o3 + c, o4 + c);
            }
            for (; v < vEnd; v++)
            {
                nint c = (nint)v * vw;
                BackwardDataTile1<TS, TV>(d0, d1, d2, d3, d4, w + c, ldw, outCount,
                    a0 + c, a1 + c, a2 + c, a3 + c, a4 + c, o0 + c, o1 + c, o2 + c, o3 + c, o4 + c);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void BackwardDataTile4<TS, TV>(float* d0, float* d1, float* d2, float* d3, float* d4, float* w, int ldw, int outCount,
        float* a0, float* a1, float* a2, float* a3, float* a4, float* o0, float* o1, float* o2, float* o3, float* o4)
        where TS : ISimd<TV> where TV : unmanaged
    {
        TV c00 = TS.Zero, c01 = TS.Zero, c02 = TS.Zero, c03 = TS.Zero;
        TV c10 = TS.Zero, c11 = TS.Zero, c12 = TS.Zero, c13 = TS.Zero;
        TV c20 = TS.Zero, c21 = TS.Zero, c22 = TS.Zero, c23 = TS.Zero;
        TV c30 = TS.Zero, c31 = TS.Zero, c32 = TS.Zero, c33 = TS.Zero;
        TV c40 = TS.Zero, c41 = TS.Zero, c42 = TS.Zero, c43 = TS.Zero;
        int vw = TS.Count;
        float* wr = w;
        for (nint o = 0; o < outCount; o++, wr += ldw)
        {
            TV b0 = TS.Load(wr), b1 = TS.Load(wr + vw), b2 = TS.Load(wr + 2 * vw), b3 = TS.Load(wr + 3 * vw);
            TV s = TS.Broadcast(d0[o]);
            c00 = TS.Fma(s, b0, c00); c01 = TS.Fma(s, b1, c01); c02 = TS.Fma(s, b2, c02); c03 = TS.Fma(s, b3, c03);
            s = TS.Broadcast(d1[o]);
            c10 = TS.Fma(s, b0, c10); c11 = TS.Fma(s, b1, c11); c12 = TS.Fma(s, b2, c12); c13 = TS.Fma(s, b3, c13);
            s = TS.Broadcast(d2[o]);
            c20 = TS.Fma(s, b0, c20); c21 = TS.Fma(s, b1, c21); c22 = TS.Fma(s, b2, c22); c23 = TS.Fma(s, b3, c23);
            s = TS.Broadcast(d3[o]);
            c30 = TS.Fma(s, b0, c30); c31 = TS.Fma(s, b1, c31); c32 = TS.Fma(s, b2, c32); c33 = TS.Fma(s, b3, c33);
            s = TS.Broadcast(d4[o]);
            c40 = TS.Fma(s, b0, c40); c41 = TS.Fma(s, b1, c41); c42 = TS.Fma(s, b2, c42); c43 = TS.Fma(s, b3, c43);
        }
        TS.Store(o0, TS.WherePositive(c00, TS.Load(a0))); TS.Store(o0 + vw, TS.WherePositive(c01, TS.Load(a0 + vw)));
        TS.Store(o0 + 2 * vw, TS.WherePositive(c02, TS.Load(a0 + 2 * vw))); TS.Store(o0 + 3 * vw, TS.WherePositive(c03, TS.Load(a0 + 3 * vw)));
        TS.Store(o1, TS.WherePositive(c10, TS.Load(a1))); TS.Store(o1 + vw, TS.WherePositive(c11, TS.Load(a1 + vw)));
        TS.Store(o1 + 2 * vw, TS.WherePositive(c12, TS.Load(a1 + 2 * vw))); TS.Store(o1 + 3 * vw, TS.WherePositive(c13, TS.Load(a1 + 3 * vw)));
        TS.Store(o2, TS.WherePositive(c20, TS.Load(a2))); TS.Store(o2 + vw, TS.WherePositive(c21, TS.Load(a2 + vw)));
        TS.Store(o2 + 2 * vw, TS.WherePositive(c22, TS.Load(a2 + 2 * vw))); TS.Store(o2 + 3 * vw, TS.WherePositive(c23, TS.Load(a2 + 3 * vw)));
        TS.Store(o3, TS.WherePositive(c30, TS.Load(a3))); TS.Store(o3 + vw, TS.WherePositive(c31, TS.Load(a3 + vw)));
        TS.Store(o3 + 2 * vw, TS.WherePositive(c32, TS.Load(a3 + 2 * vw))); TS.Store(o3 + 3 * vw, TS.WherePositive(c33, TS.Load(a3 + 3 * vw)));
        TS.Store(o4, TS.WherePositive(c40, TS.Load(a4))); TS.Store(o4 + vw, TS.WherePositive(c41, TS.Load(a4 + vw)));
        TS.Store(o4 + 2 * vw, TS.WherePositive(c42, TS.Load(a4 + 2 * vw))); TS.Store(o4 + 3 * vw, TS.WherePositive(c43, TS.Load(a4 + 3 * vw)));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void BackwardDataTile1<TS, TV>(float* d0, float* d1, float* d2, float* d3, float* d4, float* w, int ldw, int outCount,
        float* a0, float* a1, float* a2, float* a3, float* a4, float* o0, float* o1, float* o2, float* o3, float* o4)
        where TS : ISimd<TV> where TV : unmanaged
    {
        TV c0 = TS.Zero, c1 = TS.Zero, c2 = TS.Zero, c3 = TS.Zero, c4 = TS.Zero;
        float* wr = w;
        for (nint o = 0; o < outCount; o++, wr += ldw)
        {
            TV b = TS.Load(wr);
            c0 = TS.Fma(TS.Broadcast(d0[o]), b, c0);
            c1 = TS.Fma(TS.Broadcast(d1[o]), b, c1);
            c2 = TS.Fma(TS.Broadcast(d2[o]), b, c2);
            c3 = TS.Fma(TS.Broadcast(d3[o]), b, c3);
            c4 = TS.Fma(TS.Broadcast(d4[o]), b, c4);
        }
        TS.Store(o0, TS.WherePositive(c0, TS.Load(a0)));
        TS.Store(o1, TS.WherePositive(c1, TS.Load(a1)));
        TS.Store(o2, TS.WherePositive(c2, TS.Load(a2)));
        TS.Store(o3, TS.WherePositive(c3, TS.Load(a3)));
        TS.Store(o4, TS.WherePositive(c4, TS.Load(a4)));
    }

    /// <summary>
    /// Weight gradient <c>g[o, k] = Σ_{b &lt; rows} dy[b, o]·x[b, k]</c> for output units
    /// <c>o ∈ [oBegin, oEnd)</c> (multiples of <see cref="GradOutTile"/>; units at or past
    /// <paramref name="outCount"/> are computed from whatever the padded dY holds and discarded)
    /// over all <paramref name="kVectors"/> vectors of k, each finished tile handed straight to the
    /// optimizer step so the gradient never goes through memory. <paramref name="kBlock"/> (a multiple
    /// of <see cref="VectorTile"/>) bounds the slice of X kept hot in L1 across the output tiles.
    /// </summary>
    public static void WeightGradTN<TS, TV>(float* dy, int lddy, int rows, float* x, int ldx, int kVectors, int outCount,
        int oBegin, int oEnd, int kBlock, in UpdateTarget target, in SgdStep step)
        where TS : ISimd<TV> where TV : unmanaged
    {
        int vw = TS.Count;
        float* tile = stackalloc float[GradOutTile * VectorTile * 16];
        for (int kb = 0; kb < kVectors; kb += kBlock)
        {
            int kbEnd = Math.Min(kVectors, kb + kBlock);
            for (int o = oBegin; o < oEnd; o += GradOutTile)
            {
                int valid = Math.Min(GradOutTile, outCount - o);
                int v = kb;
                for (; v + VectorTile <= kbEnd; v += VectorTile)
                {
                    WeightGradTile4<TS, TV>(dy + o, lddy, rows, x + (nint)v * vw, ldx, tile);
                    for (int r = 0; r < valid; r++)
                        Apply<TS, TV>(tile + r * VectorTile * vw, (nint)(o + r) * target.Stride + (nint)v * vw, VectorTile * vw, target, step);
                }
                for (; v < kbEnd; v++)
                {
                    WeightGradTile1<TS, TV>(dy + o, lddy, rows, x + (nint)v * vw, ldx, tile);
                    for (int r = 0; r < valid; r++)
                        Apply<TS, TV>(tile + r * vw, (nint)(o + r) * target.Stride + (nint)v * vw, vw, target, step);
                }
            }
        }
    }

    /// <summary>Stores <c>Σ_b dy[b, r]·x[b, 0..4V)</c> for r &lt; 5 into <paramref name="tile"/> (row r at r·4V).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void WeightGradTile4<TS, TV>(float* dy, int lddy, int rows, float* x, int ldx, float* tile)
        where TS : ISimd<TV> where TV : unmanaged
    {
        TV c00 = TS.Zero, c01 = TS.Zero, c02 = TS.Zero, c03 = TS.Zero;
        TV c10 = TS.Zero, c11 = TS.Zero, c12 = TS.Zero, c13 = TS.Zero;
        TV c20 = TS.Zero, c21 = TS.Zero, c22 = TS.Zero, c23 = TS.Zero;
        TV c30 = TS.Zero, c31 = TS.Zero, c32 = TS.Zero, c33 = TS.Zero;
        TV c40 = TS.Zero, c41 = TS.Zero, c42 = TS.Zero, c43 = TS.Zero;
        int vw = TS.Count;
        for (int b = 0; b < rows; b++, dy += lddy, x += ldx)
        {
            TV b0 = TS.Load(x), b1 = TS.Load(x + vw), b2 = TS.Load(x + 2 * vw), b3 = TS.Load(x + 3 * vw);
            TV s = TS.Broadcast(dy[0]);
            c00 = TS.Fma(s, b0, c00); c01 = TS.Fma(s, b1, c01); c02 = TS.Fma(s, b2, c02); c03 = TS.Fma(s, b3, c03);
            s = TS.Broadcast(dy[1]);
            c10 = TS.Fma(s, b0, c10); c11 = TS.Fma(s, b1, c11); c12 = TS.Fma(s, b2, c12); c13 = TS.Fma(s, b3, c13);
            s = TS.Broadcast(dy[2]);
            c20 = TS.Fma(s, b0, c20); c21 = TS.Fma(s, b1, c21); c22 = TS.Fma(s, b2, c22); c23 = TS.Fma(s, b3, c23);
            s = TS.Broadcast(dy[3]);
            c30 = TS.Fma(s, b0, c30); c31 = TS.Fma(s, b1, c31); c32 = TS.Fma(s, b2, c32); c33 = TS.Fma(s, b3, c33);
            s = TS.Broadcast(dy[4]);
            c40 = TS.Fma(s, b0, c40); c41 = TS.Fma(s, b1, c41); c42 = TS.Fma(s, b2, c42); c43 = TS.Fma(s, b3, c43);
        }
        int r = VectorTile * vw;
        TS.Store(tile, c00); TS.Store(tile + vw, c01); TS.Store(tile + 2 * vw, c02); TS.Store(tile + 3 * vw, c03);
        TS.Store(tile + r, c10); TS.Store(tile + r + vw, c11); TS.Store(tile + r + 2 * vw, c12); TS.Store(tile + r + 3 * vw, c13);
        TS.Store(tile + 2 * r, c20); TS.Store(tile + 2 * r + vw, c21); TS.Store(tile + 2 * r + 2 * vw, c22); TS.Store(tile + 2 * r + 3 * vw, c23);
        TS.Store(tile + 3 * r, c30); TS.Store(tile + 3 * r + vw, c31); TS.Store(tile + 3 * r + 2 * vw, c32); TS.Store(tile + 3 * r + 3 * vw, c33);
        TS.Store(tile + 4 * r, c40); TS.Store(tile + 4 * r + vw, c41); TS.Store(tile + 4 * r + 2 * vw, c42); TS.Store(tile + 4 * r + 3 * vw, c43);
    }

    /// <summary>Stores <c>Σ_b dy[b, r]·x[b, 0..V)</c> for r &lt; 5 into <paramref name="tile"/> (row r at r·V).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void WeightGradTile1<TS, TV>(float* dy, int lddy, int rows, float* x, int ldx, float* tile)
        where TS : ISimd<TV> where TV : unmanaged
    {
        TV c0 = TS.Zero, c1 = TS.Zero, c2 = TS.Zero, c3 = TS.Zero, c4 = TS.Zero;
        for (int b = 0; b < rows; b++, dy += lddy, x += ldx)
        {
            TV v = TS.Load(x);
            c0 = TS.Fma(TS.Broadcast(dy[0]), v, c0);
            c1 = TS.Fma(TS.Broadcast(dy[1]), v, c1);
            c2 = TS.Fma(TS.Broadcast(dy[2]), v, c2);
            c3 = TS.Fma(TS.Broadcast(dy[3]), v, c3);
            c4 = TS.Fma(TS.Broadcast(dy[4]), v, c4);
        }
        int vw = TS.Count;
        TS.Store(tile, c0); TS.Store(tile + vw, c1); TS.Store(tile + 2 * vw, c2); TS.Store(tile + 3 * vw, c3); TS.Store(tile + 4 * vw, c4);
    }

    /// <summary>
    /// Bias gradient <c>g[o] = Σ_b dy[b, o]</c> over the padded width (a multiple of the vector width),
    /// then the same optimizer step as the weights.
    /// </summary>
    public static void BiasGrad<TS, TV>(float* dy, int lddy, int rows, int paddedWidth, float* scratch, in UpdateTarget target, in SgdStep step)
        where TS : ISimd<TV> where TV : unmanaged
    {
        int vw = TS.Count;
        for (int v = 0; v < paddedWidth; v += vw)
        {
            TV s = TS.Load(dy + v);
            float* row = dy + v;
            for (int b = 1; b < rows; b++)
            {
                row += lddy;
                s = TS.Add(s, TS.Load(row));
            }
            TS.Store(scratch + v, s);
        }
        Apply<TS, TV>(scratch, 0, paddedWidth, target, step);
    }

    /// <summary>
    /// The optimizer step for <paramref name="count"/> consecutive parameters at <paramref name="offset"/>
    /// with gradient <paramref name="g"/>, in one pass (PyTorch <c>torch.optim.SGD</c> order of operations).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Apply<TS, TV>(float* g, nint offset, int count, in UpdateTarget target, in SgdStep step)
        where TS : ISimd<TV> where TV : unmanaged
    {
        int vw = TS.Count;
        switch (step.Mode)
        {
            case UpdateMode.StoreGradient:
            {
                float* dst = target.Gradient + offset;
                for (int j = 0; j < count; j += vw) TS.Store(dst + j, TS.Load(g + j));
                break;
            }
            case UpdateMode.PlainSgd:
            {
                float* w = target.Parameters + offset;
                TV lr = TS.Broadcast(-step.LearningRate);
                for (int j = 0; j < count; j += vw) TS.Store(w + j, TS.Fma(lr, TS.Load(g + j), TS.Load(w + j)));
                break;
            }
            default:
                ApplyFull<TS, TV>(g, offset, count, target, step);
                break;
        }
    }

    private static void ApplyFull<TS, TV>(float* g, nint offset, int count, in UpdateTarget target, in SgdStep step)
        where TS : ISimd<TV> where TV : unmanaged
    {
        int vw = TS.Count;
        float* w = target.Parameters + offset;
        float* m = target.MomentumBuffer + offset;
        float* a = target.Anchor is null ? null : target.Anchor + offset;
        TV lr = TS.Broadcast(-step.LearningRate), mu = TS.Broadcast(step.Momentum);
        TV wd = TS.Broadcast(step.WeightDecay), rho = TS.Broadcast(step.Proximal);
        bool momentum = step.Momentum != 0, first = step.FirstMomentumStep;
        for (int j = 0; j < count; j += vw)
        {
            TV wj = TS.Load(w + j);
            TV d = TS.Fma(wd, wj, TS.Load(g + j));
            if (a is not null) d = TS.Fma(rho, TS.Subtract(wj, TS.Load(a + j)), d);
            if (momentum)
            {
                if (!first) d = TS.Fma(mu, TS.Load(m + j), d);
                TS.Store(m + j, d);
            }
            TS.Store(w + j, TS.Fma(lr, d, wj));
        }
    }
}
