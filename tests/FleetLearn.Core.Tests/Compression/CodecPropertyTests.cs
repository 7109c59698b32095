using CsCheck;
using FleetLearn.Core.Compression;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Core.Tests.Compression;

public sealed class CodecPropertyTests
{
    [Fact]
    public void Quantize_ManyDraws_MeanIsUnbiasedWithinFiveSigma()
    {
        const int draws = 4000;
        Gen.Select(Gen.Int[1, 10], Gen.Double[-1, 1], Gen.ULong).Sample((bits, x, seed) =>
        {
            var source = new SeededNoiseSource(seed);
            var values = new float[draws];
            Array.Fill(values, (float)x);
            var levels = new uint[draws];
            Assert.Equal(0, StochasticQuantizer.Quantize(values, 1.0, bits, source, levels));
            var decoded = new float[draws];
            StochasticQuantizer.Dequantize(levels, 1.0, bits, decoded);
            double mean = decoded.Average(v => (double)v);
            // Each draw is x's grid neighbour below or above: variance ≤ Δ²/4, so the mean's σ ≤ Δ/(2√N).
            double bound = 5 * StochasticQuantizer.Step(1.0, bits) / (2 * Math.Sqrt(draws)) + 1e-6;
            Assert.True(Math.Abs(mean - (float)x) <= bound, $"b={bits} x={x}: mean {mean}, bound {bound}");
        }, iter: 60);
    }

    [Fact]
    public void Quantize_AnyValueInRange_ErrorBelowOneStep()
    {
        Gen.Select(Gen.Int[1, 16], Gen.Float[-3f, 3f].Array[1, 200], Gen.ULong).Sample((bits, values, seed) =>
        {
            var levels = new uint[values.Length];
            Assert.Equal(0, StochasticQuantizer.Quantize(values, 3.0, bits, new SeededNoiseSource(seed), levels));
            Assert.All(levels, l => Assert.True(l <= StochasticQuantizer.MaxLevel(bits)));
            var decoded = new float[values.Length];
            StochasticQuantizer.Dequantize(levels, 3.0, bits, decoded);
            double step = StochasticQuantizer.Step(3.0, bits);
            for (int i = 0; i < values.Length; i++) Assert.True(Math.Abs(decoded[i] - values[i]) <= step * (1 + 1e-6) + 1e-6, $"b={bits}: {values[i]} → {decoded[i]}, step {step}");
        });
    }

    [Fact]
    public void Quantize_ValuesOutsideRange_AreClampedAndCounted()
    {
        var levels = new uint[3];
        int clamped = StochasticQuantizer.Quantize([-5f, 0f, 5f], 1.0, 4, new SeededNoiseSource(1), levels);
        Assert.Equal(2, clamped);
        Assert.Equal(0u, levels[0]);
        Assert.Equal(15u, levels[2]);
    }

    [Fact]
    public void Hadamard_BasisImages_AreOrthonormal()
    {
        const int n = 32;
        var rotation = new RandomizedHadamard(n, 7);
        var columns = new float[n][];
        for (int i = 0; i < n; i++)
        {
            columns[i] = new float[n];
            columns[i][i] = 1;
            rotation.Forward(columns[i]);
        }
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
            {
                double dot = 0;
                for (int k = 0; k < n; k++) dot += columns[i][k] * columns[j][k];
                Assert.Equal(i == j ? 1.0 : 0.0, dot, 1e-6);
            }
    }

    [Fact]
    public void Hadamard_ForwardThenInverse_RecoversInputAndNorm()
    {
        Gen.Select(Gen.Int[0, 12], Gen.ULong, Gen.ULong).Sample((log, seed, dataSeed) =>
        {
            int n = 1 << log;
            var rng = new Core.Random.DeterministicRandom(dataSeed);
            var x = new float[n];
            for (int i = 0; i < n; i++) x[i] = (float)rng.NextGaussian();
            var y = (float[])x.Clone();
            var rotation = new RandomizedHadamard(n, seed);
            rotation.Forward(y);
            double nx = L2Clipping.Norm(x), ny = L2Clipping.Norm(y);
            Assert.True(Math.Abs(nx - ny) <= 1e-5 * Math.Max(1, nx), $"norm {nx} → {ny}");
            rotation.Inverse(y);
            for (int i = 0; i < n; i++) Assert.True(Math.Abs(x[i] - y[i]) <= 1e-5 * Math.Max(1, nx), $"n={n} i={i}: {x[i]} → {y[i]}");
        });
    }

    [Fact]
    public void Hadamard_SameSeed_SameRotation_DifferentSeed_Differs()
    {
        float[] Rotate(ulong seed) { var x = Enumerable.Range(0, 64).Select(i => (float)i).ToArray(); new RandomizedHadamard(64, seed).Forward(x); return x; }
        Assert.Equal(Rotate(3), Rotate(3));
        Assert.NotEqual(Rotate(3), Rotate(4));
    }

    /// <summary>The vectorized finiteness check (the receive path runs it over every float32 update) agrees with float.IsFinite at every position, tails included.</summary>
    [Fact]
    public void AllFinite_NonFiniteValueAnywhere_FoundExactlyAsTheScalarCheck()
    {
        var special = Gen.OneOfConst(float.NaN, float.PositiveInfinity, float.NegativeInfinity, BitConverter.Int32BitsToSingle(unchecked((int)0xFFC00001)));
        Gen.Select(Gen.Float.Array[0, 70], Gen.Int[0, 69], special, Gen.Bool).Sample((values, at, bad, inject) =>
        {
            if (inject && values.Length > 0) values[at % values.Length] = bad;
            Assert.Equal(values.All(float.IsFinite), FleetLearn.Core.Numerics.VectorMath.AllFinite(values));
        });
    }

    /// <summary>A float32 update (codec none) decodes to exactly the floats that were sent, read from the envelope in place.</summary>
    [Fact]
    public void Decode_Float32Update_ExactlyTheValuesSent()
    {
        Gen.Float[-1e6f, 1e6f].Array[1, 300].Sample(values =>
        {
            var round = new UpdatePipeline(new UpdatePipelineOptions { Codec = CodecSpec.None, Dimension = values.Length }).ForRound(1, 1);
            var bytes = round.EncodePlain((float[])values.Clone(), 2, 7, Guid.Empty, new SeededNoiseSource(1), new SeededNoiseSource(2), null, out _);
            var decoded = round.Decode(bytes, 7);
            Assert.Equal(values, decoded.Delta);
            Assert.Equal(2, decoded.Header.Weight);
        });
    }

    [Fact]
    public void BitPacking_EveryBitWidth_RoundTrips()
    {
        foreach (int bits in Enumerable.Range(1, 16).Append(32))
        {
            Gen.UInt.Array[0, 300].Sample(raw =>
            {
                uint mask = bits == 32 ? uint.MaxValue : (1u << bits) - 1;
                var values = raw.Select(v => v & mask).ToArray();
                var packed = new byte[BitPacking.PackedLength(values.Length, bits)];
                BitPacking.Pack(values, bits, packed);
                var back = new uint[values.Length];
                Assert.True(BitPacking.TryUnpack(packed, bits, back));
                Assert.Equal(values, back);
            }, iter: 40);
        }
    }

    [Fact]
    public void SharedSubsample_SameSeed_ExactlyKAscendingIndices()
    {
        Gen.Select(Gen.Int[1, 5000], Gen.Double[0.001, 1], Gen.ULong).Sample((n, p, seed) =>
        {
            var a = new SharedSubsample(n, p, seed);
            var b = new SharedSubsample(n, p, seed);
            Assert.Equal(SharedSubsample.KeptCount(n, p), a.Indices.Length);
            Assert.Equal(a.Indices, b.Indices);
            for (int i = 1; i < a.Indices.Length; i++) Assert.True(a.Indices[i] > a.Indices[i - 1]);
            Assert.True(a.Indices[^1] < n && a.Indices[0] >= 0);
        });
    }

    [Fact]
    public void TopKSelect_RandomVectors_MatchesSortedSelection()
    {
        Gen.Select(Gen.Float[-10f, 10f].Array[1, 400], Gen.Double[0.001, 1]).Sample((values, p) =>
        {
            int k = TopK.Count(values.Length, p);
            var indices = new int[k];
            TopK.Select(values, indices);
            for (int i = 1; i < k; i++) Assert.True(indices[i] > indices[i - 1]);
            float kth = values.Select(Math.Abs).OrderByDescending(v => v).ElementAt(k - 1);
            Assert.All(indices, i => Assert.True(Math.Abs(values[i]) >= kth));
            Assert.Equal(values.Count(v => Math.Abs(v) > kth), indices.Count(i => Math.Abs(values[i]) > kth));
        });
    }

    [Fact]
    public void ErrorFeedbackStore_OverBudget_EvictsLeastRecentlyUsed()
    {
        var store = new ErrorFeedbackStore(4, 2);
        store.GetOrCreate(1)[0] = 1;
        store.GetOrCreate(2);
        store.GetOrCreate(1);
        store.GetOrCreate(3);
        Assert.True(store.Contains(1));
        Assert.False(store.Contains(2));
        Assert.Equal(1, store.Evicted);
        Assert.Equal(1f, store.GetOrCreate(1)[0]);
        Assert.Equal(2 * 4 * 4L, store.Bytes);
    }
}
