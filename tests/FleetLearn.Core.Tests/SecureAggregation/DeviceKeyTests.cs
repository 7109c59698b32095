using System.Security.Cryptography;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Core.Tests.SecureAggregation;

/// <summary>Device keys from check-ins: only ECDSA P-256 is accepted (DESIGN.md, Secure aggregation).</summary>
public sealed class DeviceKeyTests
{
    public static TheoryData<string> OtherCurves => ["secp256k1", "brainpoolP256r1", "nistP384"];

    [Theory]
    [MemberData(nameof(OtherCurves))]
    public void RegistryAdd_KeyOnAnotherCurve_IsRefused(string curve)
    {
        // secp256k1 and brainpoolP256r1 are 256-bit too: a key-size check lets them in, and the round then fails on them.
        using var key = ECDsa.Create(ECCurve.CreateFromFriendlyName(curve));
        using var registry = new DeviceKeyRegistry();
        Assert.Throws<ArgumentException>(() => registry.Add(0, key.ExportSubjectPublicKeyInfo()));
        Assert.Null(registry.FindDeviceKey(0));
    }

    [Fact]
    public void RegistryAdd_P256Key_IsAccepted()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var registry = new DeviceKeyRegistry();
        registry.Add(3, key.ExportSubjectPublicKeyInfo());
        Assert.NotNull(registry.FindDeviceKey(3));
    }

    [Fact]
    public void Check_UnknownCurveOid_SaysWhyInsteadOfThrowing()
    {
        // Found by DecoderFuzzTests: OpenSSL's import of an unknown named curve throws PlatformNotSupportedException.
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var spki = key.ExportSubjectPublicKeyInfo();
        byte[] p256 = [0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
        int at = spki.AsSpan().IndexOf(p256);
        Assert.True(at > 0);
        spki[at + 8] = 0x41; // 1.2.840.10045.3.65.7
        Assert.NotNull(DeviceKeyValidation.Check(spki));
        using var registry = new DeviceKeyRegistry();
        Assert.Throws<ArgumentException>(() => registry.Add(0, spki));
    }

    [Theory]
    [MemberData(nameof(OtherCurves))]
    public void RegistryAddDeferred_CheckedWhenLookedUp_ABadKeyIsNeverFound_AndSaysWhy_AGoodOneImportedOnce(string curve)
    {
        using var other = ECDsa.Create(ECCurve.CreateFromFriendlyName(curve));
        using var good = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var registry = new DeviceKeyRegistry();
        registry.AddDeferred(0, other.ExportSubjectPublicKeyInfo()); // a plan's key: not imported until a peer needs it
        registry.AddDeferred(1, good.ExportSubjectPublicKeyInfo());
        registry.AddDeferred(2, [1, 2, 3]);
        Assert.Null(registry.WhyUnknown(0));

        Assert.Null(registry.FindDeviceKey(0));
        Assert.Matches("^device key of vehicle 0: the device key is on curve .*, not P-256; P-256 is required$", registry.WhyUnknown(0));
        Assert.Null(registry.FindDeviceKey(0)); // still refused on a second look
        Assert.Null(registry.FindDeviceKey(2));
        Assert.StartsWith("device key of vehicle 2: the device key is not a usable EC public key", registry.WhyUnknown(2), StringComparison.Ordinal);

        var found = registry.FindDeviceKey(1);
        Assert.NotNull(found);
        Assert.Same(found, registry.FindDeviceKey(1));
        Assert.Equal(good.ExportSubjectPublicKeyInfo(), found.ExportSubjectPublicKeyInfo());
        Assert.Null(registry.FindDeviceKey(3));
        Assert.Null(registry.WhyUnknown(3));
    }
}
