using System.Security.Cryptography;

namespace FleetLearn.Core.SecureAggregation;

/// <summary>Looks up the long-term device public key (ECDSA P-256) of a cohort member.</summary>
public interface IDeviceKeyRegistry
{
    /// <summary>The device key of <paramref name="vehicleId"/>, or null when the vehicle is unknown.</summary>
    ECDsa? FindDeviceKey(int vehicleId);

    /// <summary>Why <see cref="FindDeviceKey"/> has no key for <paramref name="vehicleId"/> (null: simply not registered).</summary>
    string? WhyUnknown(int vehicleId) => null;
}

/// <summary>In-memory registry of device public keys, filled from the aggregator's vehicle store or the round plan.</summary>
public sealed class DeviceKeyRegistry : IDeviceKeyRegistry, IDisposable
{
    private readonly Dictionary<int, ECDsa> _keys = [];
    private readonly Dictionary<int, byte[]> _deferred = [];
    private readonly Dictionary<int, string> _invalid = [];

    /// <summary>Registers a device key given as DER SubjectPublicKeyInfo; only P-256 keys are accepted (<see cref="DeviceKeyValidation"/>).</summary>
    public void Add(int vehicleId, ReadOnlySpan<byte> subjectPublicKeyInfo)
    {
        if (DeviceKeyValidation.Check(subjectPublicKeyInfo) is { } why)
            throw new ArgumentException($"Device key of vehicle {vehicleId}: {why}; P-256 is required.", nameof(subjectPublicKeyInfo));
        var key = ECDsa.Create();
        key.ImportSubjectPublicKeyInfo(subjectPublicKeyInfo, out _);
        if (_keys.Remove(vehicleId, out var old)) old.Dispose();
        _deferred.Remove(vehicleId);
        _invalid.Remove(vehicleId);
        _keys[vehicleId] = key;
    }

    /// <summary>
    /// Registers a device key to be checked and imported when it is first looked up. A vehicle of a SecAgg+ round verifies
    /// only its k neighbours' keys, so importing all n keys of the plan made every vehicle's join O(n) EC imports and a cohort
    /// of n O(n²): at n = 500 on two cores, the key phase never finished (docs/scale.md). A key that fails the P-256 check
    /// is reported by <see cref="WhyUnknown"/> and never found.
    /// </summary>
    public void AddDeferred(int vehicleId, byte[] subjectPublicKeyInfo)
    {
        ArgumentNullException.ThrowIfNull(subjectPublicKeyInfo);
        if (_keys.Remove(vehicleId, out var old)) old.Dispose();
        _invalid.Remove(vehicleId);
        _deferred[vehicleId] = subjectPublicKeyInfo;
    }

    /// <inheritdoc/>
    public ECDsa? FindDeviceKey(int vehicleId)
    {
        if (_keys.TryGetValue(vehicleId, out var key)) return key;
        if (!_deferred.Remove(vehicleId, out var spki)) return null;
        if (DeviceKeyValidation.Check(spki) is { } why)
        {
            _invalid[vehicleId] = $"device key of vehicle {vehicleId}: {why}; P-256 is required";
            return null;
        }
        key = ECDsa.Create();
        key.ImportSubjectPublicKeyInfo(spki, out _);
        return _keys[vehicleId] = key;
    }

    /// <inheritdoc/>
    public string? WhyUnknown(int vehicleId) => _invalid.GetValueOrDefault(vehicleId);

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (var k in _keys.Values) k.Dispose();
        _keys.Clear();
        _deferred.Clear();
    }
}
