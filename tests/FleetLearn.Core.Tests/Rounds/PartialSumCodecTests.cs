using CsCheck;
using FleetLearn.Core.Rounds;

namespace FleetLearn.Core.Tests.Rounds;

/// <summary>The shard → coordinator wire format of partial sums: round trips, and every malformed input a clean refusal.</summary>
public sealed class PartialSumCodecTests
{
    private const int Dimension = 6;

    private static PartialSumLimits Limits(int bits = 12, long round = 7) => new(round, Dimension, bits, Dimension, 64);

    private static readonly Gen<string[]> GenIds = Gen.Int[0, 20].SelectMany(n => Gen.Int[0, 1000].Array[n]).Select(a => a.Distinct().Select(i => $"vehicle-{i}").ToArray());

    private static Gen<PartialSum> GenPartial(int bits) =>
        Gen.Select(GenIds, Gen.Int[0, 3], Gen.Int[0, 2]).SelectMany(t =>
        {
            var (ids, shard, kind) = t;
            int split = ids.Length / 2;
            string[] contributors = kind == 2 ? [] : ids[..split], silent = kind == 2 ? ids : ids[split..];
            var counts = Gen.Select(Gen.Int[0, contributors.Length], Gen.Int[0, contributors.Length], Gen.Double[-10, 10]);
            return kind switch
            {
                0 when contributors.Length > 0 => Gen.Select(counts, Gen.UInt[0, bits == 32 ? uint.MaxValue : (1u << bits) - 1].Array[Dimension]).Select(p => (PartialSum)new SecurePartialSum
                {
                    Round = 7, Shard = shard, Contributors = contributors, Silent = silent, UnclippedCount = p.Item1.Item1, LossCount = p.Item1.Item2, LossSum = p.Item1.Item3, Sum = p.Item2,
                }),
                0 or 1 => Gen.Select(counts, Gen.Float[-1e6f, 1e6f].Array[Dimension], Gen.Double[0, 1e4]).Select(p => (PartialSum)new PlainPartialSum
                {
                    Round = 7, Shard = shard, Contributors = contributors, Silent = silent, UnclippedCount = p.Item1.Item1, LossCount = p.Item1.Item2, LossSum = p.Item1.Item3,
                    Mean = contributors.Length == 0 ? null : p.Item2, Weight = p.Item3,
                }),
                _ => Gen.String[Gen.Char["abc xyz-:0→é"], 0, 200].Select(reason => (PartialSum)new FailedPartialSum { Round = 7, Shard = shard, Contributors = [], Silent = silent, Reason = reason }),
            };
        });

    private static void AssertSame(PartialSum expected, PartialSum actual)
    {
        Assert.Equal(expected.GetType(), actual.GetType());
        Assert.Equal((expected.Round, expected.Shard, expected.UnclippedCount, expected.LossCount, expected.LossSum), (actual.Round, actual.Shard, actual.UnclippedCount, actual.LossCount, actual.LossSum));
        Assert.Equal(expected.Contributors, actual.Contributors);
        Assert.Equal(expected.Silent, actual.Silent);
        switch (expected)
        {
            case SecurePartialSum s: Assert.Equal(s.Sum.ToArray(), ((SecurePartialSum)actual).Sum.ToArray()); break;
            case PlainPartialSum p:
                Assert.Equal(p.Weight, ((PlainPartialSum)actual).Weight);
                Assert.Equal(p.Mean, ((PlainPartialSum)actual).Mean);
                break;
            case FailedPartialSum f: Assert.Equal(f.Reason, ((FailedPartialSum)actual).Reason); break;
        }
    }

    [Fact]
    public void RoundTrip_EveryKind_Identical()
    {
        Gen.Int[1, 32].SelectMany(bits => GenPartial(bits).Select(p => (bits, p))).Sample(t =>
            AssertSame(t.p, PartialSumCodec.Decode(PartialSumCodec.Encode(t.p, t.bits), Limits(t.bits))));
    }

    [Fact]
    public void Truncated_AlwaysAWireFormatException()
    {
        GenPartial(12).SelectMany(p => { var bytes = PartialSumCodec.Encode(p, 12); return Gen.Int[0, bytes.Length - 1].Select(cut => bytes[..cut]); })
            .Sample(cut => Assert.Throws<WireFormatException>(() => PartialSumCodec.Decode(cut, Limits())));
    }

    [Fact]
    public void Corrupted_DecodesOrRefusesCleanly_NeverAnotherException()
    {
        GenPartial(12).SelectMany(p => { var bytes = PartialSumCodec.Encode(p, 12); return Gen.Select(Gen.Int[0, bytes.Length - 1], Gen.Byte).Select(f => (bytes, f.Item1, f.Item2)); })
            .Sample(t =>
            {
                var copy = t.bytes.ToArray();
                copy[t.Item2] ^= (byte)(t.Item3 | 1);
                try
                {
                    PartialSumCodec.Decode(copy, Limits());
                }
                catch (WireFormatException)
                {
                }
            });
    }

    private static byte[] Plain(float[]? mean = null, long round = 7) => PartialSumCodec.Encode(new PlainPartialSum
    {
        Round = round, Shard = 1, Contributors = ["a", "b"], Silent = ["c"], Mean = mean ?? new float[Dimension], Weight = 2,
    }, 12);

    [Fact]
    public void Refusals_SayWhyWithTheirLabel()
    {
        var wrongRound = Assert.Throws<WireFormatException>(() => PartialSumCodec.Decode(Plain(round: 8), Limits()));
        Assert.Equal(("Partial sum of round 8; the coordinator combines round 7.", RejectReasons.WrongRound), (wrongRound.Message, wrongRound.Reason));
        var nan = Assert.Throws<WireFormatException>(() => PartialSumCodec.Decode(Plain([0, 0, float.NaN, 0, 0, 0]), Limits()));
        Assert.Equal(("Partial mean coordinate 2 is not finite.", RejectReasons.NonFinite), (nan.Message, nan.Reason));
        var trailing = Assert.Throws<WireFormatException>(() => PartialSumCodec.Decode([.. Plain(), 0], Limits()));
        Assert.Equal("Partial sum has trailing bytes.", trailing.Message);
        var oversized = Assert.Throws<WireFormatException>(() => PartialSumCodec.Decode(Plain(), Limits() with { ModelDimension = 4 }));
        Assert.Equal(("Partial mean has 6 parameters; the model has 4.", RejectReasons.Oversized), (oversized.Message, oversized.Reason));
        var tooMany = Assert.Throws<WireFormatException>(() => PartialSumCodec.Decode(Plain(), Limits() with { MaxVehicles = 1 }));
        Assert.Equal(("Partial sum names 2 contributors; at most 1 fit the part.", RejectReasons.Oversized), (tooMany.Message, tooMany.Reason));
        var twice = PartialSumCodec.Encode(new PlainPartialSum { Round = 7, Shard = 0, Contributors = ["a", "a"], Silent = [], Mean = new float[Dimension], Weight = 2 }, 12);
        Assert.Equal("Partial sum names a contributor twice.", Assert.Throws<WireFormatException>(() => PartialSumCodec.Decode(twice, Limits())).Message);
        var secure = PartialSumCodec.Encode(new SecurePartialSum { Round = 7, Shard = 0, Contributors = ["a"], Silent = [], Sum = new uint[Dimension] }, 12);
        Assert.Equal("Secure sum packed with m = 12; the round's modulus has 16 bits.", Assert.Throws<WireFormatException>(() => PartialSumCodec.Decode(secure, Limits(bits: 16))).Message);
        var version = Plain();
        version[4] = 2;
        Assert.Equal(RejectReasons.Version, Assert.Throws<WireFormatException>(() => PartialSumCodec.Decode(version, Limits())).Reason);
    }
}
