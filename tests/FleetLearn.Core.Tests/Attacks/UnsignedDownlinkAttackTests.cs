using System.Security.Cryptography;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Core.Tests.Attacks;

/// <summary>
/// Issue 13 item 5: aggregator → vehicle SecAgg messages are signed with the aggregator's key, and the signature binds the
/// session (SHA-256 of the fleet id and the signed plan). A message the aggregator did not sign (injected by the broker or
/// anyone on the path) and a genuine message replayed from another fleet's or another plan's round are both refused.
/// </summary>
public sealed class UnsignedDownlinkAttackTests : IDisposable
{
    private const ulong Round = 5;
    private const int N = 4;
    private readonly ECDsa _aggregator = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    private readonly ECDsa[] _keys = [.. Enumerable.Range(0, N).Select(_ => ECDsa.Create(ECCurve.NamedCurves.nistP256))];
    private readonly DeviceKeyRegistry _registry = new();

    public UnsignedDownlinkAttackTests()
    {
        for (int u = 0; u < N; u++) _registry.Add(u, _keys[u].ExportSubjectPublicKeyInfo());
    }

    private static SecAggParameters Parameters(string fleet) => new()
    {
        Round = Round, CohortSize = N, Dimension = 2, BitWidth = 16, MaxInputValue = 100, RoundSeed = new byte[32], MaliciousServer = true,
        SessionId = SecAggSession.Id(fleet, "signed plan bytes"u8),
    };

    /// <summary>Phase 0 of a round of <paramref name="fleet"/>: vehicles that check the aggregator's key, a server that signs; returns the key directories.</summary>
    private (SecAggVehicle[] Vehicles, List<KeyDirectoryMessage> Directories) Phase0(string fleet, string vehicleFleet)
    {
        using var server = new SecAggServer(Parameters(fleet), _registry, new ManualTimeProvider(), new SecAggServerOptions { SigningKey = _aggregator });
        var vehicles = Enumerable.Range(0, N).Select(u => new SecAggVehicle(Parameters(vehicleFleet), u, _keys[u], _registry, null, _aggregator)).ToArray();
        var outbox = new List<SecAggMessage>();
        foreach (var v in vehicles) outbox.AddRange(server.Receive(v.Start()).Outbox);
        return (vehicles, [.. outbox.OfType<KeyDirectoryMessage>()]);
    }

    [Fact]
    public void UnsignedDownlink_KeyDirectoryNotSignedByTheAggregator_VehicleRefuses()
    {
        var (vehicles, directories) = Phase0("fleet-a", "fleet-a");
        var genuine = directories.Single(d => d.VehicleId == 0);
        var injected = new KeyDirectoryMessage(Round, 0, genuine.Entries);

        var e = Assert.Throws<SecAggProtocolException>(() => vehicles[0].HandleKeyDirectory(injected));

        Assert.Contains("aggregator's signature", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void UnsignedDownlink_SignedByAnotherKey_VehicleRefuses()
    {
        var (vehicles, directories) = Phase0("fleet-a", "fleet-a");
        using var other = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var forged = SecAggDownlink.Sign(new KeyDirectoryMessage(Round, 0, directories.Single(d => d.VehicleId == 0).Entries), other, Parameters("fleet-a").SessionId);

        var e = Assert.Throws<SecAggProtocolException>(() => vehicles[0].HandleKeyDirectory(forged));

        Assert.Contains("aggregator's signature", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void UnsignedDownlink_ReplayedFromAnotherFleetsRound_VehicleRefuses()
    {
        // The same aggregator key serves fleet-a and fleet-b; a fleet-b directory of the same round is replayed into fleet-a.
        var (vehicles, directories) = Phase0("fleet-b", "fleet-a");

        var e = Assert.Throws<SecAggProtocolException>(() => vehicles[0].HandleKeyDirectory(directories.Single(d => d.VehicleId == 0)));

        Assert.Contains("aggregator's signature", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void SignedDownlink_FromThisSessionsAggregator_Accepted()
    {
        var (vehicles, directories) = Phase0("fleet-a", "fleet-a");

        var shares = vehicles[0].HandleKeyDirectory(directories.Single(d => d.VehicleId == 0));

        Assert.Equal(N - 1, shares.Shares.Length);
    }

    [Fact]
    public void SignedDownlink_MaliciousServerModeWithoutTheAggregatorKey_VehicleCannotBeCreated()
    {
        var e = Assert.Throws<ArgumentException>(() => new SecAggVehicle(Parameters("fleet-a"), 0, _keys[0], _registry));

        Assert.Contains("aggregator's public key", e.Message, StringComparison.Ordinal);
    }

    public void Dispose()
    {
        _aggregator.Dispose();
        foreach (var k in _keys) k.Dispose();
        _registry.Dispose();
    }
}
