using System.Runtime.Intrinsics;
using CsCheck;
using FleetLearn.Compute.Cpu;

namespace FleetLearn.Compute.Tests.Cpu;

/// <summary>Each GEMM kernel against naive double-precision loops over many odd shapes and every vector width.</summary>
public sealed unsafe class GemmTests
{
    private const int Pad = 16;

    public static TheoryData<int> Widths => new() { 512, 256, 128 };

    private static readonly Gen<(int Rows, int Out, int In, uint Seed)> Shapes =
        Gen.Int[1, 70].Select(Gen.Int[1, 70], Gen.Int[1, 70], Gen.UInt);

    [Theory]
    [MemberData(nameof(Widths))]
    public void ForwardNT_OddShapes_MatchesNaiveLoops(int width)
    {
        Shapes.Sample((rows, nOut, nIn, seed) =>
        {
            var rng = new Random((int)seed);
            int inP = Round(nIn), outP = Round(nOut);
            var x = Matrix(rng, rows, nIn, inP);
            var w = Matrix(rng, nOut, nIn, inP);
            var bias = Matrix(rng, 1, nOut, outP);
            var y = new float[rows * outP + Pad];
            bool relu = (seed & 1) == 0;
            var zero = new float[inP + Pad];
            var sink = new float[outP + Pad];
            fixed (float* px = x, pw = w, pb = bias, py = y, pz = zero, ps = sink)
            {
                int tiles = (nOut + 3) / 4;
                // Two calls over split ranges, as two threads would make them.
                Forward(width, px, inP, rows, pw, nOut, pb, py, outP, relu, 0, tiles / 2 * 4, pz, ps);
                Forward(width, px, inP, rows, pw, nOut, pb, py, outP, relu, tiles / 2 * 4, tiles * 4, pz, ps);
            }
            for (int b = 0; b < rows; b++)
            {
                for (int o = 0; o < outP; o++)
                {
                    double expected = 0, scale = 1;
                    if (o < nOut)
                    {
                        expected = bias[o];
                        for (int i = 0; i < nIn; i++)
                        {
                            expected += (double)x[b * inP + i] * w[o * inP + i];
                            scale += Math.Abs((double)x[b * inP + i] * w[o * inP + i]);
                        }
                        if (relu) expected = Math.Max(0, expected);
                    }
                    Assert.True(Math.Abs(expected - y[b * outP + o]) <= 1e-5 * scale, $"y[{b},{o}] of {rows}x{nIn}->{nOut}: expected {expected}, got {y[b * outP + o]}");
                }
            }
            Assert.All(zero, v => Assert.Equal(0f, v));
        }, iter: 60);
    }

    [Theory]
    [MemberData(nameof(Widths))]
    public void BackwardDataNN_OddShapes_MatchesNaiveLoopsWithReluMask(int width)
    {
        Shapes.Sample((rows, nOut, nIn, seed) =>
        {
            var rng = new Random((int)seed);
            int inP = Round(nIn), outP = Round(nOut);
            var dy = Matrix(rng, rows, nOut, outP);
            var w = Matrix(rng, nOut, nIn, inP);
            var act = Matrix(rng, rows, nIn, inP); // about half negative: exercises the mask
            var dx = new float[rows * inP + Pad];
            Array.Fill(dx, float.NaN);
            var zero = new float[Math.Max(inP, outP) + Pad];
            var sink = new float[inP + Pad];
            int vectors = inP / (width / 32);
            fixed (float* pdy = dy, pw = w, pa = act, pdx = dx, pz = zero, ps = sink)
            {
                int split = vectors / 2 / 4 * 4;
                BackwardData(width, pdy, outP, rows, pw, inP, nOut, pa, pdx, 0, split, pz, ps);
                BackwardData(width, pdy, outP, rows, pw, inP, nOut, pa, pdx, split, vectors, pz, ps);
            }
            for (int b = 0; b < rows; b++)
            {
                for (int i = 0; i < inP; i++)
                {
                    double expected = 0, scale = 1;
                    for (int o = 0; o < nOut; o++)
                    {
                        expected += (double)dy[b * outP + o] * w[o * inP + i];
                        scale += Math.Abs((double)dy[b * outP + o] * w[o * inP + i]);
                    }
                    if (!(act[b * inP + i] > 0)) expected = 0;
                    Assert.True(Math.Abs(expected - dx[b * inP + i]) <= 1e-5 * scale, $"dx[{b},{i}] of {rows}x{nOut}->{nIn}: expected {expected}, got {dx[b * inP + i]}");
                }
            }
        }, iter: 60);
    }

    [Theory]
    [MemberData(nameof(Widths))]
    public void WeightGradTN_OddShapes_MatchesNaiveLoops(int width)
    {
        Shapes.Sample((rows, nOut, nIn, seed) =>
        {
            var rng = new Random((int)seed);
            int inP = Round(nIn), outP = Round(nOut);
            var dy = Matrix(rng, rows, nOut, outP);
            var x = Matrix(rng, rows, nIn, inP);
            var g = new float[nOut * inP + Pad];
            Array.Fill(g, float.NaN);
            var gb = new float[outP + Pad];
            var scratch = new float[outP + Pad];
            int vectors = inP / (width / 32);
            int kBlock = 4 * (1 + (int)(seed % 3)); // also exercise cache blocks that end mid-row
            fixed (float* pdy = dy, px = x, pg = g, pgb = gb, psc = scratch)
            {
                var target = new UpdateTarget(null, null, null, pg, inP);
                var step = new SgdStep(UpdateMode.StoreGradient, 0, 0, 0, 0, false);
                int tiles = (nOut + 4) / 5;
                WeightGrad(width, pdy, outP, rows, px, inP, vectors, nOut, 0, tiles / 2 * 5, kBlock, target, step);
                WeightGrad(width, pdy, outP, rows, px, inP, vectors, nOut, tiles / 2 * 5, tiles * 5, kBlock, target, step);
                BiasGrad(width, pdy, outP, rows, psc, new UpdateTarget(null, null, null, pgb, outP), step);
            }
            for (int o = 0; o < nOut; o++)
            {
                double expectedBias = 0;
                for (int b = 0; b < rows; b++) expectedBias += dy[b * outP + o];
                Assert.True(Math.Abs(expectedBias - gb[o]) <= 1e-5 * (1 + rows), $"db[{o}]: expected {expectedBias}, got {gb[o]}");
                for (int i = 0; i < inP; i++)
                {
                    double expected = 0, scale = 1;
                    for (int b = 0; b < rows; b++)
                    {
                        expected += (double)dy[b * outP + o] * x[b * inP + i];
                        scale += Math.Abs((double)dy[b * outP + o] * x[b * inP + i]);
                    }
                    Assert.True(Math.Abs(expected - g[o * inP + i]) <= 1e-5 * scale, $"dW[{o},{i}] of {rows}x{nIn}->{nOut}: expected {expected}, got {g[o * inP + i]}");
                }
            }
            Assert.True(float.IsNaN(g[nOut * inP]), "wrote past the last weight row");
        }, iter: 60);
    }

    [Fact]
    public void Apply_FullSgd_FollowsPyTorchFormula()
    {
        const int n = 48;
        var rng = new Random(5);
        float[] w = Matrix(rng, 1, n, n), m = Matrix(rng, 1, n, n), a = Matrix(rng, 1, n, n), g = Matrix(rng, 1, n, n);
        float[] w0 = w.ToArray(), m0 = m.ToArray();
        fixed (float* pw = w, pm = m, pa = a, pg = g)
        {
            var target = new UpdateTarget(pw, pm, pa, null, n);
            Gemm.Apply<Simd128, Vector128<float>>(pg, 0, n, target, new SgdStep(UpdateMode.FullSgd, 0.1f, 0.9f, 0.01f, 0.5f, false));
        }
        for (int i = 0; i < n; i++)
        {
            double d = g[i] + 0.01 * w0[i] + 0.5 * (w0[i] - a[i]);
            double v = 0.9 * m0[i] + d;
            Assert.Equal(v, m[i], 1e-5);
            Assert.Equal(w0[i] - 0.1 * v, w[i], 1e-5);
        }
    }

    private static int Round(int n) => (n + Pad - 1) / Pad * Pad;

    /// <summary>A rows×cols matrix with row stride <paramref name="ld"/>, zero padding, values in [-1, 1).</summary>
    private static float[] Matrix(Random rng, int rows, int cols, int ld)
    {
        var m = new float[rows * ld + Pad];
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++) m[r * ld + c] = (float)(rng.NextDouble() * 2 - 1);
        return m;
    }

    private static void Forward(int width, float* x, int ld, int rows, float* w, int nOut, float* bias, float* y, int ldy, bool relu, int o0, int o1, float* zero, float* sink)
    {
        switch (width)
        {
            case 512: Gemm.ForwardNT<Simd512, Vector512<float>>(x, ld, rows, w, ld, nOut, bias, ld, y, ldy, relu, o0, o1, zero, sink); break;
            case 256: Gemm.ForwardNT<Simd256, Vector256<float>>(x, ld, rows, w, ld, nOut, bias, ld, y, ldy, relu, o0, o1, zero, sink); break;
            default: Gemm.ForwardNT<Simd128, Vector128<float>>(x, ld, rows, w, ld, nOut, bias, ld, y, ldy, relu, o0, o1, zero, sink); break;
        }
    }

    private static void BackwardData(int width, float* dy, int lddy, int rows, float* w, int ld, int nOut, float* act, float* dx, int v0, int v1, float* zero, float* sink)
    {
        switch (width)
        {
            case 512: Gemm.BackwardDataNN<Simd512, Vector512<float>>(dy, lddy, rows, w, ld, nOut, act, ld, dx, ld, v0, v1, zero, sink); break;
            case 256: Gemm.BackwardDataNN<Simd256, Vector256<float>>(dy, lddy, rows, w, ld, nOut, act, ld, dx, ld, v0, v1, zero, sink); break;
            default: Gemm.BackwardDataNN<Simd128, Vector128<float>>(dy, lddy, rows, w, ld, nOut, act, ld, dx, ld, v0, v1, zero, sink); break;
        }
    }

    private static void WeightGrad(int width, float* dy, int lddy, int rows, float* x, int ldx, int vectors, int nOut, int o0, int o1, int kBlock, in UpdateTarget target, in SgdStep step)
    {
        switch (width)
        {
            case 512: Gemm.WeightGradTN<Simd512, Vector512<float>>(dy, lddy, rows, x, ldx, vectors, nOut, o0, o1, kBlock, target, step); break;
            case 256: Gemm.WeightGradTN<Simd256, Vector256<float>>(dy, lddy, rows, x, ldx, vectors, nOut, o0, o1, kBlock, target, step); break;
            default: Gemm.WeightGradTN<Simd128, Vector128<float>>(dy, lddy, rows, x, ldx, vectors, nOut, o0, o1, kBlock, target, step); break;
        }
    }

    private static void BiasGrad(int width, float* dy, int lddy, int rows, float* scratch, in UpdateTarget target, in SgdStep step)
    {
        switch (width)
        {
            case 512: Gemm.BiasGrad<Simd512, Vector512<float>>(dy, lddy, rows, lddy, scratch, target, step); break;
            case 256: Gemm.BiasGrad<Simd256, Vector256<float>>(dy, lddy, rows, lddy, scratch, target, step); break;
            default: Gemm.BiasGrad<Simd128, Vector128<float>>(dy, lddy, rows, lddy, scratch, target, step); break;
        }
    }
}
