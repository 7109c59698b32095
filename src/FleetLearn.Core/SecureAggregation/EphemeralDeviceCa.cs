using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace FleetLearn.Core.SecureAggregation;

/// <summary>An in-memory device CA for simulations, audits and tests; a real fleet's CA is broker-config/make-dev-ca.sh's (or the operator's, offline).</summary>
public sealed class EphemeralDeviceCa : IDisposable
{
    private readonly ECDsa _key;

    private EphemeralDeviceCa(ECDsa key, X509Certificate2 certificate)
    {
        _key = key;
        Certificate = certificate;
    }

    /// <summary>The CA certificate (what vehicles trust).</summary>
    public X509Certificate2 Certificate { get; }

    /// <summary>A fresh CA, valid from a day before <paramref name="now"/> for ten years (the same profile as make-dev-ca.sh's).</summary>
    public static EphemeralDeviceCa Create(string name = "FleetLearn ephemeral device CA", DateTimeOffset? now = null)
    {
        var at = now ?? DateTimeOffset.UtcNow;
        var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        return new EphemeralDeviceCa(key, request.CreateSelfSigned(at.AddDays(-1), at.AddYears(10)));
    }

    /// <summary>A device certificate with CN = <paramref name="vehicleId"/> (clientAuth, like make-dev-ca.sh's) and its fresh P-256 private key.</summary>
    public (ECDsa Key, byte[] Certificate) Issue(string vehicleId, DateTimeOffset? now = null)
    {
        var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        return (key, Issue(vehicleId, key, now));
    }

    /// <summary>A device certificate with CN = <paramref name="vehicleId"/> for an existing P-256 <paramref name="key"/> (DER).</summary>
    public byte[] Issue(string vehicleId, ECDsa key, DateTimeOffset? now = null)
    {
        ArgumentNullException.ThrowIfNull(key);
        var at = now ?? DateTimeOffset.UtcNow;
        var request = new CertificateRequest($"CN={vehicleId}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.2")], false));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(Certificate, true, false));
        Span<byte> serial = stackalloc byte[16];
        RandomNumberGenerator.Fill(serial);
        serial[0] &= 0x7F;
        using var certificate = request.Create(Certificate.SubjectName, X509SignatureGenerator.CreateForECDsa(_key), at.AddDays(-1), at.AddDays(825), serial);
        return certificate.RawData;
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _key.Dispose();
        Certificate.Dispose();
    }
}
