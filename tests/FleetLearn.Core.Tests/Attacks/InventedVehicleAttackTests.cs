using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Core.Tests.Attacks;

/// <summary>
/// Issue 13 item 5: a malicious aggregator lists cohort members whose device keys it holds ("invented vehicles"), so that
/// honest vehicles share their secrets with it. Every vehicle checks each key of its key directory against the fleet's
/// device CA (chain, CN = vehicle id, round keys signed by the certificate's key): no trust on first use.
/// </summary>
public sealed class InventedVehicleAttackTests
{
    private const ulong Round = 3;
    private static readonly string[] Cohort = ["car-0", "car-1", "car-2", "car-3"];

    private static SecAggParameters Parameters() => new()
    {
        Round = Round, CohortSize = Cohort.Length, Dimension = 4, BitWidth = 16, MaxInputValue = 100, RoundSeed = new byte[32],
    };

    /// <summary>Runs phase 0 with vehicles 0–2 genuine and "car-3" played by the aggregator with <paramref name="inventedKey"/> and <paramref name="inventedCertificate"/>.</summary>
    private static (SecAggVehicle Honest, KeyDirectoryMessage Directory) Phase0(EphemeralDeviceCa ca, ECDsa inventedKey, byte[] inventedCertificate)
    {
        var parameters = Parameters();
        var keys = new ECDsa[Cohort.Length];
        var certificates = new byte[Cohort.Length][];
        for (int u = 0; u < 3; u++) (keys[u], certificates[u]) = ca.Issue(Cohort[u]);
        (keys[3], certificates[3]) = (inventedKey, inventedCertificate);
        // What the plan carries and every vehicle checks: the cohort's certificates, against its own copy of the device CA.
        var vehicleView = new CertifiedDeviceKeyRegistry(new DeviceCertificateAuthority(ca.Certificate), Cohort, certificates);
        // The aggregator trusts whatever it listed.
        var aggregatorView = new DeviceKeyRegistry();
        for (int u = 0; u < Cohort.Length; u++) aggregatorView.Add(u, keys[u].ExportSubjectPublicKeyInfo());
        var server = new SecAggServer(parameters, aggregatorView, new ManualTimeProvider());
        var vehicles = Enumerable.Range(0, Cohort.Length).Select(u => new SecAggVehicle(parameters, u, keys[u], u == 3 ? aggregatorView : vehicleView)).ToArray();
        var outbox = new List<SecAggMessage>();
        foreach (var v in vehicles) outbox.AddRange(server.Receive(v.Start()).Outbox);
        return (vehicles[0], outbox.OfType<KeyDirectoryMessage>().Single(d => d.VehicleId == 0));
    }

    [Fact]
    public void InventedVehicle_KeyTheAggregatorHolds_HonestVehicleAbortsBeforeSharing()
    {
        using var ca = EphemeralDeviceCa.Create();
        using var invented = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var selfSigned = new CertificateRequest("CN=car-3", invented, HashAlgorithmName.SHA256).CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));
        var (honest, directory) = Phase0(ca, invented, selfSigned.RawData);

        var e = Assert.Throws<SecAggProtocolException>(() => honest.HandleKeyDirectory(directory));

        Assert.Equal(SecAggVehiclePhase.Aborted, honest.Phase);
        Assert.Contains("vehicle 3", e.Message, StringComparison.Ordinal);
        Assert.Contains("device CA", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void InventedVehicle_CertificateFromAnotherCa_HonestVehicleAborts()
    {
        using var ca = EphemeralDeviceCa.Create();
        using var rogue = EphemeralDeviceCa.Create("rogue CA");
        var (key, certificate) = rogue.Issue("car-3");
        using (key)
        {
            var (honest, directory) = Phase0(ca, key, certificate);

            var e = Assert.Throws<SecAggProtocolException>(() => honest.HandleKeyDirectory(directory));

            Assert.Contains("device CA", e.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void InventedVehicle_AnotherVehiclesCertificate_CommonNameMismatchAborts()
    {
        using var ca = EphemeralDeviceCa.Create();
        // The aggregator holds a genuine certificate (of a vehicle outside the cohort, "car-9") and lists it as car-3.
        var (key, certificate) = ca.Issue("car-9");
        using (key)
        {
            var (honest, directory) = Phase0(ca, key, certificate);

            var e = Assert.Throws<SecAggProtocolException>(() => honest.HandleKeyDirectory(directory));

            Assert.Contains("car-9", e.Message, StringComparison.Ordinal);
            Assert.Contains("car-3", e.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void InventedVehicle_GenuineCertificateButRoundKeysSignedByAnotherKey_HonestVehicleAborts()
    {
        using var ca = EphemeralDeviceCa.Create();
        // A genuine car-3 certificate, but the aggregator cannot sign with its private key: it signs the round keys with its own.
        var (genuineKey, certificate) = ca.Issue("car-3");
        genuineKey.Dispose();
        using var aggregatorKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var (honest, directory) = Phase0(ca, aggregatorKey, certificate);

        var e = Assert.Throws<SecAggProtocolException>(() => honest.HandleKeyDirectory(directory));

        Assert.Contains("invalid device signature", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void CertifiedCohort_AllCertificatesFromTheDeviceCa_KeyDirectoryAccepted()
    {
        using var ca = EphemeralDeviceCa.Create();
        var (key, certificate) = ca.Issue("car-3");
        using (key)
        {
            var (honest, directory) = Phase0(ca, key, certificate);

            var shares = honest.HandleKeyDirectory(directory);

            Assert.Equal(3, shares.Shares.Length);
            Assert.Equal(SecAggVehiclePhase.AwaitingShares, honest.Phase);
        }
    }
}
