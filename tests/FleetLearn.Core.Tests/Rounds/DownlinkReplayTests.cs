using System.Security.Cryptography;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Model;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Rounds;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Core.Tests.Rounds;

/// <summary>
/// Downlink replay in secure rounds (issue 14 item 3), on a fake clock: a server message lost on the way (a broker restart
/// that lost its queue) is sent again when the vehicle resends its last message, and the round completes with the exact sum.
/// </summary>
public sealed class DownlinkReplayTests : IDisposable
{
    private static readonly ModelSpec Spec = ModelSpec.Parse("4-2");
    private readonly ManualTimeProvider _clock = new();
    private readonly ECDsa[] _keys = [.. Enumerable.Range(0, 3).Select(_ => ECDsa.Create(ECCurve.NamedCurves.nistP256))];
    private readonly PrivacyLedger _ledger = new(new PrivacyLedgerOptions(1e300, 1e-5));
    private static readonly ReadOnlyMemory<byte> Signed = "the signed plan"u8.ToArray();

    public void Dispose()
    {
        foreach (var k in _keys) k.Dispose();
    }

    private RoundProtection Secure() => new()
    {
        Codec = "q8",
        SecureAggregation = "full",
        ClipNorm = 1,
        Noise = "distributed",
        NoiseMultiplier = 1e-6,
        MinNoiseShares = 3,
        VehicleNoiseStdDev = 1e-6 / Math.Sqrt(3),
        UniformWeights = true,
        SecAggRoundSeed = Convert.ToBase64String(new byte[32]),
        PhaseTimeoutMs = 10_000,
        DeviceKeys = [.. _keys.Select(k => Convert.ToBase64String(k.ExportSubjectPublicKeyInfo()))],
    };

    private static float[] Delta(int i) => [.. Enumerable.Range(0, Spec.ParameterCount).Select(k => (i + 1) * 0.01f * (k % 3 - 1))];

    /// <summary>Runs a 3-vehicle secure round whose link loses the first <paramref name="lost"/> message to vehicles 1 and 2.</summary>
    private (RoundCoordinator Coordinator, VehicleRound[] Vehicles, int Replayed) Run(SecAggMessageType lost)
    {
        var protection = Secure();
        var plan = new RoundPlan
        {
            Fleet = "test", Round = 1, ModelVersion = 0, ModelSpec = Spec.ToString(), ModelSha256 = new string('0', 64), ModelBytes = 1,
            Cohort = ["car-0", "car-1", "car-2"], Protection = protection,
            DeadlineUnixMs = (_clock.GetUtcNow() + TimeSpan.FromMinutes(5)).ToUnixTimeMilliseconds(), IssuedUnixMs = _clock.GetUtcNow().ToUnixTimeMilliseconds(),
        };
        var pipeline = protection.CreatePipeline(Spec.ParameterCount, 3);
        var registry = new DeviceKeyRegistry();
        for (int i = 0; i < 3; i++) registry.Add(i, _keys[i].ExportSubjectPublicKeyInfo());
        var coordinator = new RoundCoordinator(new RoundSetup
        {
            Round = 1, Cohort = plan.Cohort, Global = new float[Spec.ParameterCount], Strategy = StrategyCatalog.Parse("fedavg", null),
            Codec = protection.ForRound(pipeline, 1),
            Rules = new RoundRules { CohortSize = 3, MinParticipants = 3, Privacy = NoiseMode.Distributed, NoiseMultiplier = 1e-6, MinNoiseShares = 3, UniformWeights = true, MaxWeight = 1 },
            Deadline = _clock.GetUtcNow() + TimeSpan.FromMinutes(5),
            Secure = new SecureRoundSetup(protection.CreateSecAggParameters(pipeline, 1, 3, SecAggSession.Id(plan.Fleet, Signed.Span)), registry),
        }, _clock);
        var vehicles = Enumerable.Range(0, 3).Select(i => Assert.IsType<Joined>(VehicleRound.Join(plan, Signed,
            new VehicleProfile { VehicleId = $"car-{i}", Pinned = Spec, DeviceKey = _keys[i], MaxBatch = 64 }, 0, new PrivacyLedgerAccount(_ledger, $"car-{i}"),
            r => new VehicleRoundRandomness(new SeededNoiseSource((ulong)i), new SeededNoiseSource((ulong)i + 7), Guid.NewGuid()), _clock))).ToArray();
        var queue = new Queue<(int From, VehicleEffect Effect)>(vehicles.SelectMany((j, i) => j.Effects.Select(e => (i, e))));
        foreach (var (v, i) in vehicles.Select((v, i) => (v, i))) Enqueue(i, v.Round.OnModel(new Checkpoint(Spec, 0, new float[Spec.ParameterCount])));
        var lastSent = new (byte[] Bytes, Guid Id)?[3];
        var lostOnce = new HashSet<int> { 1, 2 };
        int replayed = 0;
        for (int pass = 0; pass < 10 && coordinator.Phase is not Closed; pass++)
        {
            while (queue.Count > 0)
            {
                var (from, effect) = queue.Dequeue();
                if (effect is TrainEffect) Enqueue(from, vehicles[from].Round.OnTrained(Delta(from), 0.1, 10, 1));
                if (effect is not SendSecAggEffect send) continue;
                lastSent[from] = (SecAggCodec.Encode(send.Message), Guid.NewGuid());
                Deliver(coordinator.Receive($"car-{from}", lastSent[from]!.Value.Id, new SecureUpdateMessage(SecAggCodec.Decode(lastSent[from]!.Value.Bytes, 1))));
            }
            // Nothing moves: every vehicle still waiting for the server resends its last message, with its update id.
            foreach (int i in Enumerable.Range(0, 3).Where(i => vehicles[i].Round.AwaitsServer && coordinator.Phase is not Closed))
            {
                var step = coordinator.Receive($"car-{i}", lastSent[i]!.Value.Id, new SecureUpdateMessage(SecAggCodec.Decode(lastSent[i]!.Value.Bytes, 1)));
                Assert.Equal(AckStatus.Duplicate, step.Admission.Status);
                replayed += step.Effects.OfType<RouteEffect>().Count();
                Deliver(step);
            }
        }
        return (coordinator, [.. vehicles.Select(v => v.Round)], replayed);

        void Deliver(RoundStep step)
        {
            foreach (var route in step.Effects.OfType<RouteEffect>())
            {
                int to = route.Message.VehicleId;
                if (route.Message.Type == lost && lostOnce.Remove(to)) continue; // lost in the broker restart
                Enqueue(to, vehicles[to].Round.OnSecAggOf(route.Message));
            }
        }

        void Enqueue(int from, IReadOnlyList<VehicleEffect> effects)
        {
            foreach (var e in effects) queue.Enqueue((from, e));
        }
    }

    [Theory]
    [InlineData(SecAggMessageType.KeyDirectory)]
    [InlineData(SecAggMessageType.ForwardedShares)]
    [InlineData(SecAggMessageType.UnmaskRequest)]
    public void ServerMessageLostForTwoVehicles_TheirResendsBringItAgain_RoundAppliedWithAllThree_ExactSum(SecAggMessageType lost)
    {
        var (coordinator, vehicles, replayed) = Run(lost);
        using (coordinator)
        {
            var applied = Assert.IsType<RoundApplied>(coordinator.Outcome);
            Assert.Equal(3, applied.Contributors.Count);
            // Vehicles 1 and 2 asked again; vehicle 0 may ask too while it waits on them (it gets a copy it ignores).
            Assert.InRange(replayed, 2, 3);
            for (int k = 0; k < Spec.ParameterCount; k++)
                Assert.Equal((Delta(0)[k] + Delta(1)[k] + Delta(2)[k]) / 3, applied.Parameters[k], 2.0 / 255);
            Assert.All(Enumerable.Range(0, 3), i => Assert.Single(_ledger.Get($"car-{i}").Rounds)); // replays charge nobody twice
            Assert.DoesNotContain(vehicles, v => v.State is Abandoned);
            foreach (var v in vehicles) v.Dispose();
        }
    }

    [Fact]
    public void ServerMessageDeliveredTwice_VehicleIgnoresTheCopy_NoDropOut()
    {
        // A QoS 1 redelivery or a replay the vehicle did not need: before, a second key directory abandoned the round
        // ("unexpected KeyDirectory message in phase AwaitingShares").
        var (coordinator, vehicles, _) = Run(SecAggMessageType.UnmaskRequest);
        using (coordinator)
        {
            Assert.IsType<RoundApplied>(coordinator.Outcome);
            foreach (var v in vehicles) v.Dispose();
        }
        var protection = Secure();
        var plan = new RoundPlan
        {
            Fleet = "test", Round = 2, ModelVersion = 0, ModelSpec = Spec.ToString(), ModelSha256 = new string('0', 64), ModelBytes = 1,
            Cohort = ["car-0", "car-1", "car-2"], Protection = protection,
            DeadlineUnixMs = (_clock.GetUtcNow() + TimeSpan.FromMinutes(5)).ToUnixTimeMilliseconds(), IssuedUnixMs = _clock.GetUtcNow().ToUnixTimeMilliseconds(),
        };
        var pipeline = protection.CreatePipeline(Spec.ParameterCount, 3);
        var registry = new DeviceKeyRegistry();
        for (int i = 0; i < 3; i++) registry.Add(i, _keys[i].ExportSubjectPublicKeyInfo());
        using var server = new SecAggServer(protection.CreateSecAggParameters(pipeline, 2, 3, SecAggSession.Id(plan.Fleet, Signed.Span)), registry, _clock);
        var joined = Enumerable.Range(0, 3).Select(i => Assert.IsType<Joined>(VehicleRound.Join(plan, Signed,
            new VehicleProfile { VehicleId = $"car-{i}", Pinned = Spec, DeviceKey = _keys[i], MaxBatch = 64 }, 0, null,
            r => new VehicleRoundRandomness(new SeededNoiseSource(1), new SeededNoiseSource(2), Guid.NewGuid()), _clock))).ToArray();
        IReadOnlyList<SecAggMessage> outbox = [];
        foreach (var j in joined) outbox = server.Receive(Assert.IsType<SendSecAggEffect>(Assert.Single(j.Effects)).Message).Outbox;
        var directory = Assert.IsType<KeyDirectoryMessage>(outbox.First(m => m.VehicleId == 0));
        Assert.IsType<ShareKeysMessage>(Assert.IsType<SendSecAggEffect>(Assert.Single(joined[0].Round.OnSecAgg(directory))).Message);
        Assert.Empty(joined[0].Round.OnSecAgg(directory)); // the copy: already answered
        Assert.IsNotType<Abandoned>(joined[0].Round.State);
        Assert.True(joined[0].Round.AwaitsServer); // now waiting for the forwarded shares
        foreach (var j in joined) j.Round.Dispose();
    }
}

internal static class VehicleRoundReplayExtensions
{
    public static IReadOnlyList<VehicleEffect> OnSecAggOf(this VehicleRound round, SecAggMessage message) => round.OnSecAgg(SecAggCodec.Decode(SecAggCodec.Encode(message), (ulong)round.Round));
}
