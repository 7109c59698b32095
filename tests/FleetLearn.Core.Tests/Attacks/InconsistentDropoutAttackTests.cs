using System.Collections.Immutable;
using System.Security.Cryptography;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Core.Tests.Attacks;

/// <summary>
/// Issue 13 item 5: a malicious aggregator lies about dropouts, telling each vehicle a different survivor set, so that it
/// collects the self-mask seeds of vehicles 0 and 1 and the masking keys of vehicles 2, 3 and 4, and unmasks x₀ + x₁ alone:
/// a sum of two inputs (fewer than t = 3, and two noise shares where three were promised). Every single request is
/// well-formed (3 survivors ≥ t, nobody both survivor and dropped), so only Bonawitz et al.'s ConsistencyCheck round can
/// catch it: a vehicle reveals shares only with t signatures of its holders on the one survivor set it signed.
/// </summary>
public sealed class InconsistentDropoutAttackTests
{
    private const ulong Round = 11;
    private const int N = 5;

    // Vehicle v's view: survivors S_v (always itself and the targets 0 and 1) and dropped D_v.
    private static readonly int[][] Views = [[0, 1, 2], [0, 1, 3], [0, 1, 2], [0, 1, 3], [0, 1, 4]];

    private static SecAggParameters Parameters() => new()
    {
        Round = Round, CohortSize = N, Dimension = 3, BitWidth = 16, MaxInputValue = 1000, RoundSeed = new byte[32],
        MinNoiseShares = 3, MaliciousServer = true, PhaseTimeout = TimeSpan.FromSeconds(10),
    };

    [Fact]
    public void AggregatorLiesAboutDropouts_DifferentSurvivorSetsPerVehicle_NoVehicleRevealsAShare()
    {
        var parameters = Parameters();
        var clock = new ManualTimeProvider();
        using var registry = new DeviceKeyRegistry();
        var keys = Enumerable.Range(0, N).Select(_ => ECDsa.Create(ECCurve.NamedCurves.nistP256)).ToArray();
        for (int u = 0; u < N; u++) registry.Add(u, keys[u].ExportSubjectPublicKeyInfo());
        using var aggregator = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var vehicles = Enumerable.Range(0, N).Select(u => new SecAggVehicle(parameters, u, keys[u], registry, clock, aggregator)).ToArray();
        using var server = new SecAggServer(parameters, registry, clock, new SecAggServerOptions { SigningKey = aggregator });

        // Phases 0–2 run honestly: everyone's masked input reaches the aggregator.
        var outbox = new List<SecAggMessage>();
        foreach (var v in vehicles) outbox.AddRange(server.Receive(v.Start()).Outbox);
        var next = new List<SecAggMessage>();
        foreach (var d in outbox.OfType<KeyDirectoryMessage>()) next.AddRange(server.Receive(vehicles[d.VehicleId].HandleKeyDirectory(d)).Outbox);
        foreach (var f in next.OfType<ForwardedSharesMessage>()) server.Receive(vehicles[f.VehicleId].HandleForwardedShares(f, [1, 2, 3]));

        // The aggregator then shows each vehicle its own survivor set and gathers whatever signatures that earns.
        var signatures = new Dictionary<string, List<SurvivorSetSignature>>();
        for (int v = 0; v < N; v++)
        {
            var signed = vehicles[v].HandleConsistencyCheck(SecAggDownlink.Sign(new ConsistencyCheckRequestMessage(Round, v, [.. Views[v]]), aggregator, parameters.SessionId));
            var key = string.Join(',', Views[v]);
            (signatures.TryGetValue(key, out var list) ? list : signatures[key] = []).Add(new SurvivorSetSignature(v, signed.Signature));
        }

        int revealed = 0;
        var refusals = new List<string>();
        for (int v = 0; v < N; v++)
        {
            var survivors = Views[v];
            int[] dropped = [.. Enumerable.Range(0, N).Except(survivors)];
            var request = SecAggDownlink.Sign(new UnmaskRequestMessage(Round, v, [.. survivors], [.. dropped], survivors.Length, [.. signatures[string.Join(',', survivors)]]), aggregator, parameters.SessionId);
            try
            {
                revealed += vehicles[v].HandleUnmaskRequest(request).Shares.Length;
            }
            catch (SecAggProtocolException e)
            {
                refusals.Add(e.Message);
            }
        }

        Assert.Equal(0, revealed);
        Assert.Equal(N, refusals.Count);
        Assert.All(refusals, r => Assert.Contains("signatures", r, StringComparison.Ordinal));
        foreach (var k in keys) k.Dispose();
    }

    [Fact]
    public void AggregatorLiesAboutDropouts_UnmaskWithoutConsistencyRound_Refused()
    {
        var parameters = Parameters();
        var clock = new ManualTimeProvider();
        using var registry = new DeviceKeyRegistry();
        var keys = Enumerable.Range(0, N).Select(_ => ECDsa.Create(ECCurve.NamedCurves.nistP256)).ToArray();
        for (int u = 0; u < N; u++) registry.Add(u, keys[u].ExportSubjectPublicKeyInfo());
        using var aggregator = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var vehicles = Enumerable.Range(0, N).Select(u => new SecAggVehicle(parameters, u, keys[u], registry, clock, aggregator)).ToArray();
        using var server = new SecAggServer(parameters, registry, clock, new SecAggServerOptions { SigningKey = aggregator });
        var outbox = new List<SecAggMessage>();
        foreach (var v in vehicles) outbox.AddRange(server.Receive(v.Start()).Outbox);
        var next = new List<SecAggMessage>();
        foreach (var d in outbox.OfType<KeyDirectoryMessage>()) next.AddRange(server.Receive(vehicles[d.VehicleId].HandleKeyDirectory(d)).Outbox);
        foreach (var f in next.OfType<ForwardedSharesMessage>()) server.Receive(vehicles[f.VehicleId].HandleForwardedShares(f, [1, 2, 3]));

        // Skipping the consistency round: an unmask request straight after the masked input.
        var e = Assert.ThrowsAny<SecAggProtocolException>(() => vehicles[0].HandleUnmaskRequest(SecAggDownlink.Sign(new UnmaskRequestMessage(Round, 0, [0, 1, 2], [3, 4]), aggregator, parameters.SessionId)));

        Assert.Contains("ConsistencyCheck", e.Message, StringComparison.Ordinal);
        foreach (var k in keys) k.Dispose();
    }
}
