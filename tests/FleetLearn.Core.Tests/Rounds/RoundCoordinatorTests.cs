using System.Security.Cryptography;
using FleetLearn.Core.Compression;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Random;
using FleetLearn.Core.Rounds;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Core.Tests.Rounds;

/// <summary>The round's one state machine on a fake clock: admission table, dropouts at every phase, close policy, charges.</summary>
public sealed class RoundCoordinatorTests
{
    private static readonly float[] Global = [10, 10, 10, 10];
    private static readonly float[] SecureGlobal = [1, 2, 3, 4, 5, 6, 7, 8];

    private static (RoundCoordinator Coordinator, ManualTimeProvider Clock, UpdatePipelineRound Codec) Plain(
        int cohort = 3, int cohortSize = 3, int min = 1, NoiseMode? privacy = null, double maxWeight = 100, float[]? global = null, double? maxNorm = RoundRules.DefaultMaxUpdateNorm)
    {
        var clock = new ManualTimeProvider();
        var pipeline = new UpdatePipeline(new UpdatePipelineOptions { Codec = CodecSpec.None, Dimension = Global.Length, ClipNorm = privacy is null ? null : 100, Noise = privacy });
        var codec = pipeline.ForRound(1, 1, privacy is null ? null : 100);
        var coordinator = new RoundCoordinator(new RoundSetup
        {
            Round = 1,
            Cohort = [.. Enumerable.Range(0, cohort).Select(i => $"car-{i}")],
            Global = global ?? Global,
            Strategy = StrategyCatalog.Parse("fedavg", null),
            Codec = codec,
            Rules = new RoundRules { CohortSize = cohortSize, MinParticipants = min, Privacy = privacy, NoiseMultiplier = privacy is null ? 0 : 1e-9, UniformWeights = privacy is not null, MaxWeight = maxWeight, MaxUpdateNorm = maxNorm },
            Deadline = clock.GetUtcNow() + TimeSpan.FromMinutes(10),
            CentralNoise = privacy == NoiseMode.Central ? new SeededNoiseSource(1) : null,
        }, clock);
        return (coordinator, clock, codec);
    }

    private static PlainUpdateMessage Update(UpdatePipelineRound codec, int index, float[] delta, double weight = 1) =>
        new(codec.EncodePlain(delta.ToArray(), weight, (ulong)index, Guid.NewGuid(), new SeededNoiseSource(1), new SeededNoiseSource(2), null, out _), 0.5);

    [Fact]
    public void Plain_AllAnswer_AppliedAsGlobalPlusMean()
    {
        var (coordinator, _, codec) = Plain();
        using var _ = coordinator;
        var steps = new List<RoundStep>();
        steps.Add(coordinator.Receive("car-0", Guid.NewGuid(), Update(codec, 0, [1, 2, 3, 4])));
        steps.Add(coordinator.Receive("car-1", Guid.NewGuid(), Update(codec, 1, [3, 4, 5, 6])));
        Assert.IsType<CollectingPlain>(coordinator.Phase);
        steps.Add(coordinator.Receive("car-2", Guid.NewGuid(), Update(codec, 2, [5, 6, 7, 8])));
        Assert.All(steps, s => Assert.Equal(AckStatus.Accepted, s.Admission.Status));
        var applied = Assert.IsType<RoundApplied>(coordinator.Outcome);
        Assert.Equal([13f, 14f, 15f, 16f], applied.Parameters);
        Assert.Equal(["car-0", "car-1", "car-2"], applied.Contributors);
        Assert.Empty(applied.Silent);
        Assert.Equal(0.5, applied.TrainLoss);
        Assert.Equal([typeof(JournalEffect), typeof(CloseEffect)], steps[2].Effects.Select(e => e.GetType()));
        Assert.Equal([10f, 10f, 10f, 10f], Global); // the global model it started from is not touched
    }

    [Fact]
    public void Plain_SampleWeights_WeightedMean()
    {
        var (coordinator, _, codec) = Plain(cohort: 2, cohortSize: 2);
        using var _ = coordinator;
        coordinator.Receive("car-0", Guid.NewGuid(), Update(codec, 0, [4, 4, 4, 4], weight: 3));
        coordinator.Receive("car-1", Guid.NewGuid(), Update(codec, 1, [8, 8, 8, 8], weight: 1));
        Assert.Equal([15f, 15f, 15f, 15f], Assert.IsType<RoundApplied>(coordinator.Outcome).Parameters);
    }

    public static TheoryData<string, string, AckStatus, string?> AdmissionCases => new()
    {
        { "same update id again", "car-0", AckStatus.Duplicate, null },
        { "a second update of the same vehicle", "car-0", AckStatus.Duplicate, null },
        { "a vehicle outside the cohort", "car-9", AckStatus.Rejected, RejectReasons.NotInCohort },
        { "a secure-aggregation message in a plaintext round", "car-1", AckStatus.Rejected, RejectReasons.Protocol },
        { "a weight above the public bound", "car-1", AckStatus.Rejected, RejectReasons.Malformed },
        { "a truncated codec envelope", "car-1", AckStatus.Rejected, RejectReasons.Malformed },
        { "a boosted update over the norm bound", "car-1", AckStatus.Rejected, RejectReasons.NormExceeded },
    };

    [Theory]
    [MemberData(nameof(AdmissionCases))]
    public void Plain_Admission_Table(string @case, string vehicle, AckStatus status, string? reason)
    {
        var (coordinator, _, codec) = Plain();
        using var _ = coordinator;
        var first = Guid.NewGuid();
        Assert.Equal(AckStatus.Accepted, coordinator.Receive("car-0", first, Update(codec, 0, [1, 1, 1, 1])).Admission.Status);
        VehicleMessage message = @case switch
        {
            "a secure-aggregation message in a plaintext round" => new SecureUpdateMessage(new UnmaskResponseMessage(1, 1, [])),
            "a weight above the public bound" => Update(codec, 1, [1, 1, 1, 1], weight: 1000),
            "a truncated codec envelope" => new PlainUpdateMessage(new byte[3]),
            "a boosted update over the norm bound" => Update(codec, 1, [600, 600, 600, 600]),
            _ => Update(codec, 0, [2, 2, 2, 2]),
        };
        var step = coordinator.Receive(vehicle, @case == "same update id again" ? first : Guid.NewGuid(), message);
        Assert.Equal(status, step.Admission.Status);
        Assert.Equal(reason, step.Admission.Reason);
        Assert.Empty(step.Effects);
        // Nothing already accepted is lost: the round still closes with car-0's update in it.
        Assert.Equal(AckStatus.Accepted, coordinator.Receive("car-2", Guid.NewGuid(), Update(codec, 2, [1, 1, 1, 1])).Admission.Status);
        Assert.IsType<CollectingPlain>(coordinator.Phase);
    }

    [Fact]
    public void Plain_AfterClose_Late()
    {
        var (coordinator, clock, codec) = Plain();
        using var _ = coordinator;
        coordinator.Receive("car-0", Guid.NewGuid(), Update(codec, 0, [1, 1, 1, 1]));
        clock.Advance(TimeSpan.FromMinutes(10));
        coordinator.Tick();
        var late = coordinator.Receive("car-1", Guid.NewGuid(), Update(codec, 1, [1, 1, 1, 1]));
        Assert.Equal(RejectReasons.Late, late.Admission.Reason);
    }

    [Fact]
    public void Plain_TooFewByTheDeadline_AbortedUnchargedAndSilentNamed()
    {
        var (coordinator, clock, codec) = Plain(min: 2, privacy: NoiseMode.Central);
        using var _ = coordinator;
        coordinator.Receive("car-1", Guid.NewGuid(), Update(codec, 1, [1, 1, 1, 1]));
        clock.Advance(TimeSpan.FromMinutes(9));
        Assert.Empty(coordinator.Tick().Effects);
        Assert.IsType<CollectingPlain>(coordinator.Phase);
        clock.Advance(TimeSpan.FromMinutes(1));
        var step = coordinator.Tick();
        var aborted = Assert.IsType<RoundAborted>(Assert.IsType<CloseEffect>(Assert.Single(step.Effects)).Outcome);
        Assert.Equal("1 updates < minimum 2", aborted.Reason);
        Assert.Equal(["car-0", "car-2"], aborted.Silent);
    }

    [Fact]
    public void Plain_CentralDp_ChargesContributorsBeforeTheModelIsUsed()
    {
        var (coordinator, _, codec) = Plain(cohort: 3, cohortSize: 2, privacy: NoiseMode.Central);
        using var _ = coordinator;
        coordinator.Receive("car-2", Guid.NewGuid(), Update(codec, 2, [1, 1, 1, 1]));
        var step = coordinator.Receive("car-0", Guid.NewGuid(), Update(codec, 0, [3, 3, 3, 3]));
        Assert.Equal(3, step.Effects.Count);
        Assert.Equal("car-0", Assert.IsType<JournalEffect>(step.Effects[0]).Update.Vehicle); // durable before anything else
        var charge = Assert.IsType<ChargeEffect>(step.Effects[1]);
        Assert.Equal(["car-2", "car-0"], charge.Vehicles);
        Assert.Equal(1, charge.Round);
        var applied = Assert.IsType<RoundApplied>(Assert.IsType<CloseEffect>(step.Effects[2]).Outcome);
        Assert.All(applied.Parameters, p => Assert.Equal(12, p, 1e-3)); // σ ≈ 0: the noise is negligible
        Assert.Equal(["car-1"], applied.Silent); // over-selected: K = 2 of 3 were enough
    }

    [Fact]
    public void Plain_Divergence_AbortsTheRoundInsteadOfThrowing()
    {
        var (coordinator, _, codec) = Plain(cohort: 1, cohortSize: 1, global: [float.MaxValue, 1, 1, 1], maxNorm: null);
        using var _ = coordinator;
        var step = coordinator.Receive("car-0", Guid.NewGuid(), Update(codec, 0, [float.MaxValue, 1, 1, 1]));
        Assert.Equal(AckStatus.Accepted, step.Admission.Status);
        var aborted = Assert.IsType<RoundAborted>(coordinator.Outcome);
        Assert.Contains("diverged", aborted.Reason, StringComparison.Ordinal);
    }

    /// <summary>A secure round of five vehicles running <see cref="SecAggVehicle"/> against the coordinator, messages through the codec.</summary>
    private sealed class SecureRound : IDisposable
    {
        public const int N = 5;
        private readonly ECDsa[] _keys = new ECDsa[N];
        private readonly SecAggVehicle[] _vehicles = new SecAggVehicle[N];
        private readonly DeviceKeyRegistry _vehicleRegistry = new();
        private readonly SecAggParameters _parameters;

        public SecureRound(NoiseMode? privacy = null, int minNoiseShares = 1)
        {
            var pipeline = new UpdatePipeline(new UpdatePipelineOptions { Codec = CodecSpec.Parse("q8"), Dimension = 8, ClipNorm = 1, SecureAggregation = SecureAggregationMode.Full, CohortSize = N, Noise = privacy });
            Codec = pipeline.ForRound(3, 3, 1);
            var seed = new byte[32];
            seed[0] = 7;
            _parameters = pipeline.CreateSecAggParameters(3, N, seed, TimeSpan.FromSeconds(30));
            var serverRegistry = new DeviceKeyRegistry();
            for (int i = 0; i < N; i++)
            {
                _keys[i] = ECDsa.Create(ECCurve.NamedCurves.nistP256);
                serverRegistry.Add(i, _keys[i].ExportSubjectPublicKeyInfo());
                _vehicleRegistry.Add(i, _keys[i].ExportSubjectPublicKeyInfo());
            }
            for (int i = 0; i < N; i++) _vehicles[i] = new SecAggVehicle(_parameters, i, _keys[i], _vehicleRegistry, Clock);
            for (int i = 0; i < N; i++)
            {
                var rng = DeterministicRandom.Derive(9, 1, (ulong)i);
                var delta = Enumerable.Range(0, 8).Select(_ => (float)(rng.NextDouble() - 0.5) * 0.3f).ToArray();
                Inputs[i] = Codec.EncodeSecure(delta, 1, new SeededNoiseSource((ulong)i), new SeededNoiseSource((ulong)i + 100), out _);
            }
            Coordinator = new RoundCoordinator(new RoundSetup
            {
                Round = 3,
                Cohort = [.. Enumerable.Range(0, N).Select(i => $"car-{i}")],
                Global = SecureGlobal,
                Strategy = StrategyCatalog.Parse("fedavg", null),
                Codec = Codec,
                Rules = new RoundRules { CohortSize = N, Privacy = privacy, NoiseMultiplier = privacy is null ? 0 : 1, MinNoiseShares = minNoiseShares, UniformWeights = true, MaxWeight = 1 },
                Deadline = Clock.GetUtcNow() + TimeSpan.FromHours(1),
                Secure = new SecureRoundSetup(_parameters, serverRegistry),
            }, Clock);
        }

        public ManualTimeProvider Clock { get; } = new();
        public UpdatePipelineRound Codec { get; }
        public RoundCoordinator Coordinator { get; }
        public uint[][] Inputs { get; } = new uint[N][];
        public List<RoundEffect> Effects { get; } = [];

        private List<SecAggMessage> Send(int i, SecAggMessage message)
        {
            var step = Coordinator.Receive($"car-{i}", Guid.NewGuid(), new SecureUpdateMessage(SecAggCodec.Decode(SecAggCodec.Encode(message), 3)));
            Assert.Equal(AckStatus.Accepted, step.Admission.Status);
            Effects.AddRange(step.Effects);
            return [.. step.Effects.OfType<RouteEffect>().Select(r => r.Message)];
        }

        private List<SecAggMessage> CloseIfOpen(SecAggServerPhase phase, List<SecAggMessage> routed)
        {
            if (Coordinator.Phase is CollectingSecure s && s.Phase == phase)
            {
                Clock.Advance(_parameters.PhaseTimeout);
                var step = Coordinator.Tick();
                Effects.AddRange(step.Effects);
                routed.AddRange(step.Effects.OfType<RouteEffect>().Select(r => r.Message));
            }
            return routed;
        }

        /// <summary>Vehicles 0–3 advertise keys; the phase deadline passes with nobody ticking; then vehicle 4's advertisement arrives.</summary>
        public RoundStep AdvertiseLate()
        {
            for (int i = 0; i < N - 1; i++) Send(i, _vehicles[i].Start());
            Clock.Advance(_parameters.PhaseTimeout);
            return Coordinator.Receive($"car-{N - 1}", Guid.NewGuid(), new SecureUpdateMessage(SecAggCodec.Decode(SecAggCodec.Encode(_vehicles[N - 1].Start()), 3)));
        }

        /// <summary>Runs the round; vehicle <paramref name="drops"/> stop before sending their phase-<paramref name="phase"/> message.</summary>
        public RoundOutcome Run(int phase = -1, params int[] drops)
        {
            bool Gone(int p, int i) => p == phase && drops.Contains(i);
            var routed = new List<SecAggMessage>();
            for (int i = 0; i < N; i++) if (!Gone(0, i)) routed.AddRange(Send(i, _vehicles[i].Start()));
            routed = CloseIfOpen(SecAggServerPhase.AdvertiseKeys, routed);
            var next = new List<SecAggMessage>();
            foreach (var d in routed.OfType<KeyDirectoryMessage>()) if (!Gone(1, d.VehicleId)) next.AddRange(Send(d.VehicleId, _vehicles[d.VehicleId].HandleKeyDirectory(d)));
            routed = CloseIfOpen(SecAggServerPhase.ShareKeys, next);
            next = [];
            foreach (var f in routed.OfType<ForwardedSharesMessage>()) if (!Gone(2, f.VehicleId)) next.AddRange(Send(f.VehicleId, _vehicles[f.VehicleId].HandleForwardedShares(f, Inputs[f.VehicleId])));
            routed = CloseIfOpen(SecAggServerPhase.MaskedInputCollection, next);
            next = [];
            foreach (var u in routed.OfType<UnmaskRequestMessage>())
                if (!Gone(3, u.VehicleId) && Coordinator.Phase is not Closed) next.AddRange(Send(u.VehicleId, _vehicles[u.VehicleId].HandleUnmaskRequest(u)));
            CloseIfOpen(SecAggServerPhase.Unmasking, next);
            if (Coordinator.Phase is not Closed)
            {
                Clock.Advance(TimeSpan.FromHours(1));
                Effects.AddRange(Coordinator.Tick().Effects);
            }
            return Coordinator.Outcome!;
        }

        /// <summary>The model the round must produce: the global plus the decoded sum of <paramref name="contributors"/>' inputs, computed in the clear.</summary>
        public float[] Expected(IEnumerable<int> contributors)
        {
            var sum = new uint[Inputs[0].Length];
            var list = contributors.ToList();
            foreach (int u in list) for (int i = 0; i < sum.Length; i++) sum[i] += Inputs[u][i];
            for (int i = 0; i < sum.Length; i++) sum[i] &= _parameters.ValueMask;
            var mean = Codec.DecodeSum(sum, list.Count).Mean;
            var next = SecureGlobal.ToArray();
            StrategyCatalog.Parse("fedavg", null).ApplyUpdate(next, mean);
            return next;
        }

        public void Dispose()
        {
            Coordinator.Dispose();
            foreach (var v in _vehicles) v.Dispose();
            foreach (var k in _keys) k.Dispose();
            _vehicleRegistry.Dispose();
        }
    }

    [Fact]
    public void Secure_LateMessageAfterThePhaseDeadline_RejectedButThePhaseItClosedIsRouted()
    {
        // The late message makes the server close the expired phase before it refuses the message itself: the key
        // directories that closing produced must still reach the four vehicles, or they wait for a phase that never opens.
        using var round = new SecureRound();
        var step = round.AdvertiseLate();
        Assert.Equal(AckStatus.Rejected, step.Admission.Status);
        var directories = step.Effects.OfType<RouteEffect>().Select(r => r.Message).OfType<KeyDirectoryMessage>().Select(d => d.VehicleId).Order();
        Assert.Equal([0, 1, 2, 3], directories);
        Assert.Equal(SecAggServerPhase.ShareKeys, Assert.IsType<CollectingSecure>(round.Coordinator.Phase).Phase);
    }

    [Fact]
    public void Secure_AllAnswer_ModelEqualsTheSumInTheClear()
    {
        using var round = new SecureRound();
        var applied = Assert.IsType<RoundApplied>(round.Run());
        Assert.Equal(5, applied.Contributors.Count);
        Assert.Equal(round.Expected(Enumerable.Range(0, 5)), applied.Parameters);
    }

    [Theory]
    [InlineData(0, "never advertised keys")]
    [InlineData(1, "advertised keys, shared none")]
    [InlineData(2, "shared keys, sent no masked input: its masks are rebuilt from shares")]
    [InlineData(3, "sent its masked input, answered no unmask request: t shares suffice")]
    public void Secure_OneVehicleDropsAtPhase_RoundStillApplies(int phase, string what)
    {
        using var round = new SecureRound();
        var applied = Assert.IsType<RoundApplied>(round.Run(phase, 2));
        var survivors = phase == 3 ? Enumerable.Range(0, 5) : new[] { 0, 1, 3, 4 };
        Assert.True(survivors.Select(i => $"car-{i}").SequenceEqual(applied.Contributors), what);
        Assert.Equal(round.Expected(survivors), applied.Parameters);
        Assert.Equal(phase == 3 ? [] : new[] { "car-2" }, applied.Silent);
    }

    [Fact]
    public void Secure_TooFewSurvive_AbortedNamingThePhase_NothingCharged()
    {
        using var round = new SecureRound(NoiseMode.Distributed, minNoiseShares: 3);
        var aborted = Assert.IsType<RoundAborted>(round.Run(2, 0, 1, 2));
        Assert.Contains("MaskedInputCollection", aborted.Reason, StringComparison.Ordinal);
        Assert.DoesNotContain(round.Effects, e => e is ChargeEffect);
    }

    [Fact]
    public void Secure_FewerNoiseSharesThanSized_SumNotReleased_NothingCharged()
    {
        using var round = new SecureRound(NoiseMode.Distributed, minNoiseShares: 5);
        var aborted = Assert.IsType<RoundAborted>(round.Run(2, 4));
        Assert.Equal("4 noise shares < the 5 the noise was sized for: the sum is not released", aborted.Reason);
        Assert.DoesNotContain(round.Effects, e => e is ChargeEffect);
    }

    [Fact]
    public void Secure_DistributedDp_ChargesTheSurvivors()
    {
        using var round = new SecureRound(NoiseMode.Distributed, minNoiseShares: 4);
        Assert.IsType<RoundApplied>(round.Run(2, 1));
        var charge = Assert.Single(round.Effects.OfType<ChargeEffect>());
        Assert.Equal(["car-0", "car-2", "car-3", "car-4"], charge.Vehicles);
        Assert.True(round.Effects.IndexOf(charge) < round.Effects.FindIndex(e => e is CloseEffect));
    }

    [Fact]
    public void Secure_PlaintextUpdateOrAnotherIndex_Rejected()
    {
        using var round = new SecureRound();
        var plain = round.Coordinator.Receive("car-0", Guid.NewGuid(), new PlainUpdateMessage(new byte[40]));
        Assert.Equal(RejectReasons.Protocol, plain.Admission.Reason);
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var other = round.Coordinator.Receive("car-0", Guid.NewGuid(), new SecureUpdateMessage(new UnmaskResponseMessage(3, 4, [])));
        Assert.Equal(RejectReasons.NotInCohort, other.Admission.Reason);
    }

    [Fact]
    public void ClosedRounds_ResendAfterClose_DuplicateOrUnneededOrLate()
    {
        using var round = new SecureRound();
        round.Run();
        var closed = new ClosedRounds();
        closed.Add(round.Coordinator);
        Assert.True(closed.IsClosed(3));
        Assert.False(closed.IsClosed(4));
        var seen = round.Coordinator.SeenUpdateIds.First();
        Assert.Equal(AckStatus.Duplicate, closed.Admit("car-0", 3, seen, null).Status);
        Assert.Equal(AckStatus.Duplicate, closed.Admit("car-1", 3, Guid.NewGuid(), new UnmaskResponseMessage(3, 1, [])).Status);
        Assert.Equal(RejectReasons.Late, closed.Admit("car-1", 3, Guid.NewGuid(), new UnmaskResponseMessage(3, 2, [])).Reason);
        Assert.Equal(RejectReasons.Late, closed.Admit("car-1", 3, Guid.NewGuid(), null).Reason);
    }

    [Fact]
    public void ClosedRounds_RemembersTheCohortsOfTheLastRoundsOnly()
    {
        using var round = new SecureRound();
        round.Run();
        var closed = new ClosedRounds(keep: 2);
        string member = round.Coordinator.Cohort[0];
        Assert.True(round.Coordinator.InCohort(member));
        Assert.False(round.Coordinator.InCohort("car-stranger"));
        closed.Add(round.Coordinator);
        Assert.True(closed.Remembers(member));
        Assert.False(closed.Remembers("car-stranger"));
        // A round closed by an earlier run is remembered with the vehicles it folded.
        closed.Add(4, new HashSet<Guid>(), new Dictionary<string, int>(), new HashSet<string> { "car-restored" });
        Assert.True(closed.Remembers("car-restored"));
        Assert.True(closed.Remembers(member));
        closed.Add(5, new HashSet<Guid>(), new Dictionary<string, int>(), new HashSet<string>());
        Assert.False(closed.Remembers(member)); // round 3 is more than keep = 2 rounds behind round 5
        Assert.True(closed.Remembers("car-restored"));
    }

    [Fact]
    public void CohortSelection_SeededUniformInCandidateOrder()
    {
        var candidates = Enumerable.Range(0, 50).ToArray();
        var a = CohortSelection.Select(candidates, 10, 5, 1);
        Assert.Equal(a, CohortSelection.Select(candidates, 10, 5, 1));
        Assert.NotEqual(a, CohortSelection.Select(candidates, 10, 5, 2));
        Assert.Equal(a.Order(), a);
        Assert.Equal(10, a.Distinct().Count());
        Assert.Equal(candidates, CohortSelection.Select(candidates, 99, 5, 1));
        Assert.Equal(13, CohortSelection.SelectionSize(10, 0.3));
        // Uniform: over many rounds each candidate is picked about count/|candidates| of the time.
        var hits = new int[50];
        for (int r = 0; r < 5000; r++) foreach (int v in CohortSelection.Select(candidates, 10, 5, r)) hits[v]++;
        Assert.All(hits, h => Assert.InRange(h, 850, 1150));
    }
}
