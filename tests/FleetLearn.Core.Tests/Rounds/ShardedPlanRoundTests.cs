using System.Security.Cryptography;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Model;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Rounds;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Core.Tests.Rounds;

/// <summary>
/// A sharded round driven only by the signed plan, as the shard and coordinator processes run it: vehicles join through
/// <see cref="VehicleRound.Join"/>, each shard builds its coordinator with <see cref="ShardedPlan.ShardSetup"/>, partial sums
/// travel through <see cref="PartialSumCodec"/> to a <see cref="ShardCombiner"/> whose parts come from the plan.
/// </summary>
public sealed class ShardedPlanRoundTests : IDisposable
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

    private RoundPlan Plan(bool central) => new()
    {
        Fleet = "test", Round = 3, ModelVersion = 0, ModelSpec = Spec.ToString(), ModelSha256 = new string('0', 64), ModelBytes = 1, Cohort = Cohort,
        DeadlineUnixMs = (_clock.GetUtcNow() + TimeSpan.FromMinutes(5)).ToUnixTimeMilliseconds(), IssuedUnixMs = _clock.GetUtcNow().ToUnixTimeMilliseconds(),
        Protection = new RoundProtection
        {
            Codec = "q8", SecureAggregation = "plus", ClipNorm = 1, UniformWeights = true, PhaseTimeoutMs = 10_000, CodecSeed = 17,
            Noise = central ? "central" : null, NoiseMultiplier = central ? 0.5 : 0,
            SecAggRoundSeed = Convert.ToBase64String(new byte[32]),
            DeviceKeys = [.. _keys.Select(k => Convert.ToBase64String(k.ExportSubjectPublicKeyInfo()))],
        },
    };

    private RoundSetup Whole(RoundPlan plan)
    {
        var protection = plan.Protection!;
        var pipeline = protection.CreatePipeline(Spec.ParameterCount, Cohort.Length);
        var noise = protection.NoiseMode;
        return new RoundSetup
        {
            Round = plan.Round,
            Cohort = plan.Cohort,
            Global = new float[Spec.ParameterCount],
            Strategy = StrategyCatalog.Parse("fedavg", null),
            Codec = protection.ForRound(pipeline, plan.Round),
            Rules = new RoundRules { CohortSize = 9, MinParticipants = 6, Privacy = noise, NoiseMultiplier = protection.NoiseMultiplier, UniformWeights = true, MaxWeight = 1 },
            Deadline = _clock.GetUtcNow() + TimeSpan.FromMinutes(5),
            CentralNoiseMultiplier = noise is null ? null : protection.NoiseMultiplier,
            CentralNoise = noise == NoiseMode.Central ? new SeededNoiseSource(99) : null,
        };
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ThreeShardsFromThePlan_SameModelAsOneCoordinator_ChargedOnce(bool central)
    {
        var plain = Plan(central);
        var whole = Whole(plain);
        var parts = ShardAssignment.Assign(Cohort, [0, 1, 2]);
        var sharded = plain with { Shards = ShardedPlan.Table(Cohort, parts, s => Enumerable.Repeat((byte)(s + 1), 32).ToArray()) };
        sharded.Validate();

        // One coordinator over the whole cohort (its own SecAgg over the unsharded plan).
        var pipeline = whole.Codec.Pipeline;
        var registry = plain.Protection!.CreateDeviceKeyRegistry(Cohort, null);
        using var single = new RoundCoordinator(whole with { Secure = new SecureRoundSetup(plain.Protection.CreateSecAggParameters(pipeline, plain.Round, 9, SecAggSession.Id(plain.Fleet, Signed)), registry) }, _clock);
        Drive(plain, v => single, _ => { });
        var expected = Assert.IsType<RoundApplied>(single.Outcome);

        // Three shards, each built from the sharded plan alone, and a combiner whose parts come from it.
        Assert.Equal(parts.ToDictionary(p => p.Key, p => p.Value.ToArray()), ShardedPlan.Parts(sharded).ToDictionary(p => p.Key, p => p.Value.ToArray()));
        var combiner = new ShardCombiner(Whole(sharded), ShardedPlan.Parts(sharded), _clock);
        var shards = new[] { 0, 1, 2 }.ToDictionary(s => s, s => new RoundCoordinator(ShardedPlan.ShardSetup(Whole(sharded), sharded, Signed, s), _clock));
        var charges = new List<ChargeEffect>();
        try
        {
            Drive(sharded, v => shards[PlanShards.Of(sharded, v)!.Shard.Index], partial =>
            {
                var wire = PartialSumCodec.Encode(partial, pipeline.ModulusBits);
                var step = combiner.Receive(PartialSumCodec.Decode(wire, new PartialSumLimits(sharded.Round, pipeline.SecAggDimension, pipeline.ModulusBits, Spec.ParameterCount, Cohort.Length)));
                charges.AddRange(step.Effects.OfType<ChargeEffect>());
            });
            Assert.All(shards.Values, s => Assert.Equal(3, s.Cohort.Count));
        }
        finally
        {
            foreach (var s in shards.Values) s.Dispose();
        }

        var applied = Assert.IsType<RoundApplied>(combiner.Outcome);
        Assert.Equal(expected.Parameters, applied.Parameters); // secure sums are exact: bit for bit
        Assert.Equal(Cohort, applied.Contributors.Order(StringComparer.Ordinal));
        if (central) Assert.Equal(Cohort, Assert.Single(charges).Vehicles.Order(StringComparer.Ordinal));
    }

    /// <summary>Runs every vehicle of <paramref name="plan"/> against the coordinator <paramref name="serving"/> names for it; a shard's partial goes to <paramref name="handOn"/>.</summary>
    private void Drive(RoundPlan plan, Func<string, RoundCoordinator> serving, Action<PartialSum> handOn)
    {
        var rounds = Cohort.ToDictionary(v => v, v => Assert.IsType<Joined>(VehicleRound.Join(plan, Signed, Profile(v), 0, null, Randomness, _clock)));
        var queue = new Queue<(string From, VehicleEffect Effect)>(rounds.SelectMany(r => r.Value.Effects.Select(e => (r.Key, e))));
        foreach (var (v, joined) in rounds) Enqueue(v, joined.Round.OnModel(new Checkpoint(Spec, 0, new float[Spec.ParameterCount])));
        while (queue.Count > 0)
        {
            var (from, effect) = queue.Dequeue();
            if (effect is TrainEffect) Enqueue(from, rounds[from].Round.OnTrained(Delta(from), 0.1, 10, 1));
            if (effect is not SendSecAggEffect send) continue;
            var step = serving(from).Receive(from, Guid.NewGuid(), new SecureUpdateMessage(SecAggCodec.Decode(SecAggCodec.Encode(send.Message), (ulong)plan.Round)));
            foreach (var route in step.Effects.OfType<RouteEffect>()) Enqueue(route.Vehicle, rounds[route.Vehicle].Round.OnSecAgg(route.Message));
            foreach (var partial in step.Effects.OfType<PartialSumEffect>()) handOn(partial.Partial);
        }
        foreach (var r in rounds.Values) r.Round.Dispose();

        void Enqueue(string from, IReadOnlyList<VehicleEffect> effects)
        {
            foreach (var e in effects) queue.Enqueue((from, e));
        }
    }

    private static float[] Delta(string vehicle)
    {
        int i = int.Parse(vehicle.AsSpan(4), System.Globalization.CultureInfo.InvariantCulture);
        return [.. Enumerable.Range(0, Spec.ParameterCount).Select(k => (i + 1) * 0.01f * (k % 3 - 1))];
    }

    private VehicleProfile Profile(string vehicle) => new() { VehicleId = vehicle, Pinned = Spec, DeviceKey = _keys[Array.IndexOf(Cohort, vehicle)], Floors = new(), MaxBatch = 64 };

    private static VehicleRoundRandomness Randomness(long round) => new(new SeededNoiseSource((ulong)round), new SeededNoiseSource((ulong)round + 7), new Guid((int)round, 0, 0, new byte[8]));
}
