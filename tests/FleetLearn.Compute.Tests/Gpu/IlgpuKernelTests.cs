using FleetLearn.Compute.Gpu;
using FleetLearn.Core.Random;
using ILGPU;
using ILGPU.Runtime;

namespace FleetLearn.Compute.Tests.Gpu;

/// <summary>
/// Each kernel on ILGPU's CPU accelerator against plain loops, at small odd sizes that leave
/// partial GEMM tiles at every edge. Sizes stay tiny: the accelerator simulates every GPU thread.
/// </summary>
public sealed class IlgpuKernelTests
{
    private const float Tolerance = 1e-5f;

    [Theory]
    [InlineData(7, 13, 5, false, true, 0)]   // forward: Y = X·Wᵀ
    [InlineData(33, 17, 9, false, true, 0)]
    [InlineData(7, 13, 5, false, false, 0)]  // dX = dY·W
    [InlineData(33, 17, 9, false, false, 3)]
    [InlineData(7, 13, 5, true, false, 0)]   // dW = dYᵀ·X
    [InlineData(17, 33, 19, true, false, 2)]
    [InlineData(9, 18, 35, true, true, 1)]
    [InlineData(1, 1, 1, false, true, 0)]
    public void Gemm_OddShapes_MatchesLoops(int m, int n, int k, bool transA, bool transB, int padding)
    {
        var rng = new DeterministicRandom((ulong)(m * 1000 + n * 10 + k));
        // Stored shapes: A is M×K (K×M transposed), B is K×N (N×K transposed); rows padded by `padding`.
        int lda = (transA ? m : k) + padding, ldb = (transB ? k : n) + padding, ldc = n + padding;
        var a = RandomArray(rng, (transA ? k : m) * lda);
        var b = RandomArray(rng, (transB ? n : k) * ldb);
        var c = Enumerable.Repeat(-7f, m * ldc).ToArray();
        float A(int i, int j) => transA ? a[j * lda + i] : a[i * lda + j];
        float B(int i, int j) => transB ? b[j * ldb + i] : b[i * ldb + j];

        var actual = Run((kernels, acc) =>
        {
            using var da = acc.Allocate1D(a);
            using var db = acc.Allocate1D(b);
            using var dc = acc.Allocate1D(c);
            kernels.Gemm(da.View, db.View, dc.View, new GemmShape(m, n, k, lda, ldb, ldc, transA ? 1 : 0, transB ? 1 : 0));
            return dc.GetAsArray1D();
        });

        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < ldc; j++)
            {
                double expected = -7;
                if (j < n)
                {
                    expected = 0;
                    for (int p = 0; p < k; p++) expected += (double)A(i, p) * B(p, j);
                }
                AssertClose(expected, actual[i * ldc + j], $"C[{i},{j}]");
            }
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void BiasActivation_OddShape_AddsBiasAndClampsWhenRelu(bool relu)
    {
        const int rows = 5, cols = 7;
        var rng = new DeterministicRandom(41);
        var y = RandomArray(rng, rows * cols);
        var bias = RandomArray(rng, cols);
        var actual = Run((kernels, acc) =>
        {
            using var dy = acc.Allocate1D(y);
            using var dbias = acc.Allocate1D(bias);
            kernels.BiasActivation(dy.View, dbias.View, rows, cols, relu);
            return dy.GetAsArray1D();
        });
        for (int i = 0; i < y.Length; i++)
        {
            float expected = y[i] + bias[i % cols];
            if (relu) expected = Math.Max(0, expected);
            AssertClose(expected, actual[i], $"y[{i}]");
        }
        Assert.Contains(Enumerable.Range(0, y.Length), i => y[i] + bias[i % cols] < 0); // the clamp was exercised
    }

    [Fact]
    public void ReluMask_NonPositiveActivations_ZeroGradient()
    {
        var rng = new DeterministicRandom(42);
        var gradient = RandomArray(rng, 23);
        var activation = RandomArray(rng, 23).Select(v => Math.Max(0, v)).ToArray();
        var actual = Run((kernels, acc) =>
        {
            using var dg = acc.Allocate1D(gradient);
            using var da = acc.Allocate1D(activation);
            kernels.ReluMask(dg.View, da.View, gradient.Length);
            return dg.GetAsArray1D();
        });
        for (int i = 0; i < gradient.Length; i++)
            Assert.Equal(activation[i] > 0 ? gradient[i] : 0f, actual[i]);
        Assert.Contains(activation, v => v == 0);
    }

    [Fact]
    public void SoftmaxCrossEntropy_RandomLogitsAndTie_MatchesDoubleReference()
    {
        const int rows = 9, classes = 7;
        const float scale = 1f / rows;
        var rng = new DeterministicRandom(43);
        var logits = RandomArray(rng, rows * classes).Select(v => v * 6).ToArray();
        logits[2] = logits[5] = 50f; // row 0: tie between classes 2 and 5, the first wins
        var labels = Enumerable.Range(0, rows).Select(r => r == 0 ? 2 : rng.NextInt(classes)).ToArray();

        var (loss, correct, dLogits) = Run((kernels, acc) =>
        {
            using var dz = acc.Allocate1D(logits);
            using var dl = acc.Allocate1D(labels);
            using var grad = acc.Allocate1D<float>(logits.Length);
            using var rowLoss = acc.Allocate1D<float>(rows);
            using var rowCorrect = acc.Allocate1D<int>(rows);
            kernels.SoftmaxCrossEntropy(dz.View, dl.View, grad.View, rowLoss.View, rowCorrect.View, rows, classes, scale, writeGradient: true);
            return (rowLoss.GetAsArray1D(), rowCorrect.GetAsArray1D(), grad.GetAsArray1D());
        });

        for (int r = 0; r < rows; r++)
        {
            var z = logits.AsSpan(r * classes, classes).ToArray().Select(v => (double)v).ToArray();
            var p = ReferenceMlp.Softmax(z);
            AssertClose(-Math.Log(p[labels[r]]), loss[r], $"loss[{r}]");
            int argmax = Array.IndexOf(z, z.Max());
            Assert.Equal(argmax == labels[r] ? 1 : 0, correct[r]);
            for (int c = 0; c < classes; c++)
                AssertClose((p[c] - (c == labels[r] ? 1 : 0)) * scale, dLogits[r * classes + c], $"dLogits[{r},{c}]");
        }
        Assert.Equal(1, correct[0]);
    }

    [Fact]
    public void SoftmaxCrossEntropy_WithoutGradient_LeavesGradientBufferUntouched()
    {
        var logits = new[] { 1f, 2f, 3f, 0.5f, 0.25f, 4f };
        var labels = new[] { 2, 0 };
        var (loss, dLogits) = Run((kernels, acc) =>
        {
            using var dz = acc.Allocate1D(logits);
            using var dl = acc.Allocate1D(labels);
            using var grad = acc.Allocate1D(Enumerable.Repeat(9f, 6).ToArray());
            using var rowLoss = acc.Allocate1D<float>(2);
            using var rowCorrect = acc.Allocate1D<int>(2);
            kernels.SoftmaxCrossEntropy(dz.View, dl.View, grad.View, rowLoss.View, rowCorrect.View, 2, 3, 1f, writeGradient: false);
            return (rowLoss.GetAsArray1D(), grad.GetAsArray1D());
        });
        Assert.All(dLogits, v => Assert.Equal(9f, v));
        AssertClose(-Math.Log(ReferenceMlp.Softmax([1, 2, 3])[2]), loss[0], "loss[0]");
    }

    [Theory]
    [InlineData(37, 19)]
    [InlineData(1, 5)]
    [InlineData(16, 16)]
    public void ColumnSum_OddShapes_MatchesLoops(int rows, int cols)
    {
        var rng = new DeterministicRandom((ulong)(rows * 100 + cols));
        var matrix = RandomArray(rng, rows * cols);
        var actual = Run((kernels, acc) =>
        {
            using var dm = acc.Allocate1D(matrix);
            using var sums = acc.Allocate1D(Enumerable.Repeat(-3f, cols + 1).ToArray());
            kernels.ColumnSum(dm.View, sums.View, rows, cols);
            return sums.GetAsArray1D();
        });
        for (int c = 0; c < cols; c++)
        {
            double expected = 0;
            for (int r = 0; r < rows; r++) expected += matrix[r * cols + c];
            AssertClose(expected, actual[c], $"sum[{c}]");
        }
        Assert.Equal(-3f, actual[cols]); // nothing written past the last column
    }

    [Theory]
    [InlineData(300)]
    [InlineData(5)]
    public void RowReduce_RowsAroundGroupSize_SumsIntoSlot(int count)
    {
        var rng = new DeterministicRandom(44);
        var loss = RandomArray(rng, count);
        var correct = Enumerable.Range(0, count).Select(_ => rng.NextInt(2)).ToArray();
        var (lossSums, correctSums) = Run((kernels, acc) =>
        {
            using var dl = acc.Allocate1D(loss);
            using var dc = acc.Allocate1D(correct);
            using var ls = acc.Allocate1D(new float[] { -1, -1, -1, -1 });
            using var cs = acc.Allocate1D(new[] { -1, -1, -1, -1 });
            kernels.RowReduce(dl.View, dc.View, count, ls.View, cs.View, slot: 2);
            return (ls.GetAsArray1D(), cs.GetAsArray1D());
        });
        AssertClose(loss.Sum(v => (double)v), lossSums[2], "loss sum");
        Assert.Equal(correct.Sum(), correctSums[2]);
        Assert.Equal(new float[] { -1, -1, -1 }, new[] { lossSums[0], lossSums[1], lossSums[3] });
        Assert.Equal(new[] { -1, -1, -1 }, new[] { correctSums[0], correctSums[1], correctSums[3] });
    }

    [Theory]
    [InlineData(0, 0f, 0f)]     // plain SGD
    [InlineData(0, 0.01f, 0.5f)] // weight decay + FedProx, no momentum buffer
    [InlineData(1, 0.01f, 0f)]  // first momentum step: v = d
    [InlineData(2, 0.01f, 0.5f)] // v = μ·v + d
    public void Sgd_EveryMode_FollowsTorchFormula(int mode, float weightDecay, float proximal)
    {
        const int count = 37;
        const float lr = 0.1f, momentum = 0.9f;
        var rng = new DeterministicRandom((ulong)(45 + mode));
        var w = RandomArray(rng, count);
        var g = RandomArray(rng, count);
        var v = RandomArray(rng, count);
        var anchor = RandomArray(rng, count);
        var (newW, newV) = Run((kernels, acc) =>
        {
            using var dw = acc.Allocate1D(w);
            using var dg = acc.Allocate1D(g);
            using var dv = acc.Allocate1D(v);
            using var da = acc.Allocate1D(anchor);
            kernels.Sgd(dw.View, dg.View, dv.View, da.View, count, new SgdStep(lr, momentum, weightDecay, proximal, mode));
            return (dw.GetAsArray1D(), dv.GetAsArray1D());
        });
        for (int i = 0; i < count; i++)
        {
            double d = g[i] + (double)weightDecay * w[i] + (double)proximal * (w[i] - anchor[i]);
            double velocity = mode switch { 0 => v[i], 1 => d, _ => momentum * (double)v[i] + d };
            double step = mode == 0 ? d : velocity;
            AssertClose(w[i] - lr * step, newW[i], $"w[{i}]");
            AssertClose(velocity, newV[i], $"v[{i}]");
        }
    }

    [Fact]
    public void Gather_RepeatedAndUnorderedIndices_CopiesRowsAndLabels()
    {
        const int sourceRows = 11, features = 13;
        var rng = new DeterministicRandom(46);
        var source = RandomArray(rng, sourceRows * features);
        var sourceLabels = Enumerable.Range(0, sourceRows).Select(r => r % 7).ToArray();
        var indices = new[] { 10, 3, 3, 0, 7 };
        var (x, labels) = Run((kernels, acc) =>
        {
            using var ds = acc.Allocate1D(source);
            using var dsl = acc.Allocate1D(sourceLabels);
            using var di = acc.Allocate1D(indices);
            using var dx = acc.Allocate1D<float>(indices.Length * features);
            using var dl = acc.Allocate1D<int>(indices.Length);
            kernels.Gather(ds.View, dsl.View, di.View, dx.View, dl.View, indices.Length, features);
            return (dx.GetAsArray1D(), dl.GetAsArray1D());
        });
        for (int r = 0; r < indices.Length; r++)
        {
            Assert.Equal(source.AsSpan(indices[r] * features, features).ToArray(), x.AsSpan(r * features, features).ToArray());
            Assert.Equal(sourceLabels[indices[r]], labels[r]);
        }
    }

    /// <summary>Runs <paramref name="body"/> on the shared CPU accelerator while holding its gate.</summary>
    private static TResult Run<TResult>(Func<IlgpuKernels, Accelerator, TResult> body)
    {
        var device = IlgpuRuntime.CpuDevice;
        lock (device.Gate)
        {
            var result = body(device.Kernels, device.Accelerator);
            device.Accelerator.Synchronize();
            return result;
        }
    }

    private static float[] RandomArray(DeterministicRandom rng, int length)
    {
        var values = new float[length];
        for (int i = 0; i < length; i++) values[i] = rng.NextSingle() * 2 - 1;
        return values;
    }

    private static void AssertClose(double expected, float actual, string what) =>
        Assert.True(Math.Abs(expected - actual) <= Tolerance * (1 + Math.Abs(expected)), $"{what}: expected {expected}, got {actual}");
}
