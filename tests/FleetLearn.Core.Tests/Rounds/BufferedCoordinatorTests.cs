using FleetLearn.Core.Compression;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Rounds;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Core.Tests.Rounds;

/// <summary>FedBuff's buffered coordinator on a fake clock: staleness weights, the step, refusals, leases, charges and the cap, against hand computations.</summary>
public sealed class BufferedCoordinatorTests
{
    private static readonly float[] Global = [10, 10, 10, 10];

    private sealed class Fleet
    {
        public required BufferedCoordinator Coordinator { get; init; }
        public required ManualTimeProvider Clock { get; init; }
        public required PrivacyLedger? Ledger { get; init; }

        /// <summary>Checks in (must be accepted), returns the version and slot.</summary>
        public BufferedCheckIn Join(string vehicle)
        {
            var c = Coordinator.CheckIn(vehicle);
            Assert.True(c.Admission.Status == AckStatus.Accepted, c.Admission.Why);
            return c;
        }

        public RoundStep Send(string vehicle, BufferedCheckIn checkIn, float value, double weight = 1, Guid? id = null) =>
            Coordinator.Receive(vehicle, id ?? Guid.NewGuid(), new PlainUpdateMessage(
                Coordinator.CodecFor(checkIn.Version).EncodePlain(Enumerable.Repeat(value, Global.Length).ToArray(), weight, checkIn.Slot, Guid.NewGuid(), new SeededNoiseSource(1), new SeededNoiseSource(2), null, out _), 0.5));

        /// <summary>Records the step's charges as the runner does.</summary>
        public void Charge(RoundStep step)
        {
            foreach (var c in step.Effects.OfType<ChargeEffect>()) foreach (var v in c.Vehicles) Ledger!.Record(v, c.Round, c.Charge);
        }
    }

    private static Fleet Create(int k, int concurrency = 10, int maxStaleness = 10, int? cap = null, double? sigma = null, double budget = 1000)
    {
        var (setup, clock, ledger) = Setup(k, concurrency, maxStaleness, cap, sigma, budget);
        return new Fleet { Clock = clock, Ledger = ledger, Coordinator = new BufferedCoordinator(setup, clock) };
    }

    private static (BufferedSetup Setup, ManualTimeProvider Clock, PrivacyLedger? Ledger) Setup(int k, int concurrency = 10, int maxStaleness = 10, int? cap = null, double? sigma = null, double budget = 1000)
    {
        var clock = new ManualTimeProvider();
        var privacy = sigma is null ? (NoiseMode?)null : NoiseMode.Central;
        var pipeline = new UpdatePipeline(new UpdatePipelineOptions { Codec = CodecSpec.None, Dimension = Global.Length, ClipNorm = privacy is null ? null : 100, Noise = privacy });
        var ledger = sigma is null ? null : new PrivacyLedger(new PrivacyLedgerOptions(budget, 1e-5));
        var setup = new BufferedSetup
        {
            Global = Global,
            Strategy = StrategyCatalog.Parse("fedavg", null),
            CodecFor = v => pipeline.ForRound((ulong)v, 7, privacy is null ? null : 100),
            Rules = new RoundRules { CohortSize = k, Privacy = privacy, NoiseMultiplier = sigma ?? 0, UniformWeights = privacy is not null, MaxWeight = 100 },
            Concurrency = concurrency,
            MaxStaleness = maxStaleness,
            MaxParticipations = cap,
            Ledger = ledger,
            Lease = TimeSpan.FromMinutes(30),
            CentralNoiseFor = privacy is null ? null : v => new SeededNoiseSource((ulong)v),
        };
        return (setup, clock, ledger);
    }

    [Theory]
    [InlineData(0, 1.0)]
    [InlineData(1, 0.70710678118654746)]
    [InlineData(3, 0.5)]
    [InlineData(8, 1 / 3.0)]
    [InlineData(99, 0.1)]
    public void Weight_IsOneOverSqrtOnePlusTau(long tau, double expected) => Assert.Equal(expected, Staleness.Weight(tau), 15);

    [Fact]
    public void FreshBuffer_AppliesWeightedMeanAtTheKthUpdate()
    {
        var f = Create(k: 2);
        var a = f.Join("car-a");
        var b = f.Join("car-b");
        var first = f.Send("car-a", a, 4, weight: 3);
        Assert.Equal(AckStatus.Accepted, first.Admission.Status);
        Assert.Equal(("car-a", 0L, 1L), Assert.IsType<JournalEffect>(Assert.Single(first.Effects)) is var j ? (j.Update.Vehicle, j.Update.LeaseVersion!.Value, j.Round) : default);
        Assert.Equal(0, f.Coordinator.Version);
        var second = f.Send("car-b", b, 8, weight: 1);
        Assert.IsType<JournalEffect>(second.Effects[0]); // journaled before the release it completes
        var applied = Assert.IsType<RoundApplied>(Assert.IsType<CloseEffect>(Assert.Single(second.Effects.Skip(1))).Outcome);
        // (3·4 + 1·8) / 4 = 5 → 10 + 5
        Assert.Equal([15f, 15f, 15f, 15f], applied.Parameters);
        Assert.Equal(1, applied.Round);
        Assert.Equal(1, f.Coordinator.Version);
        Assert.Equal(["car-a", "car-b"], applied.Contributors);
        Assert.Equal([15f, 15f, 15f, 15f], f.Coordinator.Global.ToArray());
    }

    [Fact]
    public void StaleUpdate_ScaledByItsWeight_DenominatorWithoutStaleness()
    {
        var f = Create(k: 1);
        var slow = f.Join("car-slow");
        for (int i = 0; i < 3; i++) f.Send($"car-{i}", f.Join($"car-{i}"), 1); // three fresh steps of +1: version 3, global 13
        Assert.Equal(3, f.Coordinator.Version);
        // Now K = 1 means the slow update alone is the step: 0.5·8·w / w = 4 (FedBuff: a stale update moves the model less).
        var step = f.Send("car-slow", slow, 8, weight: 2);
        Assert.Equal([17f, 17f, 17f, 17f], Assert.IsType<RoundApplied>(step.Effects.OfType<CloseEffect>().Single().Outcome).Parameters);
        Assert.Equal(3, f.Coordinator.StalenessCounts[0]);
        Assert.Equal(1, f.Coordinator.StalenessCounts[3]);
    }

    [Fact]
    public void MixedStaleness_HandComputedStep()
    {
        var f = Create(k: 2);
        var slow = f.Join("car-slow");
        for (int i = 0; i < 3; i++)
        {
            var x = f.Join($"x-{i}");
            var y = f.Join($"y-{i}");
            f.Send($"x-{i}", x, 1);
            f.Send($"y-{i}", y, 1);
        }
        Assert.Equal(3, f.Coordinator.Version); // global 13
        var fresh = f.Join("car-fresh");
        f.Send("car-slow", slow, 8, weight: 3); // τ = 3, s = 0.5
        var step = f.Send("car-fresh", fresh, 4, weight: 1); // τ = 0
        // (3·0.5·8 + 1·1·4) / (3 + 1) = 16 / 4 = 4
        Assert.Equal([17f, 17f, 17f, 17f], Assert.IsType<RoundApplied>(step.Effects.OfType<CloseEffect>().Single().Outcome).Parameters);
    }

    [Fact]
    public void OverMaxStaleness_RejectedAsStale_SlotFreed()
    {
        var f = Create(k: 1, maxStaleness: 2);
        var slow = f.Join("car-slow");
        for (int i = 0; i < 3; i++) f.Send($"car-{i}", f.Join($"car-{i}"), 1);
        var step = f.Send("car-slow", slow, 8);
        Assert.Equal(AckStatus.Rejected, step.Admission.Status);
        Assert.Equal(RejectReasons.Stale, step.Admission.Reason);
        Assert.Equal("trained on version 0, 3 behind version 3: the maximum staleness is 2", step.Admission.Why);
        Assert.Equal(3, f.Coordinator.Version);
        Assert.Equal(1, f.Coordinator.Progress.Stale);
        Assert.Equal(0, f.Coordinator.Training);
        Assert.Equal([13f, 13f, 13f, 13f], f.Coordinator.Global.ToArray());
    }

    [Fact]
    public void CheckIns_RefusedWhenFullBusyOrBuffered()
    {
        var f = Create(k: 2, concurrency: 2);
        var a = f.Join("car-a");
        f.Join("car-b");
        var full = f.Coordinator.CheckIn("car-c");
        Assert.Equal((AckStatus.Rejected, RejectReasons.Busy, "all 2 training slots are taken; check in later"), (full.Admission.Status, full.Admission.Reason, full.Admission.Why));
        Assert.Equal(RejectReasons.Busy, f.Coordinator.CheckIn("car-a").Admission.Reason);
        f.Send("car-a", a, 1);
        // Its update waits in the buffer: a second one in the same step would be a second charge for the same release.
        var again = f.Coordinator.CheckIn("car-a");
        Assert.Equal("its update waits in the buffer of version 1; check in after it is released", again.Admission.Why);
        Assert.Equal(AckStatus.Accepted, f.Coordinator.CheckIn("car-c").Admission.Status);
    }

    [Fact]
    public void Receive_DuplicateAndUnknown()
    {
        var f = Create(k: 3);
        var a = f.Join("car-a");
        var id = Guid.NewGuid();
        Assert.Equal(AckStatus.Accepted, f.Send("car-a", a, 1, id: id).Admission.Status);
        Assert.Equal(AckStatus.Duplicate, f.Send("car-a", a, 1, id: id).Admission.Status);
        var stranger = f.Send("car-z", a, 1);
        Assert.Equal(RejectReasons.NotInCohort, stranger.Admission.Reason);
    }

    [Fact]
    public void SeenIds_ForgottenOnceOlderThanTheMaxStaleness()
    {
        var f = Create(k: 1, maxStaleness: 1);
        var id = Guid.NewGuid();
        var a = f.Join("car-a");
        f.Send("car-a", a, 1, id: id);
        f.Send("car-b", f.Join("car-b"), 1);
        Assert.Equal(AckStatus.Duplicate, f.Send("car-a", a, 1, id: id).Admission.Status); // version 2: still remembered
        f.Send("car-c", f.Join("car-c"), 1); // version 3: received at version 0 < 3 − 1 − 1
        Assert.Equal(RejectReasons.NotInCohort, f.Send("car-a", a, 1, id: id).Admission.Reason);
    }

    [Fact]
    public void Lease_ExpiresOnTheClock_FreesTheSlot_LateUpdateRefused()
    {
        var f = Create(k: 2, concurrency: 1);
        var a = f.Join("car-a");
        Assert.Equal(f.Clock.GetUtcNow() + TimeSpan.FromMinutes(30), f.Coordinator.NextDeadline);
        f.Clock.Advance(TimeSpan.FromMinutes(29));
        Assert.Empty(f.Coordinator.Tick());
        Assert.Equal(RejectReasons.Busy, f.Coordinator.CheckIn("car-b").Admission.Reason);
        f.Clock.Advance(TimeSpan.FromMinutes(1));
        Assert.Equal(["car-a"], f.Coordinator.Tick());
        Assert.Equal(AckStatus.Accepted, f.Coordinator.CheckIn("car-b").Admission.Status);
        Assert.Equal(RejectReasons.NotInCohort, f.Send("car-a", a, 1).Admission.Reason);
        Assert.Equal(1, f.Coordinator.Progress.Expired);
    }

    [Fact]
    public void Withdraw_FreesTheSlotAtOnce()
    {
        var f = Create(k: 2, concurrency: 1);
        var a = f.Join("car-a");
        Assert.True(f.Coordinator.Withdraw("car-a"));
        Assert.False(f.Coordinator.Withdraw("car-a"));
        Assert.Equal(AckStatus.Accepted, f.Coordinator.CheckIn("car-b").Admission.Status);
        Assert.Equal(RejectReasons.NotInCohort, f.Send("car-a", a, 1).Admission.Reason);
        Assert.Equal(1, f.Coordinator.Progress.Withdrawn);
    }

    [Fact]
    public void MalformedUpdate_RejectedBySharedAdmission()
    {
        var f = Create(k: 1);
        var a = f.Join("car-a");
        var step = f.Coordinator.Receive("car-a", Guid.NewGuid(), new PlainUpdateMessage(new byte[] { 1, 2, 3 }));
        Assert.Equal(AckStatus.Rejected, step.Admission.Status);
        Assert.Equal(RejectReasons.Malformed, step.Admission.Reason);
        var b = f.Join("car-b");
        var heavy = f.Send("car-b", b, 1, weight: 500);
        Assert.Equal("weight 500 is outside (0, 100]", heavy.Admission.Why);
        Assert.Equal(0, f.Coordinator.Version);
        _ = a;
    }

    [Fact]
    public void Dp_ChargesPerStaleness_LedgerRdpMatchesHandComputation()
    {
        const double sigma = 2;
        var f = Create(k: 2, sigma: sigma);
        var slow = f.Join("car-slow");
        for (int i = 0; i < 3; i++)
        {
            var x = f.Join($"x-{i}");
            var y = f.Join($"y-{i}");
            f.Send($"x-{i}", x, 1);
            f.Charge(f.Send($"y-{i}", y, 1));
        }
        var fresh = f.Join("car-fresh");
        f.Send("car-slow", slow, 1);
        var step = f.Send("car-fresh", fresh, 1);
        f.Charge(step);
        var charges = step.Effects.OfType<ChargeEffect>().ToList();
        Assert.IsType<CloseEffect>(step.Effects[^1]); // charges come before the model is used
        Assert.Equal(2, charges.Count);
        Assert.Equal((4L, "car-fresh", sigma), (charges[0].Round, Assert.Single(charges[0].Vehicles), charges[0].Charge.NoiseMultiplier));
        Assert.Equal((4L, "car-slow", sigma * 2), (charges[1].Round, Assert.Single(charges[1].Vehicles), charges[1].Charge.NoiseMultiplier));
        // RDP at α of a contribution with staleness τ: α·s(τ)²/(2σ²). α = 2: fresh 2/8 = 0.25, τ = 3: 2·0.25/8 = 0.0625.
        int alpha2 = f.Ledger!.Options.Orders.ToList().IndexOf(2);
        Assert.Equal(0.25, f.Ledger.Get("car-fresh").Rdp[alpha2], 12);
        Assert.Equal(0.0625, f.Ledger.Get("car-slow").Rdp[alpha2], 12);
        Assert.Equal(0.0625, BufferedAccountant.RdpOfContribution(2, sigma, 3), 12);
    }

    [Fact]
    public void ParticipationCap_ThirdCheckInRefused_LedgerCountsTwo_EpsilonWithinBound()
    {
        const double sigma = 1.5;
        var f = Create(k: 1, cap: 2, sigma: sigma);
        for (int i = 0; i < 2; i++) f.Charge(f.Send("car-a", f.Join("car-a"), 1));
        var third = f.Coordinator.CheckIn("car-a");
        Assert.Equal((RejectReasons.ParticipationCap, "2 participations: the cap is 2"), (third.Admission.Reason, third.Admission.Why));
        Assert.Equal(2, f.Ledger!.Get("car-a").Participations);
        Assert.Equal(2, f.Coordinator.Participations["car-a"]);
        // Two fresh contributions are the worst case the bound assumes: the ledger's ε equals it.
        var bound = BufferedAccountant.EpsilonBound(2, sigma, 1e-5);
        Assert.Equal(bound.Epsilon, f.Ledger.EpsilonOf("car-a"), 12);
        Assert.Equal(RdpAccountant.GetEpsilon(1, sigma, 2, 1e-5).Epsilon, bound.Epsilon, 12);
    }

    [Fact]
    public void LedgerKnowsBest_PriorParticipationsCountAgainstTheCap()
    {
        var f = Create(k: 1, cap: 2, sigma: 1);
        f.Ledger!.Record("car-a", 100, PrivacyCharge.Participation(1));
        f.Ledger.Record("car-a", 101, PrivacyCharge.Participation(1));
        Assert.Equal(RejectReasons.ParticipationCap, f.Coordinator.CheckIn("car-a").Admission.Reason);
    }

    [Fact]
    public void Budget_VehicleThatCannotAffordAFreshContributionIsRefused()
    {
        double oneStep = BufferedAccountant.EpsilonBound(1, 1, 1e-5).Epsilon;
        var f = Create(k: 1, sigma: 1, budget: oneStep * 1.01);
        f.Charge(f.Send("car-a", f.Join("car-a"), 1));
        Assert.Equal("one more participation would exceed its privacy budget", f.Coordinator.CheckIn("car-a").Admission.Why);
    }

    [Fact]
    public void MaxParticipations_InvertsTheBound()
    {
        double budget = BufferedAccountant.EpsilonBound(5, 3, 1e-5).Epsilon;
        Assert.Equal(5, BufferedAccountant.MaxParticipations(3, 1e-5, budget));
        Assert.Equal(4, BufferedAccountant.MaxParticipations(3, 1e-5, budget * 0.999));
    }

    [Fact]
    public void RobustStrategy_RefusedWithReason()
    {
        var pipeline = new UpdatePipeline(new UpdatePipelineOptions { Codec = CodecSpec.None, Dimension = 4 });
        var e = Assert.Throws<ArgumentException>(() => new BufferedCoordinator(new BufferedSetup
        {
            Global = Global,
            Strategy = StrategyCatalog.Parse("median", null),
            CodecFor = v => pipeline.ForRound((ulong)v, 1),
            Rules = new RoundRules { CohortSize = 2 },
            Concurrency = 2,
        }, new ManualTimeProvider()));
        Assert.StartsWith("Strategy 'median' ignores weights", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Resume_JournalOfTheUnreleasedBuffer_SameStepAsWithoutTheRestart()
    {
        // Uninterrupted: a stale and a fresh update wait, the third releases the step.
        var f = Create(k: 3);
        var slow = f.Join("car-slow");
        f.Send("car-0", f.Join("car-0"), 1);
        f.Send("car-1", f.Join("car-1"), 1);
        f.Send("car-2", f.Join("car-2"), 1); // version 1
        var a = f.Join("car-a");
        var b = f.Join("car-b");
        var journal = new[] { f.Send("car-slow", slow, 8, weight: 3), f.Send("car-a", a, 4, weight: 2) }
            .Select(s => Assert.IsType<JournalEffect>(Assert.Single(s.Effects)).Update).ToList();
        var expected = Assert.IsType<RoundApplied>(f.Send("car-b", b, 2).Effects.OfType<CloseEffect>().Single().Outcome);

        // Restarted at version 1 with those two entries: the buffer holds them, and the same third update gives the same step.
        var (setup, clock, _) = Setup(k: 3);
        var resumed = BufferedCoordinator.Resume(setup with { Global = new float[] { 11, 11, 11, 11 }, FirstVersion = 1 }, clock, journal, out var replayed);
        Assert.Empty(replayed);
        Assert.Equal((1L, 2), (resumed.Version, resumed.Progress.Buffered));
        Assert.Equal(AckStatus.Duplicate, resumed.Receive("car-a", journal[1].UpdateId, new PlainUpdateMessage(journal[1].Envelope)).Admission.Status);
        var again = resumed.CheckIn("car-b");
        Assert.Equal((1L, 1UL), (again.Version, again.Slot)); // slot 0 of version 1 is car-a's, from the journal
        var step = resumed.Receive("car-b", Guid.NewGuid(), new PlainUpdateMessage(
            resumed.CodecFor(1).EncodePlain([2, 2, 2, 2], 1, again.Slot, Guid.NewGuid(), new SeededNoiseSource(1), new SeededNoiseSource(2), null, out _), 0.5));
        Assert.Equal(expected.Parameters, Assert.IsType<RoundApplied>(step.Effects.OfType<CloseEffect>().Single().Outcome).Parameters);
    }

    [Fact]
    public void Resume_CrashAfterTheKthUpdateWasJournaled_ReleasesTheStepAgain()
    {
        var f = Create(k: 2, sigma: 1);
        var a = f.Join("car-a");
        var b = f.Join("car-b");
        var first = f.Send("car-a", a, 4);
        var second = f.Send("car-b", b, 8);
        var expected = Assert.IsType<RoundApplied>(second.Effects.OfType<CloseEffect>().Single().Outcome);
        var journal = new[] { first, second }.Select(s => s.Effects.OfType<JournalEffect>().Single().Update).ToList();

        var (setup, clock, _) = Setup(k: 2, sigma: 1);
        var resumed = BufferedCoordinator.Resume(setup, clock, journal, out var replayed);

        // The model was never stored: the replay releases it again, charges first, with the same noise and parameters.
        Assert.Equal(second.Effects.OfType<ChargeEffect>().Select(c => (c.Round, c.Vehicles.ToArray(), c.Charge)), replayed.OfType<ChargeEffect>().Select(c => (c.Round, c.Vehicles.ToArray(), c.Charge)));
        Assert.Equal(expected.Parameters, Assert.IsType<RoundApplied>(Assert.IsType<CloseEffect>(replayed[^1]).Outcome).Parameters);
        Assert.Equal(1, resumed.Version);
    }

    [Fact]
    public void Resume_EntryWithoutALease_RefusedAsASynchronousRoundsJournal()
    {
        var (setup, clock, _) = Setup(k: 2);
        var e = Assert.Throws<InvalidDataException>(() => BufferedCoordinator.Resume(setup, clock, [new JournaledUpdate("car-a", Guid.NewGuid(), [1, 2, 3], 0.5)], out _));
        Assert.Contains("without a FedBuff lease: it was written by a synchronous round", e.Message, StringComparison.Ordinal);
    }
}
