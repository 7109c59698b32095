using System.Security.Cryptography;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Simulation;

/// <summary>What a simulated fleet needs for SecAgg against a malicious aggregator: a device CA that certifies each vehicle's key, and the aggregator's signing key.</summary>
internal sealed class MaliciousAggregatorKit : IDisposable
{
    private readonly EphemeralDeviceCa _ca = EphemeralDeviceCa.Create("FleetLearn simulated device CA");
    private readonly Dictionary<int, byte[]> _certificates = [];

    public MaliciousAggregatorKit() => Authority = new DeviceCertificateAuthority(_ca.Certificate);

    /// <summary>What every vehicle trusts.</summary>
    public DeviceCertificateAuthority Authority { get; }

    /// <summary>Signs the server's SecAgg messages; vehicles check them against its public part.</summary>
    public ECDsa AggregatorKey { get; } = ECDsa.Create(ECCurve.NamedCurves.nistP256);

    /// <summary>The cohort's certified keys as a vehicle (or the aggregator) checks them: one registry per caller (not thread-safe).</summary>
    public CertifiedDeviceKeyRegistry Registry(int[] cohort, Func<int, ECDsa> deviceKey, Func<int, string> vehicleId)
    {
        var certificates = new byte[cohort.Length][];
        lock (_certificates)
            for (int i = 0; i < cohort.Length; i++)
                if (!_certificates.TryGetValue(cohort[i], out certificates[i]!))
                    _certificates[cohort[i]] = certificates[i] = _ca.Issue(vehicleId(cohort[i]), deviceKey(cohort[i]));
        return new CertifiedDeviceKeyRegistry(Authority, [.. cohort.Select(vehicleId)], certificates);
    }

    /// <summary>The round's parameters against a malicious server; the session stands for the signed plan of a real fleet.</summary>
    public static SecAggParameters Harden(SecAggParameters parameters)
        => parameters.AgainstMaliciousServer(SecAggSession.Id("simulation", [.. BitConverter.GetBytes(parameters.Round), .. parameters.RoundSeed]), 0);

    public void Dispose()
    {
        Authority.Dispose();
        AggregatorKey.Dispose();
        _ca.Dispose();
    }
}
