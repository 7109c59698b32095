using System.Security.Cryptography;
using FleetLearn.Core.Rounds;
using FleetLearn.Core.SecureAggregation;
using FleetLearn.Storage;
using FleetLearn.Transport.Mqtt;

namespace FleetLearn.Aggregator.Tests;

/// <summary>With a device CA configured, a check-in must carry the vehicle's certificate (issue 13 item 5).</summary>
public sealed class FleetRosterCertificateTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("roster-ca-").FullName;
    private readonly EphemeralDeviceCa _ca = EphemeralDeviceCa.Create();

    private FleetRoster Roster(LiteDbRoundStore store) => new(store, null, null, new DeviceCertificateAuthority(_ca.Certificate));

    [Fact]
    public void CheckIn_CertificateOfThisVehicle_AcceptedAndListedInThePlan()
    {
        using var store = LiteDbRoundStore.Open(Path.Combine(_dir, "a.db"));
        var roster = Roster(store);
        var (key, certificate) = _ca.Issue("car-0");
        using (key) roster.CheckIn("car-0", new Checkin(10, key.ExportSubjectPublicKeyInfo(), certificate));

        Assert.Equal(1, roster.Count);
        var protection = new RoundProtection { DeviceCertificates = [Convert.ToBase64String(roster["car-0"].DeviceCertificate!)] };
        using var registry = (CertifiedDeviceKeyRegistry)protection.CreateDeviceKeyRegistry(["car-0"], roster.DeviceCa);
        Assert.NotNull(registry.FindDeviceKey(0));
    }

    [Fact]
    public void CheckIn_EnvelopeWithTheCertificate_DecodedAndAccepted()
    {
        // An operator's CA has a longer name than the ephemeral one; the device certificate carries it as its issuer.
        using var ca = EphemeralDeviceCa.Create("Example Fleet Operations device issuing CA 2026 for the vehicle platform of region EU central");
        using var store = LiteDbRoundStore.Open(Path.Combine(_dir, "envelope.db"));
        var roster = new FleetRoster(store, null, null, new DeviceCertificateAuthority(ca.Certificate));
        var (key, certificate) = ca.Issue("car-0");
        byte[] payload;
        using (key) payload = new Checkin(10, key.ExportSubjectPublicKeyInfo(), certificate).Encode();
        Assert.True(payload.Length > 6 + Checkin.MaxKeyBytes, $"a {payload.Length}-byte check-in fits the key-only limit; the test needs a certificate that does not");

        var envelope = roster.CheckIn("car-0", new Envelope(EnvelopeKind.Checkin, "car-0", 0, Guid.NewGuid(), payload).Encode());

        Assert.Equal(EnvelopeKind.Checkin, envelope.Kind);
        Assert.Equal(certificate, roster["car-0"].DeviceCertificate);
    }

    [Theory]
    [InlineData("none", "no device certificate")]
    [InlineData("other-vehicle", "names 'car-1', not 'car-0'")]
    [InlineData("other-key", "not its certificate's key")]
    public void CheckIn_WithoutItsOwnCertificate_Refused(string variant, string expected)
    {
        using var store = LiteDbRoundStore.Open(Path.Combine(_dir, variant + ".db"));
        var roster = Roster(store);
        var (key, certificate) = _ca.Issue(variant == "other-vehicle" ? "car-1" : "car-0");
        using var other = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using (key)
        {
            var checkin = variant switch
            {
                "none" => new Checkin(10, key.ExportSubjectPublicKeyInfo()),
                "other-key" => new Checkin(10, other.ExportSubjectPublicKeyInfo(), certificate),
                _ => new Checkin(10, key.ExportSubjectPublicKeyInfo(), certificate),
            };

            var e = Assert.Throws<WireFormatException>(() => roster.CheckIn("car-0", checkin));

            Assert.Contains(expected, e.Message, StringComparison.Ordinal);
            Assert.Equal(0, roster.Count);
        }
    }

    public void Dispose()
    {
        _ca.Dispose();
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }
}
