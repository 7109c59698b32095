using System.Security.Cryptography;
using FleetLearn.Core.Rounds;
using FleetLearn.Core.SecureAggregation;
using FleetLearn.Transport.Mqtt;

namespace FleetLearn.Transport.Mqtt.Tests.Attacks;

/// <summary>
/// Issue 13 item 2: under distributed DP the sum carries enough noise only with at least MinNoiseShares contributions;
/// a round with fewer survivors (but still ≥ t) must never be unmasked — neither by the server nor with the vehicles' help.
/// </summary>
public sealed class NoiseShareAttackTests
{
    private const int Cohort = 6;
    private const int MinShares = 5;

    private static RoundProtection Protection() => new()
    {
        Codec = "q8", SecureAggregation = "full", ClipNorm = 1.0, Noise = "distributed", NoiseMultiplier = 1.0,
        VehicleNoiseStdDev = 1.0 / Math.Sqrt(MinShares), MinNoiseShares = MinShares, UniformWeights = true,
        SecAggRoundSeed = Convert.ToBase64String(new byte[32]), PhaseTimeoutMs = 1000,
    };

    private sealed class Round : IDisposable
    {
        public Round()
        {
            var protection = Protection();
            var pipeline = protection.CreatePipeline(dimension: 4, Cohort);
            Parameters = protection.CreateSecAggParameters(pipeline, 9, Cohort);
            Keys = [.. Enumerable.Range(0, Cohort).Select(_ => ECDsa.Create(ECCurve.NamedCurves.nistP256))];
            for (int u = 0; u < Cohort; u++) Registry.Add(u, Keys[u].ExportSubjectPublicKeyInfo());
            Vehicles = [.. Enumerable.Range(0, Cohort).Select(u => new SecAggVehicle(Parameters, u, Keys[u], Registry, Clock))];
            Server = new SecAggServer(Parameters, Registry, Clock);
        }

        public SecAggParameters Parameters { get; }
        public ManualTimeProvider Clock { get; } = new();
        public DeviceKeyRegistry Registry { get; } = new();
        public ECDsa[] Keys { get; }
        public SecAggVehicle[] Vehicles { get; }
        public SecAggServer Server { get; }

        /// <summary>Runs phases 0–2 with <paramref name="dropBeforeMasked"/> silent in phase 2; returns what the server sent next.</summary>
        public List<SecAggMessage> RunToUnmasking(params int[] dropBeforeMasked)
        {
            var outbox = new List<SecAggMessage>();
            foreach (var v in Vehicles) outbox.AddRange(Server.Receive(v.Start()).Outbox);
            var next = new List<SecAggMessage>();
            foreach (var d in outbox.OfType<KeyDirectoryMessage>()) next.AddRange(Server.Receive(Vehicles[d.VehicleId].HandleKeyDirectory(d)).Outbox);
            var after = new List<SecAggMessage>();
            foreach (var f in next.OfType<ForwardedSharesMessage>())
            {
                if (dropBeforeMasked.Contains(f.VehicleId)) continue;
                after.AddRange(Server.Receive(Vehicles[f.VehicleId].HandleForwardedShares(f, new uint[Parameters.Dimension])).Outbox);
            }
            Clock.Advance(Parameters.PhaseTimeout);
            after.AddRange(Server.Tick().Outbox);
            return after;
        }

        public void Dispose()
        {
            foreach (var v in Vehicles) v.Dispose();
            foreach (var k in Keys) k.Dispose();
            Server.Dispose();
            Registry.Dispose();
        }
    }

    [Fact]
    public void DistributedDpReleasedWithLessNoise_FewerSurvivorsThanNoiseShares_ServerAbortsBeforeUnmasking()
    {
        using var round = new Round();
        Assert.Equal(4, round.Parameters.EffectiveThreshold);
        var sent = round.RunToUnmasking(4, 5); // 4 survivors: ≥ t = 4, < 5 noise shares

        Assert.Empty(sent.OfType<UnmaskRequestMessage>());
        Assert.Equal(SecAggServerPhase.Aborted, round.Server.Phase);
        Assert.Contains("noise shares", round.Server.AbortReason, StringComparison.Ordinal);
    }

    [Fact]
    public void DistributedDpReleasedWithLessNoise_RequestListsFewerSurvivorsThanNoiseShares_VehicleRefusesToUnmask()
    {
        using var round = new Round();
        round.RunToUnmasking(4, 5);
        // The aggregator ignores its own check and asks anyway.
        var request = new UnmaskRequestMessage(9, 0, [0, 1, 2, 3], [4, 5]);

        var e = Assert.Throws<SecAggProtocolException>(() => round.Vehicles[0].HandleUnmaskRequest(request));

        Assert.Contains("noise shares", e.Message, StringComparison.Ordinal);
    }
}
