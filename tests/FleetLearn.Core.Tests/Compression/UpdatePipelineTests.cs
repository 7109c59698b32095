using CsCheck;
using FleetLearn.Core.Compression;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Random;
using FleetLearn.Testing;

namespace FleetLearn.Core.Tests.Compression;

public sealed class UpdatePipelineTests
{
    private const int Dim = 300;

    private static float[] RandomUpdate(ulong seed, int dim = Dim, double scale = 0.1)
    {
        var rng = new DeterministicRandom(seed);
        var x = new float[dim];
        for (int i = 0; i < dim; i++) x[i] = (float)(scale * rng.NextGaussian());
        return x;
    }

    private static UpdatePipeline Pipeline(string codec, double? clip = null, SecureAggregationMode secure = SecureAggregationMode.Off, int cohort = 1, int dim = Dim) =>
        new(new UpdatePipelineOptions { Codec = CodecSpec.Parse(codec), Dimension = dim, ClipNorm = clip, SecureAggregation = secure, CohortSize = cohort });

    private static readonly string[] DenseCodecs = ["none", "q1", "q4", "q8", "q16", "rot+q4", "rot+q8", "q8+deflate", "rot+q8+brotli", "q8+shared", "rot+q2+shared"];

    [Fact]
    public void EncodeDecode_DenseCodecs_ErrorWithinStatedBound()
    {
        Gen.Select(Gen.OneOfConst(DenseCodecs), Gen.ULong, Gen.ULong).Sample((codec, dataSeed, seed) =>
        {
            var spec = CodecSpec.Parse(codec);
            var round = Pipeline(codec, clip: spec.SharedRange ? 10.0 : null).ForRound(9, seed);
            var x = RandomUpdate(dataSeed);
            var original = (float[])x.Clone();
            var bytes = round.EncodePlain(x, 3, 42, Guid.NewGuid(), new SeededNoiseSource(1), new SeededNoiseSource(seed), null, out var info);
            Assert.Equal(0, info.Clamped);
            var decoded = round.Decode(bytes, 42);
            Assert.Equal(3.0, decoded.Header.Weight);
            double step = round.StepFor(decoded.Header.Range);
            if (spec.Rotate)
            {
                // Every rotated coordinate is within Δ; the inverse rotation preserves the L2 error.
                double err = Math.Sqrt(original.Zip(decoded.Delta).Sum(p => (double)(p.First - p.Second) * (p.First - p.Second)));
                Assert.True(err <= step * Math.Sqrt(round.Pipeline.PaddedLength) + 1e-5, $"{codec}: L2 error {err}, bound {step * Math.Sqrt(round.Pipeline.PaddedLength)}");
            }
            else
            {
                for (int i = 0; i < Dim; i++) Assert.True(Math.Abs(original[i] - decoded.Delta[i]) <= step * (1 + 1e-6) + 1e-7, $"{codec}: coordinate {i}: {original[i]} → {decoded.Delta[i]}, step {step}");
            }
        }, iter: 60);
    }

    [Fact]
    public void EncodeDecode_NoneCodec_IsExactAndSizedFourBytesPerParameter()
    {
        var round = Pipeline("none").ForRound(1, 1);
        var x = RandomUpdate(5);
        var bytes = round.EncodePlain((float[])x.Clone(), 1, 0, Guid.Empty, new SeededNoiseSource(1), new SeededNoiseSource(1), null, out _);
        Assert.Equal(UpdateEnvelope.HeaderBytes + 4 * Dim, bytes.Length);
        Assert.Equal(x, round.Decode(bytes).Delta);
    }

    [Fact]
    public void EncodeDecode_Subsample_CarriesExactlyTheSharedCoordinates()
    {
        var round = Pipeline("sub0.25+q16", clip: null).ForRound(2, 77);
        var x = RandomUpdate(6);
        var bytes = round.EncodePlain((float[])x.Clone(), 1, 0, Guid.Empty, new SeededNoiseSource(1), new SeededNoiseSource(2), null, out _);
        var sub = new SharedSubsample(Dim, 0.25, 77);
        var decoded = round.Decode(bytes).Delta;
        double step = round.StepFor(x.Max(Math.Abs));
        for (int i = 0; i < Dim; i++)
        {
            bool kept = Array.BinarySearch(sub.Indices, i) >= 0;
            // Kept coordinates come back ×1/p (unbiased); the rest are zero.
            if (kept) Assert.True(Math.Abs(decoded[i] - x[i] * Dim / (double)sub.Indices.Length) <= step * Dim / sub.Indices.Length + 1e-6);
            else Assert.Equal(0f, decoded[i]);
        }
    }

    [Fact]
    public void EncodeDecode_TopKWithErrorFeedback_SentPlusResidualIsTheInput()
    {
        var round = Pipeline("topk0.1+ef+q8").ForRound(3, 3);
        var x = RandomUpdate(8);
        var residual = RandomUpdate(9, scale: 0.01);
        var expectedTotal = x.Zip(residual, (a, b) => a + b).ToArray();
        var bytes = round.EncodePlain((float[])x.Clone(), 1, 5, Guid.NewGuid(), new SeededNoiseSource(1), new SeededNoiseSource(4), residual, out _);
        var decoded = round.Decode(bytes, 5);
        int k = TopK.Count(Dim, 0.1);
        double step = round.StepFor(decoded.Header.Range);
        for (int i = 0; i < Dim; i++)
        {
            if (residual[i] == 0) Assert.True(Math.Abs(decoded.Delta[i] - expectedTotal[i]) <= step + 1e-6, $"kept {i}");
            else
            {
                Assert.Equal(0f, decoded.Delta[i]);
                Assert.Equal(expectedTotal[i], residual[i]);
            }
        }
        Assert.Equal(k, residual.Count(v => v == 0));
    }

    [Fact]
    public void Decode_RandomBytes_OnlyUpdateFormatException()
    {
        var round = Pipeline("topk0.1+ef+q8+deflate").ForRound(3, 3);
        Gen.Byte.Array[0, 600].Sample(bytes =>
        {
            try { round.Decode(bytes); }
            catch (UpdateFormatException) { }
        }, iter: 3000);
    }

    [Fact]
    public void Decode_MutatedEnvelopes_OnlyUpdateFormatExceptionOrValidUpdate()
    {
        foreach (var codec in new[] { "q4", "rot+q8+brotli", "topk0.2+ef+q8+deflate", "none" })
        {
            var round = Pipeline(codec).ForRound(3, 3);
            var valid = round.EncodePlain(RandomUpdate(1), 1, 5, Guid.NewGuid(), new SeededNoiseSource(1), new SeededNoiseSource(4), codec.Contains("ef", StringComparison.Ordinal) ? new float[Dim] : null, out _);
            Gen.Select(Gen.Int[0, valid.Length - 1], Gen.Byte, Gen.Int[0, 2]).Sample((where, value, how) =>
            {
                byte[] bytes = how switch
                {
                    0 => valid.Select((b, i) => i == where ? value : b).ToArray(),
                    1 => valid[..where],
                    _ => [.. valid, value],
                };
                try
                {
                    var d = round.Decode(bytes);
                    Assert.True(Core.Numerics.VectorMath.AllFinite(d.Delta));
                }
                catch (UpdateFormatException) { }
            }, iter: 500);
        }
    }

    [Fact]
    public void Decode_WrongRoundVersionOrOversize_ClearErrors()
    {
        var pipeline = Pipeline("q8");
        var bytes = pipeline.ForRound(3, 3).EncodePlain(RandomUpdate(1), 1, 5, Guid.NewGuid(), new SeededNoiseSource(1), new SeededNoiseSource(4), null, out _);
        Assert.Contains("round 3, expected round 4", Assert.Throws<UpdateFormatException>(() => pipeline.ForRound(4, 3).Decode(bytes)).Message, StringComparison.Ordinal);
        var wrongVersion = (byte[])bytes.Clone();
        wrongVersion[4] = 2;
        Assert.Contains("version 2", Assert.Throws<UpdateFormatException>(() => pipeline.ForRound(3, 3).Decode(wrongVersion)).Message, StringComparison.Ordinal);
        Assert.Contains("exceeds", Assert.Throws<UpdateFormatException>(() => pipeline.ForRound(3, 3).Decode(new byte[pipeline.MaxEnvelopeBytes + 1])).Message, StringComparison.Ordinal);
        Assert.Contains("vehicle 5; it came from vehicle 6", Assert.Throws<UpdateFormatException>(() => pipeline.ForRound(3, 3).Decode(bytes, 6)).Message, StringComparison.Ordinal);
        Assert.Contains("codec id", Assert.Throws<UpdateFormatException>(() => Pipeline("q8+deflate").ForRound(3, 3).Decode(bytes)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Decode_NaNInFloatBody_Rejected()
    {
        var round = Pipeline("none").ForRound(1, 1);
        var bytes = round.EncodePlain(RandomUpdate(1), 1, 0, Guid.Empty, new SeededNoiseSource(1), new SeededNoiseSource(1), null, out _);
        BitConverter.GetBytes(float.NaN).CopyTo(bytes, UpdateEnvelope.HeaderBytes + 8);
        Assert.Contains("NaN", Assert.Throws<UpdateFormatException>(() => round.Decode(bytes)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void DecodeSegments_NoneCodecAnyCut_KeepsTheSegmentsAndDecodesWhatTheSpanDecoderDecodes()
    {
        var round = Pipeline("none").ForRound(1, 1);
        Gen.Select(Gen.ULong, Gen.Int[0, UpdateEnvelope.HeaderBytes + 4 * Dim].Array[0, 9]).Sample((seed, cuts) =>
        {
            var bytes = round.EncodePlain(RandomUpdate(seed), 2, 4, Guid.Empty, new SeededNoiseSource(1), new SeededNoiseSource(1), null, out _);
            var decoded = round.Decode(Segments.Cut(bytes, cuts), 4);
            Assert.NotNull(decoded.Segments);
            Assert.Equal(2.0, decoded.Header.Weight);
            Assert.Equal(round.Decode(bytes, 4).Delta, decoded.Delta);
        });
    }

    [Fact]
    public void DecodeSegments_BadUpdates_RefusedWithTheSpanDecodersMessages()
    {
        var round = Pipeline("none").ForRound(1, 1);
        var bytes = round.EncodePlain(RandomUpdate(1), 1, 0, Guid.Empty, new SeededNoiseSource(1), new SeededNoiseSource(1), null, out _);
        var nan = (byte[])bytes.Clone();
        BitConverter.GetBytes(float.NaN).CopyTo(nan, UpdateEnvelope.HeaderBytes + 400); // value 100: its bytes straddle the cut at 475
        Assert.Equal("Update contains NaN or infinite values.", Assert.Throws<UpdateFormatException>(() => round.Decode(Segments.Cut(nan, [30, 475]))).Message);
        var straddling = (byte[])bytes.Clone();
        BitConverter.GetBytes(float.PositiveInfinity).CopyTo(straddling, UpdateEnvelope.HeaderBytes + 40);
        Assert.Equal("Update contains NaN or infinite values.", Assert.Throws<UpdateFormatException>(() => round.Decode(Segments.Cut(straddling, [UpdateEnvelope.HeaderBytes + 42]))).Message);
        Assert.Equal("Update claims vehicle 0; it came from vehicle 5.", Assert.Throws<UpdateFormatException>(() => round.Decode(Segments.Cut(bytes, [10, 100]), 5)).Message);
        Assert.Equal($"Update envelope declares a {4 * Dim}-byte body but carries {4 * Dim - 4} bytes.",
            Assert.Throws<UpdateFormatException>(() => round.Decode(Segments.Cut(bytes[..^4], [80]))).Message);
        Assert.Equal("Update envelope of 50 bytes is shorter than its 72-byte header.", Assert.Throws<UpdateFormatException>(() => round.Decode(Segments.Cut(bytes[..50], [20]))).Message);
    }

    [Fact]
    public void DecodeSegments_OtherCodecs_DecodeIntoAnArrayAsBefore()
    {
        var round = Pipeline("rot+q8", clip: 10).ForRound(3, 3);
        var bytes = round.EncodePlain(RandomUpdate(2), 1, 0, Guid.Empty, new SeededNoiseSource(1), new SeededNoiseSource(2), null, out _);
        var decoded = round.Decode(Segments.Cut(bytes, [100, 200]));
        Assert.Null(decoded.Segments);
        Assert.Equal(round.Decode(bytes).Delta, decoded.Delta);
    }

    [Fact]
    public void DecodeSum_SecureInputs_MatchesWeightedMeanWithinBound()
    {
        const int n = 5;
        var pipeline = Pipeline("rot+q8", clip: 1.0, secure: SecureAggregationMode.Full, cohort: n);
        var round = pipeline.ForRound(7, 11);
        var sum = new uint[pipeline.SecAggDimension];
        var expected = new double[Dim];
        for (int v = 0; v < n; v++)
        {
            var x = RandomUpdate((ulong)v + 100, scale: 0.02);
            double norm = L2Clipping.Norm(x);
            Assert.True(norm < 1);
            for (int i = 0; i < Dim; i++) expected[i] += x[i] / (double)n;
            var input = round.EncodeSecure(x, 1, new SeededNoiseSource(1), new SeededNoiseSource((ulong)v), out var info);
            Assert.Equal(0, info.Clamped);
            Assert.All(input, value => Assert.True(value <= pipeline.MaxInputValue));
            for (int i = 0; i < sum.Length; i++) sum[i] += input[i];
        }
        Assert.True(sum.All(s => s < 1u << pipeline.ModulusBits));
        var decoded = round.DecodeSum(sum, n);
        Assert.Equal(n, decoded.WeightSum, 12);
        double step = round.StepFor(round.SharedRangeValue);
        double err = Math.Sqrt(expected.Zip(decoded.Mean).Sum(p => (p.First - p.Second) * (p.First - p.Second)));
        // Σ of n per-vehicle errors (each ≤ Δ√padded in L2), divided by n.
        Assert.True(err <= step * Math.Sqrt(pipeline.PaddedLength) + 1e-5, $"error {err}");
    }

    [Fact]
    public void SharedRange_PlainAndSecure_QuantizeOnTheSameGrid()
    {
        var plain = Pipeline("rot+q8+shared", clip: 1.0).ForRound(7, 11);
        var secure = Pipeline("rot+q8", clip: 1.0, secure: SecureAggregationMode.Plus, cohort: 4).ForRound(7, 11);
        Assert.Equal(plain.SharedRangeValue, secure.SharedRangeValue);
        var x = RandomUpdate(3, scale: 0.02);
        var bytes = plain.EncodePlain((float[])x.Clone(), 1, 0, Guid.Empty, new SeededNoiseSource(1), new SeededNoiseSource(9), null, out _);
        var input = secure.EncodeSecure((float[])x.Clone(), 1, new SeededNoiseSource(1), new SeededNoiseSource(9), out _);
        var fromSum = secure.DecodeSum(input, 1).Mean;
        var fromPlain = plain.Decode(bytes).Delta;
        for (int i = 0; i < Dim; i++) Assert.Equal(fromPlain[i], fromSum[i], 1e-6);
    }

    [Theory]
    [InlineData("topk0.01+ef+q8", SecureAggregationMode.Plus, 1.0, null, "top-k picks different coordinates")]
    [InlineData("q8+deflate", SecureAggregationMode.Full, 1.0, null, "lossless stage")]
    [InlineData("rot+q8", SecureAggregationMode.Full, null, null, "needs a clip norm")]
    [InlineData("q8", SecureAggregationMode.Full, 1.0, 10, "Modulus 2^10 is too small for the cohort's sum: 10 vehicles × level 255 (q8) = 2550 needs m ≥ 12 bits")]
    [InlineData("q16", SecureAggregationMode.Plus, 1.0, null, null)]
    public void Create_InvalidSecureCombinations_ClearConfigurationErrors(string codec, SecureAggregationMode mode, double? clip, int? modulus, string? message)
    {
        var options = new UpdatePipelineOptions { Codec = CodecSpec.Parse(codec), Dimension = Dim, SecureAggregation = mode, ClipNorm = clip, CohortSize = 10, ModulusBits = modulus };
        if (message is null)
        {
            var ok = new UpdatePipeline(options);
            Assert.Equal(20, ok.ModulusBits); // 10 × 65535 < 2^20
            Assert.Contains("needs 33 bits", Assert.Throws<CodecConfigurationException>(() => new UpdatePipeline(options with { CohortSize = 70_000 })).Message, StringComparison.Ordinal);
            return;
        }
        Assert.Contains(message, Assert.Throws<CodecConfigurationException>(() => new UpdatePipeline(options)).Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("q0", "b within 1..16")]
    [InlineData("q17", "b within 1..16")]
    [InlineData("ef+q8", "'ef' (error feedback) needs 'topk{p}'")]
    [InlineData("topk0.01+rot+q8", "undoes the sparsity")]
    [InlineData("topk0.1+sub0.5", "both sparsifications")]
    [InlineData("sub1.5+q8", "fraction p within (0, 1]")]
    [InlineData("q8+q4", "repeats a stage")]
    [InlineData("zip", "unknown stage 'zip'")]
    [InlineData("deflate+brotli", "repeats a stage")]
    public void Parse_InvalidCodecs_ClearConfigurationErrors(string codec, string message)
    {
        Assert.Contains(message, Assert.Throws<CodecConfigurationException>(() => CodecSpec.Parse(codec)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Create_TopKWithDistributedNoise_Rejected()
    {
        var options = new UpdatePipelineOptions { Codec = CodecSpec.Parse("topk0.01+ef+q8"), Dimension = Dim, ClipNorm = 1, Noise = NoiseMode.Distributed };
        Assert.Contains("distributed DP noise", Assert.Throws<CodecConfigurationException>(() => new UpdatePipeline(options)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Parse_AnyOrder_CanonicalString()
    {
        Assert.Equal("rot+sub0.25+q8", CodecSpec.Parse("q8+sub0.25+rot").ToString());
        Assert.Equal("topk0.01+ef+q8+deflate", CodecSpec.Parse("deflate+q8+ef+topk0.01").ToString());
        Assert.Equal(CodecSpec.Parse("q8+rot").Fingerprint(), CodecSpec.Parse("rot+q8").Fingerprint());
    }

    [Fact]
    public void EnvelopeSize_Q8_IsHeaderPlusOneBytePerCoordinate()
    {
        var round = Pipeline("q8").ForRound(1, 1);
        var bytes = round.EncodePlain(RandomUpdate(1), 1, 0, Guid.Empty, new SeededNoiseSource(1), new SeededNoiseSource(1), null, out _);
        Assert.Equal(UpdateEnvelope.HeaderBytes + Dim, bytes.Length);
        var rot = Pipeline("rot+sub0.5+q4").ForRound(1, 1);
        Assert.Equal(UpdateEnvelope.HeaderBytes + 512 / 2 * 4 / 8, rot.EncodePlain(RandomUpdate(1), 1, 0, Guid.Empty, new SeededNoiseSource(1), new SeededNoiseSource(1), null, out _).Length);
    }
}
