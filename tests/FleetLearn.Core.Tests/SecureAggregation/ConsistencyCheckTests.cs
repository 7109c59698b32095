using System.Security.Cryptography;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Core.Tests.SecureAggregation;

/// <summary>The ConsistencyCheck round's own checks, on both sides (issue 13 item 5).</summary>
public sealed class ConsistencyCheckTests
{
    private static (RoundDriver Round, List<ConsistencyCheckRequestMessage> Requests) ToConsistencyCheck()
    {
        var round = new RoundDriver(n: 5, dim: 3, bitWidth: 16, maliciousServer: true);
        foreach (var v in round.Vehicles) round.Send(v.Start());
        foreach (var d in round.Pending.OfType<KeyDirectoryMessage>().ToList()) round.Send(round.Vehicles[d.VehicleId].HandleKeyDirectory(d));
        var forwarded = round.Pending.OfType<ForwardedSharesMessage>().ToList();
        round.Pending.Clear();
        foreach (var f in forwarded) round.Send(round.Vehicles[f.VehicleId].HandleForwardedShares(f, round.Inputs[f.VehicleId]));
        Assert.Equal(SecAggServerPhase.ConsistencyCheck, round.Server.Phase);
        return (round, [.. round.Pending.OfType<ConsistencyCheckRequestMessage>()]);
    }

    [Fact]
    public void Server_SignatureOnAnotherSet_Rejected()
    {
        var (round, _) = ToConsistencyCheck();
        using (round)
        {
            byte[] wrong = round.DeviceKeys[1].SignData(SecAggCrypto.SurvivorSetToBeSigned(RoundDriver.Round, round.Parameters.SessionId, [0, 1, 2]), HashAlgorithmName.SHA256);

            var step = round.Server.Receive(new ConsistencySignatureMessage(RoundDriver.Round, 1, [.. wrong]));

            Assert.Equal($"Vehicle 1's signature on the survivor set of round {RoundDriver.Round} does not verify.", step.Rejection);
        }
    }

    [Fact]
    public void Server_SecondSignatureFromOneVehicle_Rejected()
    {
        var (round, requests) = ToConsistencyCheck();
        using (round)
        {
            var signed = round.Vehicles[2].HandleConsistencyCheck(requests.Single(r => r.VehicleId == 2));
            Assert.Null(round.Server.Receive(signed).Rejection);

            Assert.Equal($"Vehicle 2 already signed the survivor set of round {RoundDriver.Round}.", round.Server.Receive(signed).Rejection);
        }
    }

    [Theory]
    [InlineData(new[] { 1, 2, 3, 4 }, "does not list this vehicle (0)")]
    [InlineData(new[] { 0, 1 }, "holds only 2 of this vehicle's share holders, fewer than the threshold t = 3")]
    [InlineData(new[] { 0, 2, 1 }, "not sorted")]
    public void Vehicle_SetItMustNotSign_Aborts(int[] set, string reason)
    {
        var (round, _) = ToConsistencyCheck();
        using (round)
        {
            var request = SecAggDownlink.Sign(new ConsistencyCheckRequestMessage(RoundDriver.Round, 0, [.. set]), round.AggregatorKey, round.Parameters.SessionId);

            var e = Assert.Throws<SecAggProtocolException>(() => round.Vehicles[0].HandleConsistencyCheck(request));

            Assert.Contains(reason, e.Message, StringComparison.Ordinal);
            Assert.Equal(SecAggVehiclePhase.Aborted, round.Vehicles[0].Phase);
        }
    }

    [Fact]
    public void Vehicle_UnmaskRequestThatDropsASignedSurvivor_Refused()
    {
        var (round, requests) = ToConsistencyCheck();
        using (round)
        {
            var signatures = requests.Select(r => new SurvivorSetSignature(r.VehicleId, round.Vehicles[r.VehicleId].HandleConsistencyCheck(r).Signature)).ToList();
            // Five genuine signatures on U3 = {0..4}, but the request declares vehicle 4 dropped (and |U3| = 4).
            var request = SecAggDownlink.Sign(new UnmaskRequestMessage(RoundDriver.Round, 0, [0, 1, 2, 3], [4], 4, [.. signatures]), round.AggregatorKey, round.Parameters.SessionId);

            var e = Assert.Throws<SecAggProtocolException>(() => round.Vehicles[0].HandleUnmaskRequest(request));

            Assert.Contains("it states 4 survivors, but the survivor set this vehicle signed has 5", e.Message, StringComparison.Ordinal);
        }
    }
}
