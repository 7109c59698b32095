using System.Buffers.Binary;
using CsCheck;
using FleetLearn.Core.Compression;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Random;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Rounds;
using FleetLearn.Core.SecureAggregation;
using FleetLearn.Testing;

namespace FleetLearn.Core.Tests.Rounds;

/// <summary>Plain updates received as chunk segments cut anywhere: the same admissions and the same sum, bit for bit, as whole arrays.</summary>
public sealed class RoundCoordinatorSegmentsTests
{
    private const int Dimension = 300; // several 64-value blocks of the sum of squares, and a tail

    private static (RoundCoordinator Coordinator, UpdatePipelineRound Codec) Round(double maxNorm)
    {
        var clock = new ManualTimeProvider();
        var codec = new UpdatePipeline(new UpdatePipelineOptions { Codec = CodecSpec.None, Dimension = Dimension }).ForRound(1, 1);
        var coordinator = new RoundCoordinator(new RoundSetup
        {
            Round = 1,
            Cohort = [.. Enumerable.Range(0, 6).Select(i => $"car-{i}")],
            Global = new float[Dimension],
            Strategy = StrategyCatalog.Parse("fedavg", null),
            Codec = codec,
            Rules = new RoundRules { CohortSize = 3, MinParticipants = 1, MaxWeight = 100, MaxUpdateNorm = maxNorm },
            Deadline = clock.GetUtcNow() + TimeSpan.FromMinutes(10),
        }, clock);
        return (coordinator, codec);
    }

    private static byte[] Encode(UpdatePipelineRound codec, int index, float[] delta, double weight) =>
        codec.EncodePlain(delta.ToArray(), weight, (ulong)index, Guid.NewGuid(), new SeededNoiseSource(1), new SeededNoiseSource(2), null, out _);

    private static float[] Delta(ulong seed, double scale)
    {
        var rng = DeterministicRandom.Derive(7, 1, seed);
        return [.. Enumerable.Range(0, Dimension).Select(_ => (float)(rng.NextGaussian() * scale))];
    }

    [Fact]
    public void Plain_SegmentsCutAnywhere_RejectedUpdatesLeaveTheSumBitIdentical()
    {
        Gen.Select(Gen.Int[0, 4 * Dimension + 72].Array[1, 8], Gen.Int[0, Dimension - 1], Gen.Int[1, 3], Gen.Int[0, 100]).Sample((cuts, badAt, inside, seed) =>
        {
            var good = new[] { Delta((ulong)seed, 0.1), Delta((ulong)seed + 1, 0.2), Delta((ulong)seed + 2, 0.3) };
            double[] weights = [1, 2.5, 7];
            float[] expected;
            {
                // The reference: the three good updates alone, each as one array.
                var (coordinator, codec) = Round(1000);
                using var _ = coordinator;
                for (int k = 0; k < 3; k++)
                    Assert.Equal(AckStatus.Accepted, coordinator.Receive($"car-{k}", Guid.NewGuid(), new PlainUpdateMessage(Encode(codec, k, good[k], weights[k]))).Admission.Status);
                expected = Assert.IsType<RoundApplied>(coordinator.Outcome).Parameters;
            }
            {
                var (coordinator, codec) = Round(1000);
                using var _ = coordinator;
                PlainUpdateMessage Cut(byte[] envelope) => new(Segments.Cut(envelope, cuts));
                Assert.Equal(AckStatus.Accepted, coordinator.Receive("car-0", Guid.NewGuid(), Cut(Encode(codec, 0, good[0], weights[0]))).Admission.Status);
                // A NaN whose bytes straddle two segments, between accepted updates.
                var nan = Encode(codec, 3, good[1], 1);
                BinaryPrimitives.WriteSingleLittleEndian(nan.AsSpan(UpdateEnvelope.HeaderBytes + 4 * badAt), float.NaN);
                var rejected = coordinator.Receive("car-3", Guid.NewGuid(), new PlainUpdateMessage(Segments.Cut(nan, [.. cuts, UpdateEnvelope.HeaderBytes + 4 * badAt + inside])));
                Assert.Equal((AckStatus.Rejected, RejectReasons.NonFinite), (rejected.Admission.Status, rejected.Admission.Reason));
                Assert.Equal(AckStatus.Accepted, coordinator.Receive("car-1", Guid.NewGuid(), Cut(Encode(codec, 1, good[1], weights[1]))).Admission.Status);
                // An update over the norm bound (‖Δ‖ ≈ 1,700).
                var boosted = coordinator.Receive("car-4", Guid.NewGuid(), Cut(Encode(codec, 4, Delta((ulong)seed + 3, 100), 1)));
                Assert.Equal((AckStatus.Rejected, RejectReasons.NormExceeded), (boosted.Admission.Status, boosted.Admission.Reason));
                Assert.Equal(AckStatus.Accepted, coordinator.Receive("car-2", Guid.NewGuid(), Cut(Encode(codec, 2, good[2], weights[2]))).Admission.Status);
                Assert.Equal(expected, Assert.IsType<RoundApplied>(coordinator.Outcome).Parameters); // exact float equality
            }
        }, iter: 40);
    }

    [Fact]
    public void Plain_NormAtTheBoundsExactEdge_SameVerdictFromAnyCutAsFromTheArray()
    {
        var delta = Delta(5, 0.05);
        double norm = Core.Numerics.VectorMath.Norm(delta);
        Gen.Int[0, 4 * Dimension + 72].Array[1, 8].Sample(cuts =>
        {
            foreach (var (bound, status) in new[] { (norm, AckStatus.Accepted), (Math.BitDecrement(norm), AckStatus.Rejected) })
            {
                var (coordinator, codec) = Round(bound);
                using var _ = coordinator;
                var envelope = Encode(codec, 0, delta, 1);
                Assert.Equal(status, PlaintextUpdateCheck.Check(codec.Decode(envelope).Delta, bound).IsAccepted ? AckStatus.Accepted : AckStatus.Rejected); // the replay's check
                Assert.Equal(status, coordinator.Receive("car-0", Guid.NewGuid(), new PlainUpdateMessage(Segments.Cut(envelope, cuts))).Admission.Status);
            }
        }, iter: 40);
    }
}
