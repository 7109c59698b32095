using FleetLearn.Core.Compression;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Model;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Rounds;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Core.Tests.Rounds;

/// <summary>The vehicle's side of a FedBuff assignment on a fake clock: it encodes with the assigned version's codec and its slot, so the coordinator folds it.</summary>
public sealed class BufferedTaskTests
{
    private static readonly ModelSpec Spec = ModelSpec.Parse("2-2");

    private static RoundProtection Protection(long version, string codec = "none") => new() { Codec = codec, MaxWeight = 100, CodecSeed = 1000 + (ulong)version };

    private static RoundPlan Plan(string vehicle, long version, string codec = "none") => new()
    {
        Fleet = "f",
        Round = version + 1,
        ModelVersion = version,
        ModelSpec = Spec.ToString(),
        ModelSha256 = new string('0', 64),
        ModelBytes = 100,
        Cohort = [vehicle],
        Protection = Protection(version, codec),
        DeadlineUnixMs = DateTimeOffset.UnixEpoch.AddHours(1).ToUnixTimeMilliseconds(),
        IssuedUnixMs = 0,
    };

    private static VehicleProfile Profile(string vehicle) => new() { VehicleId = vehicle, Pinned = Spec };

    private static VehicleRoundRandomness Random(ulong seed) => new(new SeededNoiseSource(seed), new SeededNoiseSource(seed + 1), Guid.NewGuid());

    private static BufferedCoordinator Coordinator(float[] global, ManualTimeProvider clock, string codec = "none") => new(new BufferedSetup
    {
        Global = global,
        Strategy = StrategyCatalog.Parse("fedavg", null),
        CodecFor = v => BufferedTask.CodecFor(Protection(v, codec), Spec.ParameterCount, 2, v),
        Rules = new RoundRules { CohortSize = 2, MaxWeight = 100 },
        Concurrency = 4,
    }, clock);

    /// <summary>Joins the assignment, takes the model and trains: returns the upload the round asks to send.</summary>
    private static SendUpdateEffect Train(BufferedCheckIn checkIn, string vehicle, float[] model, float[] delta, double weight, ManualTimeProvider clock, string codec = "none")
    {
        var joined = Assert.IsType<Joined>(BufferedTask.Join(Plan(vehicle, checkIn.Version, codec), checkIn.Slot, 2, Profile(vehicle), null, Random(checkIn.Slot + 5), clock));
        Assert.Empty(joined.Effects); // plaintext: nothing to send before the model
        Assert.IsType<TrainEffect>(Assert.Single(joined.Round.OnModel(new Checkpoint(Spec, checkIn.Version, model))));
        var effects = joined.Round.OnTrained(delta, 0.25, 10, weight);
        Assert.IsType<FinishedEffect>(effects[1]);
        return Assert.IsType<SendUpdateEffect>(effects[0]);
    }

    [Fact]
    public void Join_TwoAssignments_CoordinatorFoldsTheirUpdatesIntoTheWeightedMean()
    {
        var clock = new ManualTimeProvider(DateTimeOffset.UnixEpoch);
        float[] global = [1, 2, 3, 4, 5, 6];
        var coordinator = Coordinator(global, clock);
        var a = coordinator.CheckIn("a");
        var b = coordinator.CheckIn("b");
        Assert.Equal((0UL, 1UL), (a.Slot, b.Slot));

        var first = Train(a, "a", global, [1, 1, 1, 1, 1, 1], weight: 1, clock);
        Assert.Equal(AckStatus.Accepted, coordinator.Receive("a", first.UpdateId, new PlainUpdateMessage(first.Body, first.TrainLoss)).Admission.Status);
        var second = Train(b, "b", global, [4, 0, 4, 0, 4, 0], weight: 3, clock);
        var step = coordinator.Receive("b", second.UpdateId, new PlainUpdateMessage(second.Body, second.TrainLoss));

        Assert.Equal(AckStatus.Accepted, step.Admission.Status);
        Assert.IsType<RoundApplied>(Assert.Single(step.Effects.OfType<CloseEffect>()).Outcome);
        // (1·1 + 3·4) / 4 = 3.25 and (1·1 + 3·0) / 4 = 0.25, added to the global model (FedAvg, server rate 1).
        Assert.Equal([4.25f, 2.25f, 6.25f, 4.25f, 8.25f, 6.25f], coordinator.Global.ToArray());
    }

    [Fact]
    public void Join_UpdateEncodedWithAnotherSlot_Refused()
    {
        var clock = new ManualTimeProvider(DateTimeOffset.UnixEpoch);
        float[] global = new float[6];
        var coordinator = Coordinator(global, clock, codec: "rot+q8");
        var a = coordinator.CheckIn("a");
        _ = coordinator.CheckIn("b");
        var wrongSlot = Train(a with { Slot = 1 }, "a", global, [0.1f, 0.2f, 0.3f, 0.1f, 0.2f, 0.3f], 1, clock, codec: "rot+q8");

        var verdict = coordinator.Receive("a", wrongSlot.UpdateId, new PlainUpdateMessage(wrongSlot.Body, 0)).Admission;

        Assert.Equal(AckStatus.Rejected, verdict.Status);
        Assert.Contains("claims vehicle 1; it came from vehicle 0", verdict.Why, StringComparison.Ordinal);
    }

    [Fact]
    public void Join_SameVersionCodecOnBothSides_QuantizedUpdateAccepted()
    {
        var clock = new ManualTimeProvider(DateTimeOffset.UnixEpoch);
        float[] global = new float[6];
        var coordinator = Coordinator(global, clock, codec: "rot+q8");
        var a = coordinator.CheckIn("a");
        var upload = Train(a, "a", global, [0.1f, 0.2f, 0.3f, 0.1f, 0.2f, 0.3f], 1, clock, codec: "rot+q8");

        Assert.Equal(AckStatus.Accepted, coordinator.Receive("a", upload.UpdateId, new PlainUpdateMessage(upload.Body, 0)).Admission.Status);
    }

    [Fact]
    public void Join_PlanOfAnotherVehicle_NotSelected() =>
        Assert.IsType<NotSelected>(BufferedTask.Join(Plan("b", 0), 0, 2, Profile("a"), null, Random(1), new ManualTimeProvider()));

    [Fact]
    public void Join_SecurePlanAsAOneVehicleAssignment_DeclinedWithReason()
    {
        var plan = Plan("a", 0) with { Protection = Protection(0) with { SecureAggregation = "plus" } };

        var declined = Assert.IsType<Declined>(BufferedTask.Join(plan, 0, 2, Profile("a"), null, Random(1), new ManualTimeProvider()));

        Assert.Contains("is joined as a secure round, not as a one-vehicle assignment", declined.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Join_SecondAssignmentUnderAReleaseAlreadyCharged_Declined()
    {
        // The vehicle charges a contribution under the plan's round (version + 1) and the ledger keeps one record per key:
        // a second assignment on the same version would send a second update for the one charge — an aggregator that repeats
        // an assignment could collect contributions the vehicle never paid for.
        var plan = Plan("a", 3) with { Protection = Protection(3) with { ClipNorm = 1, Noise = "central", NoiseMultiplier = 1, UniformWeights = true, MaxWeight = 1 } };
        var ledger = new PrivacyLedgerAccount(new PrivacyLedger(new PrivacyLedgerOptions(100, 1e-5)), "a");
        Assert.True(ledger.TryRecord(plan.Round, PrivacyCharge.Participation(1)));

        var declined = Assert.IsType<Declined>(BufferedTask.Join(plan, 0, 2, Profile("a"), ledger, Random(1), new ManualTimeProvider()));

        Assert.Equal("this vehicle already contributed under release 4 (model 3): its ledger holds one record per release", declined.Reason);
    }
}
