using System.Security.Cryptography;

namespace FleetLearn.Core.SecureAggregation;

/// <summary>Device keys of a cohort taken from certificates the fleet's device CA issued (issue 13 item 5): a key is known only when its certificate checks out.</summary>
/// <remarks>
/// Checked lazily, once per slot: a SecAgg+ vehicle looks up only its k neighbours, not the whole cohort. Whoever delivers
/// the certificates (the aggregator, in the plan) cannot add a vehicle: it would need the CA's key to issue a certificate
/// and the vehicle's key to sign its round keys.
/// </remarks>
public sealed class CertifiedDeviceKeyRegistry : IDeviceKeyRegistry, IDisposable
{
    private readonly DeviceCertificateAuthority _ca;
    private readonly IReadOnlyList<string> _vehicleIds;
    private readonly IReadOnlyList<byte[]> _certificates;
    private readonly Dictionary<int, (ECDsa? Key, string? Why)> _checked = [];

    /// <summary>Slot i of the cohort is vehicle <paramref name="vehicleIds"/>[i] with certificate <paramref name="certificates"/>[i] (DER).</summary>
    public CertifiedDeviceKeyRegistry(DeviceCertificateAuthority ca, IReadOnlyList<string> vehicleIds, IReadOnlyList<byte[]> certificates)
    {
        _ca = ca ?? throw new ArgumentNullException(nameof(ca));
        _vehicleIds = vehicleIds ?? throw new ArgumentNullException(nameof(vehicleIds));
        _certificates = certificates ?? throw new ArgumentNullException(nameof(certificates));
        if (vehicleIds.Count != certificates.Count)
            throw new ArgumentException($"{certificates.Count} device certificates for a cohort of {vehicleIds.Count}.", nameof(certificates));
    }

    /// <inheritdoc/>
    public ECDsa? FindDeviceKey(int vehicleId) => Lookup(vehicleId).Key;

    /// <inheritdoc/>
    public string? WhyUnknown(int vehicleId) => Lookup(vehicleId).Why;

    private (ECDsa? Key, string? Why) Lookup(int slot)
    {
        if (_checked.TryGetValue(slot, out var known)) return known;
        if (slot < 0 || slot >= _vehicleIds.Count) return (null, $"cohort slot {slot} does not exist");
        string? why = _ca.Check(_certificates[slot], _vehicleIds[slot], out var key);
        var result = (key, why is null ? null : $"vehicle {slot} ('{_vehicleIds[slot]}') is not certified by the fleet's device CA: {why}");
        _checked[slot] = result;
        return result;
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (var (key, _) in _checked.Values) key?.Dispose();
        _checked.Clear();
    }
}
