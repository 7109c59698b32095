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

    /// <summary>Registers a device key given as DER SubjectPublicKeyInfo; only P-256 keys are accepted (<see cref="DeviceKeyValidation"/>).</summary>
    public void Add(int vehicleId, ReadOnlySpan<byte> subjectPublicKeyInfo)
    {
        if (DeviceKeyValidation.Check(subjectPublicKeyInfo) is { } why)
            throw new ArgumentException($"Device key of vehicle {vehicleId}: {why}; P-256 is required.", nameof(subjectPublicKeyInfo));
        var key = ECDsa.Create();
        key.ImportSubjectPublicKeyInfo(subjectPublicKeyInfo, out _);
        if (_keys.Remove(vehicleId, out var old)) old.Dispose();
        _keys[vehicleId] = key;
    }

    /// <inheritdoc/>
    public ECDsa? FindDeviceKey(int vehicleId) => _keys.GetValueOrDefault(vehicleId);

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (var k in _keys.Values) k.Dispose();
        _keys.Clear();
    }
}
