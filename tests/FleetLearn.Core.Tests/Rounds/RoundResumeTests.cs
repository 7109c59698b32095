using System.Buffers;
using FleetLearn.Core.Compression;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Random;
using FleetLearn.Core.Rounds;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Core.Tests.Rounds;

/// <summary>
/// A plaintext round survives its aggregator (issue 14 item 1): the journal of folded updates (the runner persists each
/// <see cref="JournalEffect"/> before its ack) replays into a new coordinator on a fake clock, with the same sum, the same
/// dedupe and the same close policy as a round that never stopped.
/// </summary>
public sealed class RoundResumeTests
{
    private static readonly float[] Global = [10, 10, 10, 10];
    private static readonly UpdatePipelineRound Codec = new UpdatePipeline(new UpdatePipelineOptions { Codec = CodecSpec.None, Dimension = 4, ClipNorm = 100, Noise = NoiseMode.Central }).ForRound(1, 1, 100);

    private static RoundSetup Setup(ManualTimeProvider clock, int cohortSize = 3) => new()
    {
        Round = 2,
        Cohort = ["car-0", "car-1", "car-2"],
        Global = Global,
        Strategy = StrategyCatalog.Parse("fedavg", null),
        Codec = Codec,
        Rules = new RoundRules { CohortSize = cohortSize, MinParticipants = 1, Privacy = NoiseMode.Central, NoiseMultiplier = 1e-9, UniformWeights = true, MaxWeight = 1 },
        Deadline = DateTimeOffset.UnixEpoch + TimeSpan.FromMinutes(10),
        CentralNoise = new SeededNoiseSource(5),
    };

    private static PlainUpdateMessage Update(int index, float value) =>
        new(Codec.EncodePlain([value, value * 2, value * 3, value * 4], 1, (ulong)index, Guid.NewGuid(), new SeededNoiseSource(1), new SeededNoiseSource(2), null, out _), 0.25 * (index + 1));

    private static readonly PlainUpdateMessage[] Updates = [Update(0, 0.1f), Update(1, -0.7f), Update(2, 0.3f)];
    private static readonly Guid[] Ids = [Guid.NewGuid(), Guid.NewGuid(), Guid.NewGuid()];

    /// <summary>The round as it runs without a restart: the model it applies.</summary>
    private static RoundApplied Uninterrupted()
    {
        using var round = new RoundCoordinator(Setup(new ManualTimeProvider()), new ManualTimeProvider());
        for (int i = 0; i < 3; i++) round.Receive($"car-{i}", Ids[i], Updates[i]);
        return Assert.IsType<RoundApplied>(round.Outcome);
    }

    /// <summary>Folds the first <paramref name="n"/> updates and returns what the runner journalled (the process then dies).</summary>
    private static List<JournaledUpdate> FoldThenCrash(int n)
    {
        var clock = new ManualTimeProvider();
        using var round = new RoundCoordinator(Setup(clock), clock);
        var journal = new List<JournaledUpdate>();
        for (int i = 0; i < n; i++) journal.AddRange(round.Receive($"car-{i}", Ids[i], Updates[i]).Effects.OfType<JournalEffect>().Select(e => e.Update));
        Assert.Equal(n, journal.Count);
        return journal;
    }

    [Fact]
    public void Resume_TwoOfThreeFolded_ResendsAreDuplicatesAndTheThirdCompletesTheSameModel()
    {
        var clock = new ManualTimeProvider();
        using var resumed = RoundCoordinator.Resume(Setup(clock), clock, FoldThenCrash(2), out var effects);
        Assert.Empty(effects);
        Assert.Equal(new CollectingPlain(2, 3), resumed.Phase);
        Assert.Contains(Ids[0], resumed.SeenUpdateIds);

        // car-0's ack was lost in the crash: its resend is a duplicate, never late, and not folded twice.
        var resend = resumed.Receive("car-0", Ids[0], Updates[0]);
        Assert.Equal(AckStatus.Duplicate, resend.Admission.Status);
        Assert.Empty(resend.Effects);
        // car-1 trained again under a new id: still one update per vehicle per round.
        Assert.Equal(AckStatus.Duplicate, resumed.Receive("car-1", Guid.NewGuid(), Update(1, 5f)).Admission.Status);

        var last = resumed.Receive("car-2", Ids[2], Updates[2]);
        Assert.Equal([typeof(JournalEffect), typeof(ChargeEffect), typeof(CloseEffect)], last.Effects.Select(e => e.GetType()));
        Assert.Equal(["car-0", "car-1", "car-2"], ((ChargeEffect)last.Effects[1]).Vehicles);
        var applied = Assert.IsType<RoundApplied>(resumed.Outcome);
        var expected = Uninterrupted();
        Assert.Equal(expected.Parameters, applied.Parameters); // bit for bit: the replay folds in the original order
        Assert.Equal(expected.TrainLoss, applied.TrainLoss);
        Assert.Equal(expected.Contributors, applied.Contributors);
    }

    [Fact]
    public void Resume_JournalAlreadyCompletesTheRound_ChargeThenCloseLeftForTheRunner()
    {
        var clock = new ManualTimeProvider();
        using var resumed = RoundCoordinator.Resume(Setup(clock), clock, FoldThenCrash(3), out var effects);
        Assert.Equal([typeof(ChargeEffect), typeof(CloseEffect)], effects.Select(e => e.GetType()));
        Assert.Equal(Uninterrupted().Parameters, Assert.IsType<RoundApplied>(((CloseEffect)effects[1]).Outcome).Parameters);
        // The closed round hands its ids to ClosedRounds: a resend after the close is a duplicate there.
        var closed = new ClosedRounds();
        closed.Add(resumed);
        Assert.Equal(AckStatus.Duplicate, closed.Admit("car-2", 2, Ids[2], null).Status);
    }

    [Fact]
    public void Resume_AfterTheDeadlinePassedDuringTheOutage_TickClosesWithWhatWasJournalled()
    {
        var clock = new ManualTimeProvider();
        clock.Advance(TimeSpan.FromMinutes(11));
        using var resumed = RoundCoordinator.Resume(Setup(clock), clock, FoldThenCrash(2), out var effects);
        Assert.Empty(effects);
        var step = resumed.Tick();
        var applied = Assert.IsType<RoundApplied>(Assert.IsType<CloseEffect>(step.Effects[^1]).Outcome);
        Assert.Equal(["car-0", "car-1"], applied.Contributors);
        Assert.Equal(["car-2"], applied.Silent);
        Assert.Equal(["car-0", "car-1"], Assert.Single(step.Effects.OfType<ChargeEffect>()).Vehicles);
    }

    [Fact]
    public void Resume_EmptyJournal_AnOpenRoundWaitingForEveryone()
    {
        var clock = new ManualTimeProvider();
        using var resumed = RoundCoordinator.Resume(Setup(clock), clock, [], out var effects);
        Assert.Empty(effects);
        Assert.Equal(new CollectingPlain(0, 3), resumed.Phase);
    }

    [Fact]
    public void Resume_JournalOfAnotherCohort_RefusedWithTheVehicleNamed()
    {
        var clock = new ManualTimeProvider();
        var foreign = new JournaledUpdate("car-9", Guid.NewGuid(), Updates[0].Body.ToArray(), 0);
        var e = Assert.Throws<InvalidDataException>(() => RoundCoordinator.Resume(Setup(clock), clock, [foreign], out _));
        Assert.Contains("car-9", e.Message, StringComparison.Ordinal);
        Assert.Contains("not in the cohort of round 2", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Resume_SecureRound_RefusedWithTheReason()
    {
        var clock = new ManualTimeProvider();
        var pipeline = new UpdatePipeline(new UpdatePipelineOptions { Codec = CodecSpec.Parse("q8"), Dimension = 4, ClipNorm = 1, SecureAggregation = SecureAggregationMode.Full, CohortSize = 3 });
        using var registry = new DeviceKeyRegistry();
        var secure = Setup(clock) with { Secure = new SecureRoundSetup(pipeline.CreateSecAggParameters(2, 3, new byte[32], TimeSpan.FromSeconds(30)), registry) };
        var e = Assert.Throws<ArgumentException>(() => RoundCoordinator.Resume(secure, clock, [], out _));
        Assert.Contains("aborted before any unmasking and no ε is charged", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Abort_MidRound_ClosedAbortedWithTheReasonNothingCharged()
    {
        var clock = new ManualTimeProvider();
        using var resumed = RoundCoordinator.Resume(Setup(clock), clock, FoldThenCrash(2), out _);
        var step = resumed.Abort("restored older database detected");
        var aborted = Assert.IsType<RoundAborted>(Assert.IsType<CloseEffect>(Assert.Single(step.Effects)).Outcome);
        Assert.Equal("restored older database detected", aborted.Reason);
        Assert.Equal(["car-0", "car-1"], aborted.Contributors);
        Assert.Equal(["car-2"], aborted.Silent);
        Assert.Empty(resumed.Abort("again").Effects);
        Assert.Equal(RejectReasons.Late, resumed.Receive("car-2", Ids[2], Updates[2]).Admission.Reason);
    }
}
