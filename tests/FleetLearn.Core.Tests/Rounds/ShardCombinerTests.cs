using System.Security.Cryptography;
using FleetLearn.Core.Compression;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Random;
using FleetLearn.Core.Rounds;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Core.Tests.Rounds;

/// <summary>Sharded rounds on a fake clock: shard coordinators close with partial sums; the combiner adds and releases them once.</summary>
public sealed class ShardCombinerTests
{
    private const int Round = 3;
    private const int N = 9;
    private static readonly float[] Global = [1, 2, 3, 4, 5, 6, 7, 8];
    private static readonly string[] Cohort = [.. Enumerable.Range(0, N).Select(i => $"car-{i}")];

    /// <summary>Nine vehicles' secure inputs (q8, complete graph), the pipeline's modulus sized for all nine.</summary>
    private sealed class Fleet : IDisposable
    {
        private readonly ECDsa[] _keys = [.. Enumerable.Range(0, N).Select(_ => ECDsa.Create(ECCurve.NamedCurves.nistP256))];

        public Fleet(NoiseMode? privacy = null)
        {
            Privacy = privacy;
            Pipeline = new UpdatePipeline(new UpdatePipelineOptions { Codec = CodecSpec.Parse("q8"), Dimension = 8, ClipNorm = 1, SecureAggregation = SecureAggregationMode.Full, CohortSize = N, Noise = privacy, UniformWeights = true });
            Codec = Pipeline.ForRound(Round, 3, 1);
            for (int i = 0; i < N; i++)
            {
                var rng = DeterministicRandom.Derive(9, 1, (ulong)i);
                var delta = Enumerable.Range(0, 8).Select(_ => (float)(rng.NextDouble() - 0.5) * 0.3f).ToArray();
                Inputs[i] = Codec.EncodeSecure(delta, 1, new SeededNoiseSource((ulong)i), new SeededNoiseSource((ulong)i + 100), out _);
            }
        }

        public NoiseMode? Privacy { get; }
        public UpdatePipeline Pipeline { get; }
        public UpdatePipelineRound Codec { get; }
        public uint[][] Inputs { get; } = new uint[N][];
        public ManualTimeProvider Clock { get; } = new();

        public RoundSetup Setup(IReadOnlyList<string> cohort, int min = 1, SecureRoundSetup? secure = null, ShardRole? shard = null) => new()
        {
            Round = Round,
            Cohort = cohort,
            Global = Global,
            Strategy = StrategyCatalog.Parse("fedavg", null),
            Codec = Codec,
            Rules = new RoundRules { CohortSize = N, MinParticipants = min, Privacy = Privacy, NoiseMultiplier = Privacy is null ? 0 : 0.5, UniformWeights = true, MaxWeight = 1 },
            Deadline = Clock.GetUtcNow() + TimeSpan.FromHours(1),
            CentralNoise = Privacy == NoiseMode.Central && shard is null ? new SeededNoiseSource(42) : null,
            Secure = secure,
            Shard = shard,
        };

        /// <summary>Runs secure aggregation over <paramref name="part"/> (vehicle numbers) to the end, every vehicle answering; returns the coordinator's effects.</summary>
        public List<RoundEffect> RunSecure(int[] part, ShardRole? shard, int min = 1)
        {
            var seed = new byte[32];
            seed[0] = (byte)(shard?.Index + 1 ?? 0); // each shard its own SecAgg instance: its own seed, parameters, graph and keys
            var parameters = Pipeline.CreateSecAggParameters(Round, part.Length, seed, TimeSpan.FromSeconds(30));
            using var vehicleRegistry = Registry(part);
            var vehicles = part.Select((v, i) => new SecAggVehicle(parameters, i, _keys[v], vehicleRegistry, Clock)).ToArray();
            var names = part.Select(v => Cohort[v]).ToArray();
            using var coordinator = new RoundCoordinator(Setup(names, min, new SecureRoundSetup(parameters, Registry(part)), shard), Clock);
            var effects = new List<RoundEffect>();
            List<SecAggMessage> Send(int i, SecAggMessage m)
            {
                var step = coordinator.Receive(names[i], Guid.NewGuid(), new SecureUpdateMessage(SecAggCodec.Decode(SecAggCodec.Encode(m), Round)));
                Assert.Equal(AckStatus.Accepted, step.Admission.Status);
                effects.AddRange(step.Effects);
                return [.. step.Effects.OfType<RouteEffect>().Select(r => r.Message)];
            }
            var routed = Enumerable.Range(0, part.Length).SelectMany(i => Send(i, vehicles[i].Start())).ToList();
            routed = [.. routed.OfType<KeyDirectoryMessage>().SelectMany(d => Send(d.VehicleId, vehicles[d.VehicleId].HandleKeyDirectory(d)))];
            routed = [.. routed.OfType<ForwardedSharesMessage>().SelectMany(f => Send(f.VehicleId, vehicles[f.VehicleId].HandleForwardedShares(f, Inputs[part[f.VehicleId]])))];
            foreach (var u in routed.OfType<UnmaskRequestMessage>())
                if (coordinator.Phase is not Closed) Send(u.VehicleId, vehicles[u.VehicleId].HandleUnmaskRequest(u));
            Assert.IsType<Closed>(coordinator.Phase);
            foreach (var v in vehicles) v.Dispose();
            return effects;
        }

        private DeviceKeyRegistry Registry(int[] part)
        {
            var registry = new DeviceKeyRegistry();
            for (int i = 0; i < part.Length; i++) registry.Add(i, _keys[part[i]].ExportSubjectPublicKeyInfo());
            return registry;
        }

        /// <summary>Each shard's partial sum (the shard closes with exactly one <see cref="PartialSumEffect"/>, no charge, no close).</summary>
        public PartialSum Shard(int index, int[] part)
        {
            var effects = RunSecure(part, new ShardRole(index));
            Assert.DoesNotContain(effects, e => e is ChargeEffect or CloseEffect);
            return Assert.Single(effects.OfType<PartialSumEffect>()).Partial;
        }

        public ShardCombiner Combiner(IReadOnlyDictionary<int, int[]> parts, int min = 1) =>
            new(Setup(Cohort, min), parts.ToDictionary(p => p.Key, p => (IReadOnlyList<string>)[.. p.Value.Select(v => Cohort[v])]), Clock);

        public void Dispose()
        {
            foreach (var k in _keys) k.Dispose();
        }
    }

    private static readonly Dictionary<int, int[]> ThreeParts = new() { [0] = [0, 3, 6], [1] = [1, 4, 7], [2] = [2, 5, 8] };

    [Theory]
    [InlineData(null)]
    [InlineData(NoiseMode.Central)]
    public void Secure_ThreeShards_SameModelBitForBitAsOneCoordinator(NoiseMode? privacy)
    {
        using var fleet = new Fleet(privacy);
        var whole = Assert.IsType<RoundApplied>(Assert.Single(fleet.RunSecure([.. Enumerable.Range(0, N)], null).OfType<CloseEffect>()).Outcome);
        var combiner = fleet.Combiner(ThreeParts);
        var steps = ThreeParts.Select(p => combiner.Receive(fleet.Shard(p.Key, p.Value))).ToList();
        Assert.All(steps, s => Assert.Equal(AckStatus.Accepted, s.Admission.Status));
        Assert.Empty(steps[0].Effects);
        var combined = Assert.IsType<RoundApplied>(combiner.Outcome);
        Assert.Equal(whole.Parameters, combined.Parameters); // exact: ring sums add mod 2^m
        Assert.Equal(whole.Contributors.Order(), combined.Contributors.Order());
        Assert.Empty(combiner.LostShards);
        // Charged once, every contributor, before the close (central DP); nothing charged without DP.
        var charges = steps[2].Effects.OfType<ChargeEffect>().ToList();
        if (privacy is null) Assert.Empty(charges);
        else
        {
            Assert.Equal(N, Assert.Single(charges).Vehicles.Count);
            Assert.Equal(0, steps[2].Effects.ToList().FindIndex(e => e is ChargeEffect));
        }
        Assert.IsType<CloseEffect>(steps[2].Effects[^1]);
    }

    [Fact]
    public void Secure_PartialSums_AreTheRingSumsOfTheirParts()
    {
        using var fleet = new Fleet();
        var partial = Assert.IsType<SecurePartialSum>(fleet.Shard(1, ThreeParts[1]));
        Assert.Equal(["car-1", "car-4", "car-7"], partial.Contributors);
        uint mask = (1u << fleet.Pipeline.ModulusBits) - 1;
        var expected = new uint[partial.Sum.Length];
        foreach (int v in ThreeParts[1]) for (int i = 0; i < expected.Length; i++) expected[i] = (expected[i] + fleet.Inputs[v][i]) & mask;
        Assert.Equal(expected, partial.Sum.ToArray());
    }

    [Fact]
    public void Secure_PartialsThroughTheWireFormat_SameModel()
    {
        using var fleet = new Fleet();
        var limits = new PartialSumLimits(Round, fleet.Pipeline.SecAggDimension, fleet.Pipeline.ModulusBits, Global.Length, N);
        var direct = fleet.Combiner(ThreeParts);
        var wire = fleet.Combiner(ThreeParts);
        foreach (var (shard, part) in ThreeParts)
        {
            var partial = fleet.Shard(shard, part);
            direct.Receive(partial);
            Assert.Equal(AckStatus.Accepted, wire.Receive(PartialSumCodec.Decode(PartialSumCodec.Encode(partial, fleet.Pipeline.ModulusBits), limits)).Admission.Status);
        }
        Assert.Equal(Assert.IsType<RoundApplied>(direct.Outcome).Parameters, Assert.IsType<RoundApplied>(wire.Outcome).Parameters);
    }

    [Fact]
    public void Secure_ShardMissingAtTheDeadline_AppliesWithTheOthersAndNamesTheLostShard()
    {
        using var fleet = new Fleet(NoiseMode.Central);
        var combiner = fleet.Combiner(ThreeParts);
        combiner.Receive(fleet.Shard(0, ThreeParts[0]));
        combiner.Receive(fleet.Shard(2, ThreeParts[2]));
        fleet.Clock.Advance(TimeSpan.FromMinutes(59));
        Assert.Empty(combiner.Tick().Effects);
        Assert.Equal(new CombiningShards(2, 3), combiner.Phase);
        fleet.Clock.Advance(TimeSpan.FromMinutes(1));
        var step = combiner.Tick();
        var applied = Assert.IsType<RoundApplied>(combiner.Outcome);
        Assert.Equal(["car-0", "car-3", "car-6", "car-2", "car-5", "car-8"], applied.Contributors);
        Assert.Empty(applied.Silent); // shard 1's vehicles were failed by their shard, not silent: they stay available
        Assert.Equal([1], combiner.LostShards);
        Assert.Equal(["car-0", "car-3", "car-6", "car-2", "car-5", "car-8"], Assert.Single(step.Effects.OfType<ChargeEffect>()).Vehicles);
        // The same model as one coordinator over those six vehicles alone.
        var six = fleet.RunSecure([0, 3, 6, 2, 5, 8], null);
        Assert.Equal(Assert.IsType<RoundApplied>(Assert.Single(six.OfType<CloseEffect>()).Outcome).Parameters, applied.Parameters);
        // A partial sum after the close is late.
        Assert.Equal(RejectReasons.Late, combiner.Receive(fleet.Shard(1, ThreeParts[1])).Admission.Reason);
    }

    [Fact]
    public void Secure_MinimumNotMetWithoutTheLostShard_AbortedNothingCharged()
    {
        using var fleet = new Fleet(NoiseMode.Central);
        var combiner = fleet.Combiner(ThreeParts, min: 7);
        combiner.Receive(fleet.Shard(0, ThreeParts[0]));
        combiner.Receive(new FailedPartialSum { Round = Round, Shard = 1, Contributors = [], Silent = [], Reason = "secure aggregation stopped in phase ShareKeys: deadline passed" });
        var last = combiner.Receive(fleet.Shard(2, ThreeParts[2]));
        var aborted = Assert.IsType<RoundAborted>(combiner.Outcome);
        Assert.Equal("6 updates < minimum 7", aborted.Reason);
        Assert.Equal([1], combiner.LostShards);
        Assert.Equal([typeof(CloseEffect)], last.Effects.Select(e => e.GetType()));
    }

    [Fact]
    public void Secure_NoShardDelivers_AbortedNamingTheShards()
    {
        using var fleet = new Fleet();
        var combiner = fleet.Combiner(ThreeParts);
        fleet.Clock.Advance(TimeSpan.FromHours(1));
        var step = combiner.Tick();
        var aborted = Assert.IsType<RoundAborted>(Assert.IsType<CloseEffect>(Assert.Single(step.Effects)).Outcome);
        Assert.Equal("no shard handed on a partial sum by the deadline (shards 0, 1, 2)", aborted.Reason);
        Assert.Equal([0, 1, 2], combiner.LostShards);
    }

    [Fact]
    public void Secure_ForgedWeightInOneShard_CombinedSumRejected()
    {
        // Issue 13 item 1's weight-coordinate check runs on the combined sum: one shard's forged weight withholds the release.
        using var fleet = new Fleet();
        var combiner = fleet.Combiner(ThreeParts);
        combiner.Receive(fleet.Shard(0, ThreeParts[0]));
        combiner.Receive(fleet.Shard(1, ThreeParts[1]));
        var honest = Assert.IsType<SecurePartialSum>(fleet.Shard(2, ThreeParts[2]));
        var forged = honest.Sum.ToArray();
        forged[fleet.Pipeline.KeptCount] += 1;
        combiner.Receive(honest with { Sum = forged });
        var aborted = Assert.IsType<RoundAborted>(combiner.Outcome);
        Assert.StartsWith("secure sum rejected: The weight coordinate of the secure sum is 2296, not |U3|·L = 9·255 = 2295", aborted.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Admission_WrongRoundStrangerDuplicateOrWrongKind_Refused()
    {
        using var fleet = new Fleet();
        var combiner = fleet.Combiner(ThreeParts);
        var partial = Assert.IsType<SecurePartialSum>(fleet.Shard(0, ThreeParts[0]));
        Assert.Equal(RejectReasons.Protocol, combiner.Receive(partial with { Round = 4 }).Admission.Reason);
        Assert.Equal(RejectReasons.NotInCohort, combiner.Receive(partial with { Shard = 7 }).Admission.Reason);
        var stranger = combiner.Receive(partial with { Shard = 1 });
        Assert.Equal("shard 1 names car-0, who is not in its part of round 3", stranger.Admission.Why);
        Assert.Equal(RejectReasons.Malformed, combiner.Receive(partial with { Sum = new uint[3] }).Admission.Reason);
        Assert.Equal(RejectReasons.Malformed, combiner.Receive(new PlainPartialSum { Round = Round, Shard = 0, Contributors = ["car-0"], Silent = [], Mean = new float[8], Weight = 1 }).Admission.Reason);
        Assert.Equal(AckStatus.Accepted, combiner.Receive(partial).Admission.Status);
        Assert.Equal(AckStatus.Duplicate, combiner.Receive(partial).Admission.Status);
        Assert.Equal(new CombiningShards(1, 3), combiner.Phase);
    }

    [Fact]
    public void Plain_Shards_WeightedMeanOfTheirMeans()
    {
        var clock = new ManualTimeProvider();
        var pipeline = new UpdatePipeline(new UpdatePipelineOptions { Codec = CodecSpec.None, Dimension = 4 });
        var codec = pipeline.ForRound(1, 1);
        string[] cohort = ["a", "b", "c"];
        RoundSetup Setup(IReadOnlyList<string> members, ShardRole? shard) => new()
        {
            Round = 1, Cohort = members, Global = new float[] { 10, 10, 10, 10 }, Strategy = StrategyCatalog.Parse("fedavg", null), Codec = codec,
            Rules = new RoundRules { CohortSize = members.Count, MaxWeight = 100 }, Deadline = clock.GetUtcNow() + TimeSpan.FromMinutes(1), Shard = shard,
        };
        PlainUpdateMessage Update(ulong index, float[] delta, double weight) =>
            new(codec.EncodePlain(delta, weight, index, Guid.NewGuid(), new SeededNoiseSource(1), new SeededNoiseSource(2), null, out _), 0.25 * (index + 1));
        using var shard0 = new RoundCoordinator(Setup(["a", "b"], new ShardRole(0)), clock);
        using var shard1 = new RoundCoordinator(Setup(["c"], new ShardRole(1)), clock);
        shard0.Receive("a", Guid.NewGuid(), Update(0, [4, 4, 4, 4], 3));
        var partial0 = Assert.IsType<PartialSumEffect>(shard0.Receive("b", Guid.NewGuid(), Update(1, [8, 8, 8, 8], 1)).Effects[^1]).Partial;
        var partial1 = Assert.IsType<PartialSumEffect>(shard1.Receive("c", Guid.NewGuid(), Update(0, [0, 0, 0, 16], 4)).Effects[^1]).Partial;
        Assert.Equal([5f, 5f, 5f, 5f], Assert.IsType<PlainPartialSum>(partial0).Mean!);
        Assert.Equal(4, ((PlainPartialSum)partial0).Weight);
        Assert.IsType<RoundHandedOn>(shard0.Outcome);
        var combiner = new ShardCombiner(Setup(cohort, null), new Dictionary<int, IReadOnlyList<string>> { [0] = ["a", "b"], [1] = ["c"] }, clock);
        combiner.Receive(partial1);
        combiner.Receive(partial0);
        var applied = Assert.IsType<RoundApplied>(combiner.Outcome);
        Assert.Equal([12.5f, 12.5f, 12.5f, 20.5f], applied.Parameters); // (3·4 + 8 + 4·0)/8 = 2.5; (3·4 + 8 + 4·16)/8 = 10.5
        Assert.Equal(["a", "b", "c"], applied.Contributors);
        Assert.Equal((0.25 + 0.5 + 0.25) / 3, applied.TrainLoss, 12);
    }

    [Fact]
    public void Plain_RobustStrategy_CannotBeSharded()
    {
        var pipeline = new UpdatePipeline(new UpdatePipelineOptions { Codec = CodecSpec.None, Dimension = 4 });
        var setup = new RoundSetup
        {
            Round = 1, Cohort = ["a"], Global = new float[4], Strategy = StrategyCatalog.Parse("median", null), Codec = pipeline.ForRound(1, 1),
            Rules = new RoundRules { CohortSize = 1 }, Deadline = DateTimeOffset.UnixEpoch,
        };
        var e = Assert.Throws<ArgumentException>(() => new ShardCombiner(setup, new Dictionary<int, IReadOnlyList<string>> { [0] = ["a"] }, new ManualTimeProvider()));
        Assert.Contains("weighted mean", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Assignment_BalancedDeterministicPreferredAndReassignedWhenAShardDies()
    {
        string[] cohort = [.. Enumerable.Range(0, 10).Select(i => $"v{i}")];
        var parts = ShardAssignment.Assign(cohort, [0, 1, 2]);
        Assert.Equal(["v0", "v3", "v6", "v9"], parts[0]);
        Assert.Equal(["v1", "v4", "v7"], parts[1]);
        Assert.Equal(["v2", "v5", "v8"], parts[2]);
        // By region: v0–v4 use the broker of shard 2; the rest fill the least loaded.
        var regional = ShardAssignment.Assign(cohort, [0, 1, 2], v => int.Parse(v[1..], System.Globalization.CultureInfo.InvariantCulture) < 5 ? 2 : null);
        Assert.Equal(["v0", "v1", "v2", "v3", "v4"], regional[2]);
        Assert.Equal(5, regional[0].Count + regional[1].Count);
        // Shard 1 died: its vehicles go to the live shards.
        var next = ShardAssignment.Assign(cohort, [0, 2], v => v == "v1" ? 1 : null);
        Assert.Equal([0, 2], next.Keys.Order());
        Assert.Equal(cohort, next.Values.SelectMany(p => p).Order(StringComparer.Ordinal));
        Assert.Equal(5, next[0].Count);
    }
}
