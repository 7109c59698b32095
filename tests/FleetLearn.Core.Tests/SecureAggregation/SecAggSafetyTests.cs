using System.Collections.Immutable;
using System.Security.Cryptography;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Core.Tests.SecureAggregation;

public sealed class SecAggSafetyTests
{
    private static UnmaskRequestMessage Request(int recipient, int[] survivors, int[] dropped)
        => new(RoundDriver.Round, recipient, [.. survivors], [.. dropped]);

    [Fact]
    public void HandleUnmaskRequest_PeerInBothSurvivorAndDroppedLists_RefusesAndAborts()
    {
        using var round = new RoundDriver(n: 5, dim: 4);
        round.RunToUnmasking(RoundDriver.DropsAt(2, 4));
        var vehicle = round.Vehicles[1];

        var e = Assert.Throws<SecAggProtocolException>(() => vehicle.HandleUnmaskRequest(Request(1, [0, 1, 2, 3], [3, 4])));

        Assert.Equal("Vehicle 1 refuses the unmask request of round 7: vehicle 3 is listed as both survivor and dropped; answering would reveal both its self-mask share and its key share.", e.Message);
        Assert.True(e.Aborted);
        Assert.Equal(SecAggVehiclePhase.Aborted, vehicle.Phase);
    }

    [Fact]
    public void HandleUnmaskRequest_SecondRequestAfterAnswering_RefusedSoNoPeerLosesBothShares()
    {
        using var round = new RoundDriver(n: 5, dim: 4);
        var requests = round.RunToUnmasking(RoundDriver.DropsAt(2, 4));
        var vehicle = round.Vehicles[1];
        var first = vehicle.HandleUnmaskRequest(requests.Single(r => r.VehicleId == 1));
        Assert.Contains(first.Shares, s => s.Peer == 3 && s.Kind == ShareKind.SelfMaskSeed);

        // A second request now asks for the key share of vehicle 3, whose self-mask share was revealed.
        var e = Assert.Throws<SecAggProtocolException>(() => vehicle.HandleUnmaskRequest(Request(1, [0, 1, 2], [3, 4])));

        Assert.Equal("Vehicle 1 refuses a second unmask request for round 7: it already revealed its shares once, and a second answer could reveal both shares of a peer.", e.Message);
    }

    [Fact]
    public void HandleUnmaskRequest_DeclaresRecipientDropped_Refused()
    {
        using var round = new RoundDriver(n: 5, dim: 4);
        round.RunToUnmasking();

        var e = Assert.Throws<SecAggProtocolException>(() => round.Vehicles[2].HandleUnmaskRequest(Request(2, [0, 1, 3, 4], [2])));

        Assert.Equal("Vehicle 2 refuses the unmask request of round 7: it declares this vehicle (2) dropped although it sent its masked input.", e.Message);
    }

    [Fact]
    public void HandleUnmaskRequest_FewerSurvivorsThanThreshold_Refused()
    {
        using var round = new RoundDriver(n: 5, dim: 4);
        round.RunToUnmasking();

        var e = Assert.Throws<SecAggProtocolException>(() => round.Vehicles[0].HandleUnmaskRequest(Request(0, [0, 1], [2, 3, 4])));

        Assert.Equal("Vehicle 0 refuses the unmask request of round 7: only 2 survivors are listed, fewer than the threshold t = 3.", e.Message);
    }

    [Fact]
    public void HandleUnmaskRequest_NamesVehicleWhoseSharesAreNotHeld_Refused()
    {
        using var round = new RoundDriver(n: 5, dim: 4);
        round.RunToUnmasking(RoundDriver.DropsAt(1, 4)); // vehicle 4 never sent shares

        var e = Assert.Throws<SecAggProtocolException>(() => round.Vehicles[0].HandleUnmaskRequest(Request(0, [0, 1, 2, 3], [4])));

        Assert.Equal("Vehicle 0 refuses the unmask request of round 7: it names vehicle 4, whose shares this vehicle does not hold.", e.Message);
    }

    [Fact]
    public void Receive_MaskedInputAfterSenderDeclaredDropped_RejectedAndNeverCounted()
    {
        using var round = new RoundDriver(n: 5, dim: 6);
        var forwarded = new List<ForwardedSharesMessage>();
        foreach (var v in round.Vehicles) round.Send(v.Start());
        foreach (var d in round.Pending.OfType<KeyDirectoryMessage>().ToList()) round.Send(round.Vehicles[d.VehicleId].HandleKeyDirectory(d));
        forwarded.AddRange(round.Pending.OfType<ForwardedSharesMessage>());
        round.Pending.Clear();
        var late = round.Vehicles[3].HandleForwardedShares(forwarded.Single(f => f.VehicleId == 3), round.Inputs[3]);
        foreach (var f in forwarded.Where(f => f.VehicleId != 3)) round.Send(round.Vehicles[f.VehicleId].HandleForwardedShares(f, round.Inputs[f.VehicleId]));
        round.CloseIfOpen(SecAggServerPhase.MaskedInputCollection); // deadline: vehicle 3 declared dropped

        var step = round.Send(late);

        Assert.False(step.Accepted);
        Assert.Equal("Masked input from vehicle 3 arrived after the MaskedInputCollection phase closed; vehicle 3 was declared dropped and its input is not counted.", step.Rejection);
        foreach (var r in round.Pending.OfType<UnmaskRequestMessage>().ToList())
            if (round.Server.Phase == SecAggServerPhase.Unmasking) round.Send(round.Vehicles[r.VehicleId].HandleUnmaskRequest(r));
        Assert.Equal(round.PlainSum([0, 1, 2, 4]), round.Server.Result!.Sum.ToArray());
        Assert.Equal([3], round.Server.Result.Dropped.ToArray());
    }

    [Fact]
    public void Validate_ModulusCannotHoldCohortSum_ThrowsNamingTheNumbers()
    {
        var p = new SecAggParameters { Round = 1, CohortSize = 100, Dimension = 10, BitWidth = 16, MaxInputValue = 1000, RoundSeed = new byte[32] };

        var e = Assert.Throws<SecAggConfigurationException>(p.Validate);

        Assert.Equal("Modulus 2^16 = 65536 cannot hold the cohort's sum without wrapping: 100 vehicles × max input 1000 = 100000 > 65535. Use a bit width of at least 17 or lower the input range.", e.Message);
    }

    [Fact]
    public void Constructor_ThresholdNotStrictMajority_ThrowsConfigurationError()
    {
        var p = new SecAggParameters { Round = 1, CohortSize = 10, Dimension = 1, BitWidth = 8, MaxInputValue = 1, Threshold = 5, RoundSeed = new byte[32] };

        var e = Assert.Throws<SecAggConfigurationException>(p.Validate);

        Assert.Equal("Threshold t = 5 must satisfy 10/2 < t ≤ 10 (strict majority of the 10 share holders of each vehicle).", e.Message);
    }

    [Fact]
    public void Receive_AdvertisementWithForgedSignature_Rejected()
    {
        using var round = new RoundDriver(n: 4, dim: 2);
        var genuine = round.Vehicles[2].Start();
        var sig = genuine.Signature.ToArray();
        sig[10] ^= 1;
        var forged = new AdvertiseKeysMessage(genuine.Round, 2, genuine.EncryptionKey, genuine.MaskingKey, [.. sig]);

        var step = round.Send(forged);

        Assert.Equal("The round keys of vehicle 2 carry an invalid device signature.", step.Rejection);
        Assert.True(round.Send(genuine).Accepted);
    }

    [Fact]
    public void Receive_AdvertisementSignedByAnotherDevice_Rejected()
    {
        using var round = new RoundDriver(n: 4, dim: 2);
        var advert = round.Vehicles[1].Start();
        // Vehicle 0 pretends to be vehicle 1 with keys it signed itself.
        var impostor = new AdvertiseKeysMessage(advert.Round, 1, advert.EncryptionKey, advert.MaskingKey,
            [.. round.DeviceKeys[0].SignData(SecAggCryptoProbe.ToBeSigned(advert), HashAlgorithmName.SHA256)]);

        Assert.Equal("The round keys of vehicle 1 carry an invalid device signature.", round.Send(impostor).Rejection);
    }

    [Fact]
    public void HandleKeyDirectory_PeerKeysSwappedByServer_VehicleAborts()
    {
        using var round = new RoundDriver(n: 4, dim: 2);
        var adverts = round.Vehicles.Select(v => v.Start()).ToArray();
        // The server substitutes vehicle 3's masking key with one of its own, keeping 3's signature.
        using var attacker = ECDiffieHellman.Create(ECCurve.NamedCurves.nistP256);
        var q = attacker.ExportParameters(false).Q;
        var swapped = new AdvertiseKeysMessage(adverts[3].Round, 3, adverts[3].EncryptionKey, [0x04, .. q.X!, .. q.Y!], adverts[3].Signature);
        var directory = new KeyDirectoryMessage(RoundDriver.Round, 0, [adverts[0], adverts[1], adverts[2], swapped]);

        var e = Assert.Throws<SecAggProtocolException>(() => round.Vehicles[0].HandleKeyDirectory(directory));

        Assert.Equal("Vehicle 0 aborted round 7: the round keys of vehicle 3 carry an invalid device signature.", e.Message);
        Assert.Equal(SecAggVehiclePhase.Aborted, round.Vehicles[0].Phase);
    }

    [Fact]
    public void HandleKeyDirectory_VehicleReusesAnotherVehiclesKeys_VehicleAborts()
    {
        using var round = new RoundDriver(n: 4, dim: 2);
        var adverts = round.Vehicles.Select(v => v.Start()).ToArray();
        // Vehicle 3 advertises vehicle 1's public keys under its own (valid) device signature.
        var copy = new AdvertiseKeysMessage(RoundDriver.Round, 3, adverts[1].EncryptionKey, adverts[1].MaskingKey,
            [.. round.DeviceKeys[3].SignData(SecAggCryptoProbe.ToBeSigned(new AdvertiseKeysMessage(RoundDriver.Round, 3, adverts[1].EncryptionKey, adverts[1].MaskingKey, adverts[3].Signature)), HashAlgorithmName.SHA256)]);
        var directory = new KeyDirectoryMessage(RoundDriver.Round, 0, [adverts[0], adverts[1], adverts[2], copy]);

        var e = Assert.Throws<SecAggProtocolException>(() => round.Vehicles[0].HandleKeyDirectory(directory));

        Assert.Equal("Vehicle 0 aborted round 7: the key directory repeats a public key (at vehicle 3).", e.Message);
    }

    [Fact]
    public void Receive_AdvertisementReusingAnotherVehiclesKeys_Rejected()
    {
        using var round = new RoundDriver(n: 4, dim: 2);
        var a1 = round.Vehicles[1].Start();
        round.Send(a1);
        var unsigned = new AdvertiseKeysMessage(RoundDriver.Round, 3, a1.EncryptionKey, a1.MaskingKey, a1.Signature);
        var copy = new AdvertiseKeysMessage(RoundDriver.Round, 3, a1.EncryptionKey, a1.MaskingKey,
            [.. round.DeviceKeys[3].SignData(SecAggCryptoProbe.ToBeSigned(unsigned), HashAlgorithmName.SHA256)]);

        Assert.Equal("Vehicle 3 advertised a public key that is already in use in round 7.", round.Send(copy).Rejection);
    }

    [Fact]
    public void Receive_UnregisteredVehicle_Rejected()
    {
        using var round = new RoundDriver(n: 4, dim: 2);
        using var registry = new DeviceKeyRegistry();
        using var server = new SecAggServer(round.Parameters, registry, round.Clock);

        var step = server.Receive(round.Vehicles[0].Start());

        Assert.Equal("Vehicle 0 is not in the device key registry.", step.Rejection);
    }

    [Fact]
    public void Receive_TamperedRevealedShare_AbortsOnCommitmentMismatch()
    {
        using var round = new RoundDriver(n: 4, dim: 3);
        var requests = round.RunToUnmasking();
        var responses = requests.Select(r => round.Vehicles[r.VehicleId].HandleUnmaskRequest(r)).ToList();
        var first = responses[0];
        var shares = first.Shares.Select(s => s.Peer == 2
            ? new RevealedShare(2, s.Kind, [.. s.Share.Take(31), (byte)(s.Share[31] ^ 1)])
            : s).ToImmutableArray();

        round.Send(new UnmaskResponseMessage(first.Round, first.VehicleId, shares));
        foreach (var r in responses.Skip(1)) if (round.Server.Phase == SecAggServerPhase.Unmasking) round.Send(r);

        Assert.Equal(SecAggServerPhase.Aborted, round.Server.Phase);
        Assert.Equal("Round 7 aborted in Unmasking: the reconstructed self-mask seed of vehicle 2 does not match its commitment (a revealed share is wrong).", round.Server.AbortReason);
    }

    [Fact]
    public void Receive_ResponseAfterCompletion_RejectedAndSumUnchanged()
    {
        using var round = new RoundDriver(n: 5, dim: 3);
        var requests = round.RunToUnmasking();
        var responses = requests.Select(r => round.Vehicles[r.VehicleId].HandleUnmaskRequest(r)).ToList();
        foreach (var r in responses.Take(3)) round.Send(r); // t = 3 responses cover every secret
        Assert.Equal(SecAggServerPhase.Completed, round.Server.Phase);

        var step = round.Send(responses[3]);

        Assert.Equal("UnmaskResponse from vehicle 3 arrived after round 7 completed.", step.Rejection);
        Assert.Equal(round.PlainSum(Enumerable.Range(0, 5)), round.Server.Result!.Sum.ToArray());
    }

    [Fact]
    public void HandleForwardedShares_InputAboveMaxInputValue_ThrowsWithoutAborting()
    {
        using var round = new RoundDriver(n: 4, dim: 2, bitWidth: 8);
        var input = new uint[] { 0, 64 }; // max input is 255 / 4 = 63

        var e = Assert.Throws<ArgumentException>(() => round.Vehicles[0].HandleForwardedShares(new ForwardedSharesMessage(RoundDriver.Round, 0, []), input));

        Assert.StartsWith("Input coordinate 1 = 64 exceeds the round's maximum input value 63; the cohort's sum could wrap.", e.Message);
        Assert.Equal(SecAggVehiclePhase.Created, round.Vehicles[0].Phase);
    }
}

/// <summary>Rebuilds the signed bytes the way the protocol defines them (internal helper exposed to tests).</summary>
internal static class SecAggCryptoProbe
{
    public static byte[] ToBeSigned(AdvertiseKeysMessage a)
        => SecAggCrypto.AdvertisementToBeSigned(a.Round, a.VehicleId, a.EncryptionKey.AsSpan(), a.MaskingKey.AsSpan());
}
