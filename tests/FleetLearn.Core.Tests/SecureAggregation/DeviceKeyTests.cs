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
}
