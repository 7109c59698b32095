using System.Security.Cryptography;
using FleetLearn.Core.Model;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Rounds;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Core.Tests.Rounds;

/// <summary>The signed plan's shard table: a vehicle runs its own shard's secure sum; a table that does not partition the cohort is refused.</summary>
public sealed class ShardedPlanTests : IDisposable
{
    private static readonly ModelSpec Spec = ModelSpec.Parse("4-2");
    private static readonly string[] Cohort = [.. Enumerable.Range(0, 9).Select(i => $"car-{i}")];
    private static readonly byte[] Signed = "the signed plan's bytes"u8.ToArray();
    private readonly ManualTimeProvider _clock = new();
    private readonly ECDsa[] _keys = [.. Cohort.Select(_ => ECDsa.Create(ECCurve.NamedCurves.nistP256))];

    public void Dispose()
    {
        foreach (var k in _keys) k.Dispose();
    }

    private static string Seed(byte b) => Convert.ToBase64String(Enumerable.Repeat(b, 32).ToArray());

    /// <summary>Shard s owns positions s, s + 3, s + 6, with its own seed.</summary>
    private static PlanShard[] ThreeShards() => [.. Enumerable.Range(0, 3).Select(s => new PlanShard { Index = s, Members = [s, s + 3, s + 6], SecAggRoundSeed = Seed((byte)(s + 1)) })];

    private RoundPlan Plan(IReadOnlyList<PlanShard>? shards, string secure = "plus") => new()
    {
        Fleet = "test", Round = 4, ModelVersion = 0, ModelSpec = Spec.ToString(), ModelSha256 = new string('0', 64), ModelBytes = 1, Cohort = Cohort,
        DeadlineUnixMs = (_clock.GetUtcNow() + TimeSpan.FromMinutes(5)).ToUnixTimeMilliseconds(), IssuedUnixMs = _clock.GetUtcNow().ToUnixTimeMilliseconds(),
        Shards = shards,
        Protection = new RoundProtection
        {
            Codec = "q8", SecureAggregation = secure, ClipNorm = 1, UniformWeights = true, PhaseTimeoutMs = 10_000,
            SecAggRoundSeed = secure == "off" ? null : Seed(0),
            DeviceKeys = secure == "off" ? null : [.. _keys.Select(k => Convert.ToBase64String(k.ExportSubjectPublicKeyInfo()))],
        },
    };

    private VehicleProfile Profile(int i, VehiclePrivacyFloors? floors = null) => new() { VehicleId = Cohort[i], Pinned = Spec, DeviceKey = _keys[i], Floors = floors ?? new(), MaxBatch = 64 };

    private static VehicleRoundRandomness Randomness(long round) => new(new SeededNoiseSource((ulong)round), new SeededNoiseSource((ulong)round + 7), new Guid((int)round, 0, 0, new byte[8]));

    [Fact]
    public void Join_VehicleInShard2_AdvertisesUnderItsPlaceInShard2()
    {
        var plan = Plan(ThreeShards());
        plan.Validate();

        var view = PlanShards.Of(plan, "car-5")!;
        var joined = Assert.IsType<Joined>(VehicleRound.Join(plan, Signed, Profile(5), 0, null, Randomness, _clock));
        using var round = joined.Round;
        var advertise = Assert.IsType<AdvertiseKeysMessage>(Assert.IsType<SendSecAggEffect>(Assert.Single(joined.Effects)).Message);

        Assert.Equal(2, view.Shard.Index);
        Assert.Equal(["car-2", "car-5", "car-8"], view.Cohort);
        Assert.Equal(1, view.Index);
        Assert.Equal(1, advertise.VehicleId); // its SecAgg index in shard 2, not its cohort position 5
    }

    [Fact]
    public void Create_Shard2sVehicles_RunShard2sSessionWithItsServer_ExactSum()
    {
        var plan = Plan(ThreeShards());
        var protection = plan.Protection!;
        var pipeline = protection.CreatePipeline(Spec.ParameterCount, Cohort.Length);
        var shard = PlanShards.Find(plan, 2)!;
        string[] part = ["car-2", "car-5", "car-8"];
        // The shard process builds its server from the same plan entry: its seed and size, the whole cohort's modulus.
        var parameters = protection.CreateSecAggParameters(pipeline, plan.Round, part.Length, SecAggSession.Id(plan.Fleet, Signed), shard);
        var registry = protection.CreateDeviceKeyRegistry(part, null, shard);
        using var server = new SecAggServer(parameters, registry, _clock);
        var rounds = new[] { 2, 5, 8 }.Select(i => SecureVehicleSetup.Create(plan, Signed, Cohort[i], _keys[i], null, _keys[i], time: _clock, pipeline: pipeline)).ToArray();
        try
        {
            Assert.Equal(3, parameters.CohortSize);
            Assert.Equal(Enumerable.Repeat((byte)3, 32), parameters.RoundSeed);
            Assert.Equal(pipeline.ModulusBits, parameters.BitWidth);
            var down = rounds.SelectMany(r => server.Receive(r.Vehicle.Start()).Outbox).ToList();
            down = [.. down.Cast<KeyDirectoryMessage>().SelectMany(d => server.Receive(rounds[d.VehicleId].Vehicle.HandleKeyDirectory(d)).Outbox)];
            var input = Enumerable.Repeat(1u, parameters.Dimension).ToArray();
            down = [.. down.Cast<ForwardedSharesMessage>().SelectMany(f => server.Receive(rounds[f.VehicleId].Vehicle.HandleForwardedShares(f, input)).Outbox)];
            foreach (var u in down.Cast<UnmaskRequestMessage>()) server.Receive(rounds[u.VehicleId].Vehicle.HandleUnmaskRequest(u));

            Assert.Equal(SecAggServerPhase.Completed, server.Phase);
            Assert.All(server.Result!.Sum.ToArray(), v => Assert.Equal(3u, v));
        }
        finally
        {
            foreach (var r in rounds) r.Dispose();
            (registry as IDisposable)?.Dispose();
        }
    }

    [Fact]
    public void Join_ShardSmallerThanTheVehiclesMinimumCohort_Declined()
    {
        var plan = Plan(ThreeShards());

        var declined = Assert.IsType<Declined>(VehicleRound.Join(plan, Signed, Profile(5, new VehiclePrivacyFloors { MinCohort = 5 }), 0, null, Randomness, _clock));

        // The whole cohort is 9, but shard 2 unmasks the sum of 3: that is the crowd this vehicle hides in.
        Assert.Equal("the plan's cohort of 3 is below this vehicle's minimum 5", declined.Reason);
    }

    public static TheoryData<string, string> Inconsistent => new()
    {
        { "twice", "puts car-3 in shards 0 and 1" },
        { "missing", "puts car-8 in no shard" },
        { "order", "lists shard 1's members out of order" },
        { "range", "puts cohort position 9 in shard 2; the cohort has 9" },
        { "duplicate", "names shard 0 twice or out of range" },
        { "small", "gives shard 2 2 vehicles; secure aggregation needs at least 3" },
        { "seed", "gives shard 1 no 32-byte base64 SecAgg seed" },
        { "k", "gives shard 0 k = 3 for 3 vehicles" },
    };

    [Theory]
    [MemberData(nameof(Inconsistent))]
    public void Validate_InconsistentShardTable_Refused(string fault, string message)
    {
        var s = ThreeShards();
        PlanShard[] shards = fault switch
        {
            "twice" => [s[0], s[1] with { Members = [1, 3, 4, 7] }, s[2]],
            "missing" => [s[0] with { Members = [0, 1, 3] }, s[1] with { Members = [4, 6, 7] }, s[2] with { Members = [2, 5] }],
            "order" => [s[0], s[1] with { Members = [4, 1, 7] }, s[2]],
            "range" => [s[0], s[1], s[2] with { Members = [2, 5, 8, 9] }],
            "duplicate" => [s[0], s[1], s[2] with { Index = 0 }],
            "small" => [s[0] with { Members = [0, 3, 6, 8] }, s[1], s[2] with { Members = [2, 5] }],
            "seed" => [s[0], s[1] with { SecAggRoundSeed = null }, s[2]],
            "k" => [s[0] with { Neighbors = 3 }, s[1], s[2]],
            _ => throw new ArgumentOutOfRangeException(nameof(fault)),
        };

        var e = Assert.Throws<WireFormatException>(() => Plan(shards).Validate());

        Assert.Equal($"Round plan shard table {message}.", e.Message);
    }

    [Fact]
    public void Create_VehicleInNoShardOfAPlanThatSkippedValidation_Refused()
    {
        var plan = Plan([.. ThreeShards().Take(2)]);

        var e = Assert.Throws<WireFormatException>(() => SecureVehicleSetup.Create(plan, Signed, "car-5", _keys[5], null, _keys[5]));

        Assert.Equal("Round plan 4 puts vehicle car-5 in no shard.", e.Message);
    }

    [Fact]
    public void Validate_PlaintextShards_NeedNoSeeds()
    {
        Plan([.. ThreeShards().Select(s => s with { SecAggRoundSeed = null })], secure: "off").Validate();
    }
}
