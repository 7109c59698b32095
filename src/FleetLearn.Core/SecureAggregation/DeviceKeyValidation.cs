using System.Security.Cryptography;

namespace FleetLearn.Core.SecureAggregation;

/// <summary>Checks that a device key is an ECDSA P-256 public key (named curve), the only kind the protocol signs with.</summary>
public static class DeviceKeyValidation
{
    /// <summary>OID of the named curve P-256 (secp256r1, prime256v1).</summary>
    public const string P256Oid = "1.2.840.10045.3.1.7";

    /// <summary>
    /// Null when <paramref name="subjectPublicKeyInfo"/> is exactly one DER SubjectPublicKeyInfo of a P-256 point, otherwise
    /// why not. A key-size check is not enough: secp256k1 and brainpoolP256r1 keys are 256-bit too. Call it at check-in,
    /// before the key is stored, so that a bad key is a rejected message and not a failed round later.
    /// </summary>
    public static string? Check(ReadOnlySpan<byte> subjectPublicKeyInfo)
    {
        if (subjectPublicKeyInfo.IsEmpty) return "the device key is empty";
        try
        {
            using var key = ECDsa.Create();
            key.ImportSubjectPublicKeyInfo(subjectPublicKeyInfo, out int read);
            if (read != subjectPublicKeyInfo.Length) return $"the device key has {subjectPublicKeyInfo.Length - read} bytes after its SubjectPublicKeyInfo";
            var curve = key.ExportParameters(includePrivateParameters: false).Curve;
            if (!curve.IsNamed || curve.Oid.Value != P256Oid)
                return $"the device key is on curve {curve.Oid?.FriendlyName ?? curve.Oid?.Value ?? "with explicit parameters"}, not P-256";
            return null;
        }
        catch (Exception e) when (e is CryptographicException or PlatformNotSupportedException or NotSupportedException or ArgumentException)
        {
            // An SPKI naming an unknown curve OID makes OpenSSL's import throw PlatformNotSupportedException, not
            // CryptographicException (found by DecoderFuzzTests): a check that caught only the latter let it escape.
            return $"the device key is not a usable EC public key ({e.GetType().Name}: {e.Message})";
        }
    }

    /// <summary>Imports a P-256 device key; <see cref="ArgumentException"/> saying why when it is not one.</summary>
    public static ECDsa ImportP256(ReadOnlySpan<byte> subjectPublicKeyInfo)
    {
        if (Check(subjectPublicKeyInfo) is { } why) throw new ArgumentException($"Invalid device key: {why}.", nameof(subjectPublicKeyInfo));
        var key = ECDsa.Create();
        key.ImportSubjectPublicKeyInfo(subjectPublicKeyInfo, out _);
        return key;
    }
}
