using System.Buffers.Binary;
using System.Collections.Immutable;
using System.Security.Cryptography;
using CsCheck;
using FleetLearn.Core.Compression;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Rounds;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Transport.Mqtt.Tests;

/// <summary>
/// Fuzzing of every decoder the aggregator exposes to vehicles — envelope, chunk (codec and assembler), check-in, plaintext
/// update (header and each codec's envelope), secure-aggregation message, evaluation report — with CsCheck: random bytes
/// and mutations (bit flips, truncation, extension, hostile integers written over length and count fields) of valid
/// encodings. Each decoder may only throw its documented rejection; the assembler's held bytes and the GC heap stay bounded.
/// <see cref="Runs"/> in total: <c>dotnet test tests/FleetLearn.Transport.Mqtt.Tests --filter DecoderFuzzTests</c>.
/// CsCheck prints the seed of a failure (rerun with it via <c>Sample(…, seed: "…")</c>).
/// </summary>
public sealed class DecoderFuzzTests
{
    /// <summary>Generated inputs over the whole class (the acceptance floor is 100,000).</summary>
    public const long Runs = EnvelopeRuns + ChunkRuns + AssemblerRuns + CheckinRuns + PlainRuns + SecAggRuns + EvalRuns;

    private const long EnvelopeRuns = 40_000, ChunkRuns = 20_000, AssemblerRuns = 50_000, CheckinRuns = 20_000, PlainRuns = 30_000, SecAggRuns = 30_000, EvalRuns = 20_000;

    /// <summary>Most the GC heap may grow over one decoder's run (everything decoded is garbage afterwards).</summary>
    private const long MaxHeapGrowth = 32 << 20;

    private static readonly int[] HostileInts = [0, 1, -1, 2, 255, 256, 65535, 65536, 1 << 20, (1 << 20) + 1, int.MaxValue, int.MinValue, 0x7FFFFFF0];

    [Fact]
    public void Runs_AtLeastTheAcceptanceFloor() => Assert.True(Runs >= 100_000, $"{Runs} runs");

    [Fact]
    public void Envelope_Decode_OnlyWireFormatErrors()
    {
        var seeds = Enum.GetValues<EnvelopeKind>().Select(k => new Envelope(k, "car-7", 3, Guid.NewGuid(), RandomNumberGenerator.GetBytes(40)).Encode()).ToArray();
        Fuzz(seeds, EnvelopeRuns, bytes =>
        {
            try
            {
                var e = Envelope.Decode(bytes, maxPayload: 4096, expectedRound: 3);
                Assert.True(e.Payload.Length <= 4096);
            }
            catch (WireFormatException)
            {
            }
        });
    }

    [Fact]
    public void Chunk_Decode_OnlyWireFormatErrors()
    {
        var seeds = ChunkCodec.Split(RandomNumberGenerator.GetBytes(9000), 4096).ToArray();
        Fuzz(seeds, ChunkRuns, bytes =>
        {
            try
            {
                var c = ChunkCodec.Decode(bytes, 1 << 20);
                Assert.InRange(c.Count, 1, ChunkCodec.MaxChunks);
            }
            catch (WireFormatException)
            {
            }
        });
    }

    [Fact]
    public void ChunkAssembler_Add_OnlyWireFormatErrorsAndHeldBytesBounded()
    {
        // Real transfers from several owners, interleaved with mutated and random chunks from the same owners: the
        // assembler is one long-lived instance, as in the aggregator, so its caps must hold across everything.
        var transfers = Enumerable.Range(0, 6).Select(i => ChunkCodec.Split(RandomNumberGenerator.GetBytes(3000 + 5000 * i), 4096)).ToArray();
        var seeds = transfers.SelectMany(t => t).ToArray();
        var assembler = new ChunkAssembler(1 << 20, maxPendingTransfers: 16, maxTransfersPerOwner: 2, maxBytesPerOwner: 64 << 10, maxHeldBytes: 256 << 10);
        var input = Gen.Select(Gen.Int[0, 7], Mutations(seeds, rawWeight: 1, validWeight: 3));
        Run(input, AssemblerRuns, threads: 1, sample: (owner, bytes) =>
        {
            try
            {
                assembler.Add($"car-{owner}", "up", bytes);
            }
            catch (WireFormatException)
            {
            }
            Assert.True(assembler.HeldBytes <= assembler.MaxHeldBytes, $"held {assembler.HeldBytes}");
            Assert.True(assembler.PendingTransfers <= assembler.MaxPendingTransfers);
            Assert.True(assembler.HeldBytesOf($"car-{owner}") <= assembler.MaxBytesPerOwner);
        });
        // Whether a random interleaving completes a transfer is luck (it failed a run now and then); that the assembler still
        // reassembles a whole transfer after all of it is not: a fresh owner's transfer, in order, must come out whole.
        byte[]? whole = null;
        foreach (var chunk in transfers[2]) whole = assembler.Add("car-9", "up", chunk) ?? whole;
        Assert.NotNull(whole);
        Assert.Equal(13000, whole.Length);
    }

    [Fact]
    public void Checkin_Decode_OnlyWireFormatErrors()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var seeds = new[] { new Checkin(600, key.ExportSubjectPublicKeyInfo()).Encode(), new Checkin(0, []).Encode(), new Checkin(600, key.ExportSubjectPublicKeyInfo(), EligibleFor: TimeSpan.FromHours(3)).Encode() };
        Fuzz(seeds, CheckinRuns, bytes =>
        {
            try
            {
                var c = Checkin.Decode(bytes);
                Assert.True(c.DeviceKey.Length <= Checkin.MaxKeyBytes);
                Assert.True(c.EligibleFor is null || c.EligibleFor > TimeSpan.Zero && c.EligibleFor <= Checkin.MaxEligibleFor);
                _ = DeviceKeyValidation.Check(c.DeviceKey); // says why, never throws
            }
            catch (WireFormatException)
            {
            }
        });
    }

    [Fact]
    public void PlainUpdate_AndEachCodecsEnvelope_OnlyDocumentedErrors()
    {
        const int dimension = 300;
        var rounds = new[] { "none", "q8", "rot+q8", "topk0.1+ef+q8", "sub0.5+rot+q4", "q16" }
            .Select(codec => new UpdatePipeline(new UpdatePipelineOptions { Codec = CodecSpec.Parse(codec), Dimension = dimension, ClipNorm = 1, MaxWeight = 100 }).ForRound(5, 11, clipNorm: 1))
            .ToArray();
        var seeds = new List<byte[]>();
        var rng = new Random(5);
        foreach (var round in rounds)
        {
            var delta = Enumerable.Range(0, dimension).Select(_ => (float)(rng.NextDouble() - 0.5) * 0.1f).ToArray();
            var body = round.EncodePlain(delta, 60, 2, Guid.NewGuid(), new SeededNoiseSource(1), new SeededNoiseSource(2), round.Pipeline.Codec.ErrorFeedback ? new float[dimension] : null, out _);
            seeds.Add(new PlainUpdate(0.5, 60, body).Encode());
        }
        var input = Gen.Select(Gen.Int[0, rounds.Length - 1], Mutations([.. seeds], rawWeight: 1, validWeight: 4));
        Run(input, PlainRuns, threads: -1, sample: (which, bytes) =>
        {
            try
            {
                var header = PlainUpdate.Decode(bytes);
                var decoded = rounds[which].Decode(header.Body.Span, expectedVehicle: 2);
                Assert.Equal(dimension, decoded.Delta.Length);
                _ = Core.Federated.PlaintextUpdateCheck.Check(decoded.Delta, 1000); // the aggregator's next step
            }
            catch (WireFormatException)
            {
            }
            catch (UpdateFormatException)
            {
            }
        });
    }

    [Fact]
    public void SecAgg_Decode_OnlyFormatErrors()
    {
        ImmutableArray<byte> Bytes(int n) => [.. RandomNumberGenerator.GetBytes(n)];
        ImmutableArray<byte> Point() => [0x04, .. RandomNumberGenerator.GetBytes(64)];
        var messages = new SecAggMessage[]
        {
            new AdvertiseKeysMessage(4, 1, Point(), Point(), Bytes(64)),
            new ShareKeysMessage(4, 1, Bytes(32), [new EncryptedShare(2, Bytes(90)), new EncryptedShare(3, Bytes(90))]),
            new MaskedInputMessage(4, 1, 20, [.. Enumerable.Range(0, 200).Select(i => (uint)(i * 4099 % (1 << 20)))]),
            new UnmaskResponseMessage(4, 1, [new RevealedShare(2, ShareKind.SelfMaskSeed, Bytes(32)), new RevealedShare(3, ShareKind.MaskingKey, Bytes(32))]),
            new UnmaskRequestMessage(4, 1, [1, 2, 3], [4]),
        };
        Fuzz(messages.Select(SecAggCodec.Encode).ToArray(), SecAggRuns, bytes =>
        {
            try
            {
                var m = SecAggCodec.Decode(bytes, expectedRound: 4);
                Assert.Equal(4UL, m.Round);
            }
            catch (SecAggFormatException)
            {
            }
        });
    }

    [Fact]
    public void EvaluationReport_Decode_OnlyWireFormatErrors()
    {
        var seeds = new[]
        {
            new EvaluationReport("car-3", 7, 600, 0.8125, false).Encode(),
            new EvaluationReport("car-3", 7, 600, -0.03, true).Encode(),
            "{\"vehicle\":\"car-3\",\"model_version\":1,\"count\":1,\"accuracy\":1e308,\"noised\":true}"u8.ToArray(),
        };
        Fuzz(seeds, EvalRuns, bytes =>
        {
            try
            {
                var r = EvaluationReport.Decode(bytes, expectedVehicle: "car-3");
                Assert.True(double.IsFinite(r.Accuracy));
            }
            catch (WireFormatException)
            {
            }
        });
    }

    [Fact]
    public void EvaluationReport_RoundTripsTheAgentsFormat()
    {
        var report = new EvaluationReport("car-0", 3, 600, 0.8116666666666666, false);
        Assert.Equal(report, EvaluationReport.Decode(report.Encode(), "car-0"));
        Assert.Equal(report, EvaluationReport.Decode("{\"vehicle\":\"car-0\",\"model_version\":3,\"count\":600,\"accuracy\":0.8116666666666666,\"noised\":false}"u8));
        Assert.Throws<WireFormatException>(() => EvaluationReport.Decode(report.Encode(), "car-1"));
        Assert.Throws<WireFormatException>(() => EvaluationReport.Decode("{\"vehicle\":\"car-0\",\"model_version\":3,\"count\":600,\"accuracy\":1.5,\"noised\":false}"u8));
    }

    /// <summary>Random bytes (1 part in <paramref name="rawWeight"/> + <paramref name="validWeight"/>) or a mutated seed.</summary>
    private static Gen<byte[]> Mutations(byte[][] seeds, int rawWeight = 1, int validWeight = 3)
    {
        var seed = Gen.Int[0, seeds.Length - 1].Select(i => seeds[i]);
        var mutated = Gen.Select(seed, Gen.Int[0, 7], Gen.Int[0, int.MaxValue], Gen.Int[0, HostileInts.Length - 1], Gen.Byte.Array[1, 64])
            .Select((s, how, at, hostile, extra) => Mutate(s, how, at, HostileInts[hostile], extra));
        return Gen.Frequency((rawWeight, Gen.Byte.Array[0, 600]), (validWeight, mutated));
    }

    private static byte[] Mutate(byte[] seed, int how, int at, int hostile, byte[] extra)
    {
        var b = (byte[])seed.Clone();
        if (b.Length == 0) return extra;
        int p = at % b.Length;
        switch (how)
        {
            case 0: // the seed itself (valid input must keep decoding)
                return b;
            case 1: // one bit flipped
                b[p] ^= (byte)(1 << (at % 8));
                return b;
            case 2: // truncated
                return b[..p];
            case 3: // extended
                return [.. b, .. extra];
            case 4: // a hostile little-endian int written over a field
                if (p + 4 <= b.Length) BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(p), hostile);
                return b;
            case 5: // a hostile big-endian int (length prefixes of other layouts)
                if (p + 4 <= b.Length) BinaryPrimitives.WriteInt32BigEndian(b.AsSpan(p), hostile);
                return b;
            case 6: // a hostile 16-bit length
                if (p + 2 <= b.Length) BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(p), (ushort)hostile);
                return b;
            default: // random bytes over a stretch
                extra.AsSpan(0, Math.Min(extra.Length, b.Length - p)).CopyTo(b.AsSpan(p));
                return b;
        }
    }

    private static void Fuzz(byte[][] seeds, long runs, Action<byte[]> decode) =>
        Run(Gen.Select(Gen.Const(0), Mutations(seeds)), runs, threads: -1, sample: (_, bytes) => decode(bytes));

    /// <summary>Runs exactly <paramref name="runs"/> samples and checks that the GC heap did not grow by more than <see cref="MaxHeapGrowth"/>.</summary>
    private static void Run<T>(Gen<(T, byte[])> input, long runs, int threads, Action<T, byte[]> sample)
    {
        long before = GC.GetTotalMemory(forceFullCollection: true);
        long count = 0;
        input.Sample(t =>
        {
            Interlocked.Increment(ref count);
            sample(t.Item1, t.Item2);
        }, iter: runs, threads: threads);
        long after = GC.GetTotalMemory(forceFullCollection: true);
        Assert.Equal(runs, Interlocked.Read(ref count));
        Assert.True(after - before < MaxHeapGrowth, $"GC heap grew by {after - before} bytes over {runs} inputs");
    }
}
