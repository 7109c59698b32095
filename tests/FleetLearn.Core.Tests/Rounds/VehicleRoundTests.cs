using System.Security.Cryptography;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Model;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Rounds;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Core.Tests.Rounds;

/// <summary>
/// The vehicle's part of a round on a fake clock: the plan decision table, the ledger charged exactly when data leaves,
/// drops at every step, and three vehicles with the aggregator's <see cref="RoundCoordinator"/> giving the exact secure sum.
/// </summary>
public sealed class VehicleRoundTests : IDisposable
{
    private static readonly ModelSpec Spec = ModelSpec.Parse("4-2"); // 10 parameters
    private readonly ManualTimeProvider _clock = new();
    private readonly ECDsa[] _keys = [.. Enumerable.Range(0, 3).Select(_ => ECDsa.Create(ECCurve.NamedCurves.nistP256))];
    private readonly PrivacyLedger _ledger = new(new PrivacyLedgerOptions(1e300, 1e-5)); // the exact-sum test runs σ ≈ 0

    public void Dispose()
    {
        foreach (var k in _keys) k.Dispose();
    }

    private RoundPlan Plan(RoundProtection? protection = null, int batch = 10, long round = 1) => new()
    {
        Fleet = "test",
        Round = round,
        ModelVersion = 0,
        ModelSpec = Spec.ToString(),
        ModelSha256 = new string('0', 64),
        ModelBytes = 1,
        Cohort = ["car-0", "car-1", "car-2"],
        Batch = batch,
        Protection = protection,
        DeadlineUnixMs = (_clock.GetUtcNow() + TimeSpan.FromMinutes(5)).ToUnixTimeMilliseconds(),
        IssuedUnixMs = _clock.GetUtcNow().ToUnixTimeMilliseconds(),
    };

    private static RoundProtection CentralDp(double sigma = 1) => new() { ClipNorm = 1, Noise = "central", NoiseMultiplier = sigma, UniformWeights = true };

    private RoundProtection Secure(double sigma = 0) => new()
    {
        Codec = "q8",
        SecureAggregation = "full",
        ClipNorm = 1,
        Noise = sigma > 0 ? "distributed" : null,
        NoiseMultiplier = sigma,
        MinNoiseShares = sigma > 0 ? 3 : 1,
        VehicleNoiseStdDev = sigma > 0 ? sigma / Math.Sqrt(3) : 0,
        UniformWeights = true,
        SecAggRoundSeed = Convert.ToBase64String(new byte[32]),
        PhaseTimeoutMs = 10_000,
        DeviceKeys = [.. _keys.Select(k => Convert.ToBase64String(k.ExportSubjectPublicKeyInfo()))],
    };

    private VehicleProfile Profile(int i, VehiclePrivacyFloors? floors = null) => new() { VehicleId = $"car-{i}", Pinned = Spec, DeviceKey = _keys[i], Floors = floors ?? new(), MaxBatch = 64 };

    private PrivacyLedgerAccount Account(int i) => new(_ledger, $"car-{i}");

    private static VehicleRoundRandomness Randomness(long round) => new(new SeededNoiseSource((ulong)round), new SeededNoiseSource((ulong)round + 7), new Guid((int)round, 0, 0, new byte[8]));

    private PlanDecision Join(RoundPlan plan, int vehicle, long lastDecided = 0, VehiclePrivacyFloors? floors = null) =>
        VehicleRound.Join(plan, Signed, Profile(vehicle, floors), lastDecided, Account(vehicle), Randomness, _clock);

    /// <summary>The plan's bytes as a vehicle received them (secure rounds bind their signatures to them).</summary>
    private static readonly ReadOnlyMemory<byte> Signed = "the signed plan"u8.ToArray();

    private static Checkpoint Model(float value = 0) => new(Spec, 0, Enumerable.Repeat(value, Spec.ParameterCount).ToArray());

    [Fact]
    public void Join_DecisionTable()
    {
        Assert.IsType<AlreadyDecided>(Join(Plan(round: 3), 0, lastDecided: 3));
        Assert.IsType<NotSelected>(VehicleRound.Join(Plan(), Signed, Profile(0) with { VehicleId = "car-9" }, 0, null, Randomness, _clock));
        Assert.Equal("batch 100 exceeds 64", Assert.IsType<Declined>(Join(Plan(batch: 100), 0)).Reason);
        Assert.Equal("the plan has no secure aggregation and this vehicle requires it",
            Assert.IsType<Declined>(Join(Plan(CentralDp()), 0, floors: new() { RequireSecureAggregation = true })).Reason);
        Assert.Equal("the plan's DP noise multiplier 0.5 is below this vehicle's minimum 1",
            Assert.IsType<Declined>(Join(Plan(CentralDp(0.5)), 0, floors: new() { MinNoiseMultiplier = 1 })).Reason);
        Assert.Equal("the plan lists another device key for this vehicle",
            Assert.IsType<Declined>(VehicleRound.Join(Plan(Secure()), Signed, Profile(0) with { DeviceKey = _keys[1] }, 0, null, Randomness, _clock)).Reason);

        var plain = Assert.IsType<Joined>(Join(Plan(), 0));
        using (plain.Round)
        {
            Assert.Empty(plain.Effects);
            Assert.IsType<AwaitingModel>(plain.Round.State);
        }
        var secure = Assert.IsType<Joined>(Join(Plan(Secure()), 1));
        using (secure.Round)
            Assert.IsType<AdvertiseKeysMessage>(Assert.IsType<SendSecAggEffect>(Assert.Single(secure.Effects)).Message); // keys advertised before the model is here
    }

    [Fact]
    public void Join_RequiresMaliciousAggregatorMode_PlaintextPlanDeclined()
    {
        // A vehicle that requires protection against a malicious aggregator must not hand that aggregator its bare update
        // because the plan simply turned secure aggregation off.
        Assert.Equal("the plan has no secure aggregation, and this vehicle requires it against a malicious aggregator",
            Assert.IsType<Declined>(VehicleRound.Join(Plan(CentralDp()), Signed, Profile(0) with { RequireMaliciousAggregator = true }, 0, null, Randomness, _clock)).Reason);
        Assert.Equal("the plan has no secure aggregation, and this vehicle requires it against a malicious aggregator",
            Assert.IsType<Declined>(VehicleRound.Join(Plan(), Signed, Profile(0) with { RequireMaliciousAggregator = true }, 0, null, Randomness, _clock)).Reason);
    }

    [Fact]
    public void Join_OverBudget_Declined()
    {
        var tight = new PrivacyLedger(new PrivacyLedgerOptions(0.01, 1e-5));
        var decision = VehicleRound.Join(Plan(CentralDp()), Signed, Profile(0), 0, new PrivacyLedgerAccount(tight, "car-0"), Randomness, _clock);
        Assert.StartsWith("the round would exceed this vehicle's ε budget", Assert.IsType<Declined>(decision).Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Plain_ModelTrainSend_ChargedOnceWhenTheUpdateLeaves()
    {
        using var round = Assert.IsType<Joined>(Join(Plan(CentralDp()), 0)).Round;
        var train = Assert.IsType<TrainEffect>(Assert.Single(round.OnModel(Model())));
        Assert.Equal(0, _ledger.EpsilonOf("car-0")); // training costs nothing: only a release does
        Assert.IsType<TrainingLocally>(round.State);

        var effects = round.OnTrained(new float[Spec.ParameterCount], 0.25, 40, 1);
        var send = Assert.IsType<SendUpdateEffect>(effects[0]);
        Assert.Equal((1L, 0.25, 40), (send.Round, send.TrainLoss, send.Samples));
        Assert.Equal(Randomness(1).UpdateId, send.UpdateId);
        Assert.IsType<VehicleDone>(Assert.IsType<FinishedEffect>(effects[1]).Final);
        Assert.True(_ledger.EpsilonOf("car-0") > 0);
        Assert.Single(_ledger.Get("car-0").Rounds);
        Assert.Empty(round.OnTrained(new float[Spec.ParameterCount], 0.25, 40, 1)); // final: a second result changes nothing
        Assert.Single(_ledger.Get("car-0").Rounds);
        Assert.NotNull(train.Model);
    }

    [Fact]
    public void Plain_BudgetSpentWhileTraining_AbandonedNothingSent()
    {
        double one = new PrivacyLedger(new PrivacyLedgerOptions(1e6, 1e-5)).Preview("car-0", PrivacyCharge.Participation(1)).Epsilon;
        var ledger = new PrivacyLedger(new PrivacyLedgerOptions(1.2 * one, 1e-5)); // one round fits, two do not (RDP composes below 2ε)
        var account = new PrivacyLedgerAccount(ledger, "car-0");
        using var round = Assert.IsType<Joined>(VehicleRound.Join(Plan(CentralDp()), Signed, Profile(0), 0, account, Randomness, _clock)).Round;
        round.OnModel(Model());
        Assert.True(ledger.TryRecord("car-0", 99, PrivacyCharge.Participation(1), out _)); // another round spent the budget meanwhile
        double spent = ledger.EpsilonOf("car-0");
        var effects = round.OnTrained(new float[Spec.ParameterCount], 0.25, 40, 1);
        Assert.StartsWith("over the ε budget", Assert.IsType<Abandoned>(Assert.IsType<FinishedEffect>(Assert.Single(effects)).Final).Reason, StringComparison.Ordinal);
        Assert.Equal(spent, ledger.EpsilonOf("car-0"));
    }

    [Fact]
    public void ModelAfterTheDeadline_Abandoned_WrongVersion_Rejected()
    {
        using var late = Assert.IsType<Joined>(Join(Plan(), 0)).Round;
        _clock.Advance(TimeSpan.FromMinutes(6));
        Assert.Equal("the deadline passed before the model arrived", Assert.IsType<Abandoned>(Assert.IsType<FinishedEffect>(Assert.Single(late.OnModel(Model()))).Final).Reason);

        using var wrong = Assert.IsType<Joined>(Join(Plan(), 1)).Round;
        var e = Assert.Throws<WireFormatException>(() => wrong.OnModel(new Checkpoint(Spec, 5, new float[Spec.ParameterCount])));
        Assert.Contains("is not the pinned 4-2 at version 0", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void VerifyModel_BytesAgainstThePlansHash()
    {
        var bytes = Model(0.5f).ToBytes();
        var plan = Plan() with { ModelBytes = bytes.Length, ModelSha256 = Convert.ToHexStringLower(SHA256.HashData(bytes)) };
        Assert.Equal(Model(0.5f).Parameters, VehicleRound.VerifyModel(plan, bytes).Parameters);
        bytes[^1] ^= 1;
        var e = Assert.Throws<WireFormatException>(() => VehicleRound.VerifyModel(plan, bytes));
        Assert.Equal(RejectReasons.Signature, e.Reason);
    }

    [Fact]
    public void TrainingStopped_Abandoned_LaterSecAggIgnored()
    {
        using var round = Assert.IsType<Joined>(Join(Plan(Secure()), 0)).Round;
        round.OnModel(Model());
        Assert.Equal("not parked", Assert.IsType<Abandoned>(Assert.IsType<FinishedEffect>(Assert.Single(round.OnTrainingStopped("not parked"))).Final).Reason);
        Assert.Empty(round.OnSecAgg(new UnmaskRequestMessage(1, 0, [], [])));
        Assert.Empty(round.OnTrained(new float[Spec.ParameterCount], 0, 1, 1));
    }

    /// <param name="sharesBeforeModel">The forwarded shares reach vehicle 0 before its model (they wait in AwaitingModel), else while it trains.</param>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Secure_ThreeVehiclesAndTheCoordinator_ExactSum_EachChargedOnce(bool sharesBeforeModel)
    {
        var protection = Secure(sigma: 1e-6);
        var plan = Plan(protection);
        var pipeline = protection.CreatePipeline(Spec.ParameterCount, 3);
        var codec = protection.ForRound(pipeline, 1);
        var registry = new DeviceKeyRegistry();
        for (int i = 0; i < 3; i++) registry.Add(i, _keys[i].ExportSubjectPublicKeyInfo());
        var global = new float[Spec.ParameterCount];
        using var coordinator = new RoundCoordinator(new RoundSetup
        {
            Round = 1,
            Cohort = plan.Cohort,
            Global = global,
            Strategy = StrategyCatalog.Parse("fedavg", null),
            Codec = codec,
            Rules = new RoundRules { CohortSize = 3, MinParticipants = 3, Privacy = NoiseMode.Distributed, NoiseMultiplier = 1e-6, MinNoiseShares = 3, UniformWeights = true, MaxWeight = 1 },
            Deadline = _clock.GetUtcNow() + TimeSpan.FromMinutes(5),
            Secure = new SecureRoundSetup(protection.CreateSecAggParameters(pipeline, 1, 3, SecAggSession.Id(plan.Fleet, Signed.Span)), registry),
        }, _clock);
        var vehicles = Enumerable.Range(0, 3).Select(i => Assert.IsType<Joined>(Join(plan, i))).ToArray();
        var queue = new Queue<(int From, VehicleEffect Effect)>(vehicles.SelectMany((j, i) => j.Effects.Select(e => (i, e))));
        var charges = new List<ChargeEffect>();
        float[] Delta(int i) => [.. Enumerable.Range(0, Spec.ParameterCount).Select(k => (i + 1) * 0.01f * (k % 3 - 1))];
        if (!sharesBeforeModel) foreach (var (v, i) in vehicles.Select((v, i) => (v, i))) Enqueue(i, v.Round.OnModel(Model()));
        while (queue.Count > 0)
        {
            var (from, effect) = queue.Dequeue();
            switch (effect)
            {
                case SendSecAggEffect send:
                    var step = coordinator.Receive($"car-{from}", Guid.NewGuid(), new SecureUpdateMessage(SecAggCodec.Decode(SecAggCodec.Encode(send.Message), 1)));
                    // The sum is released after t unmask answers; a later answer finds the round closed (answered Late, harmless).
                    bool late = coordinator.Phase is Closed && send.Message is UnmaskResponseMessage && step.Admission.Reason == RejectReasons.Late;
                    Assert.True(step.Admission.Status == AckStatus.Accepted || late, $"{send.Message.Type} of car-{from}: {step.Admission.Why}");
                    charges.AddRange(step.Effects.OfType<ChargeEffect>());
                    foreach (var route in step.Effects.OfType<RouteEffect>())
                    {
                        int to = route.Message.VehicleId;
                        var round = vehicles[to].Round;
                        Enqueue(to, round.OnSecAgg(route.Message));
                        if (sharesBeforeModel && route.Message is ForwardedSharesMessage)
                        {
                            Assert.Equal(route.Message, Assert.IsType<AwaitingModel>(round.State).EarlyShares);
                            Enqueue(to, round.OnModel(Model()));
                        }
                    }
                    break;
                case TrainEffect:
                    Enqueue(from, vehicles[from].Round.OnTrained(Delta(from), 0.1, 10, 1));
                    break;
            }
        }
        var applied = Assert.IsType<RoundApplied>(coordinator.Outcome);
        var mean = Enumerable.Range(0, Spec.ParameterCount).Select(k => (Delta(0)[k] + Delta(1)[k] + Delta(2)[k]) / 3).ToArray();
        for (int k = 0; k < mean.Length; k++) Assert.Equal(mean[k], applied.Parameters[k], 2.0 / 255); // q8 over a clip of 1: stochastic rounding moves each input by less than one level, 2/255
        Assert.All(vehicles, v => Assert.IsType<VehicleDone>(v.Round.State));
        Assert.All(Enumerable.Range(0, 3), i => Assert.Single(_ledger.Get($"car-{i}").Rounds)); // each vehicle charged itself once, when its masked input left
        Assert.Equal(["car-0", "car-1", "car-2"], Assert.Single(charges).Vehicles); // and the aggregator charges once, when the sum is released
        foreach (var v in vehicles) v.Round.Dispose();

        void Enqueue(int from, IReadOnlyList<VehicleEffect> effects)
        {
            foreach (var e in effects) queue.Enqueue((from, e));
        }
    }
}
