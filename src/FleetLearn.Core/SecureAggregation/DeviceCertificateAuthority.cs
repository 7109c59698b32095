using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace FleetLearn.Core.SecureAggregation;

/// <summary>The fleet's device CA as a vehicle or the aggregator holds it: checks that a certificate names a given vehicle and yields its P-256 key.</summary>
/// <remarks>
/// The device key that signs a vehicle's round keys is the key of its mTLS certificate (broker-config/make-dev-ca.sh): one
/// identity, issued by the fleet operator, never by the aggregator. A certificate is accepted when it chains to this CA
/// alone (custom root trust: the system store plays no part), is valid at the injected clock's time, is not a CA, carries
/// CN = the vehicle id of its cohort slot and an ECDSA P-256 key. Revocation is the broker's (its CRL refuses the
/// connection); this check runs offline and does not consult a CRL (docs/threat-model.md).
/// </remarks>
public sealed class DeviceCertificateAuthority : IDisposable
{
    private readonly X509Certificate2 _ca;
    private readonly TimeProvider _time;

    /// <summary>Trusts <paramref name="caCertificate"/> (public part only) as the only device CA.</summary>
    public DeviceCertificateAuthority(X509Certificate2 caCertificate, TimeProvider? timeProvider = null)
    {
        ArgumentNullException.ThrowIfNull(caCertificate);
        _ca = X509CertificateLoader.LoadCertificate(caCertificate.RawData);
        _time = timeProvider ?? TimeProvider.System;
    }

    /// <summary>Trusts the CA certificate in <paramref name="pem"/> (the text of ca.crt).</summary>
    public static DeviceCertificateAuthority FromPem(string pem, TimeProvider? timeProvider = null)
    {
        using var ca = X509Certificate2.CreateFromPem(pem);
        return new DeviceCertificateAuthority(ca, timeProvider);
    }

    /// <summary>The CA certificate.</summary>
    public X509Certificate2 Certificate => _ca;

    /// <summary>Null when <paramref name="certificateDer"/> is a certificate of <paramref name="vehicleId"/> issued by this CA (and then its public key in <paramref name="key"/>), otherwise why not.</summary>
    public string? Check(ReadOnlySpan<byte> certificateDer, string vehicleId, out ECDsa? key)
    {
        key = null;
        X509Certificate2 leaf;
        try
        {
            leaf = X509CertificateLoader.LoadCertificate(certificateDer);
        }
        catch (CryptographicException e)
        {
            return $"its certificate is not a DER X.509 certificate ({e.Message})";
        }
        using (leaf)
        {
            string cn = leaf.GetNameInfo(X509NameType.SimpleName, forIssuer: false);
            if (!string.Equals(cn, vehicleId, StringComparison.Ordinal))
                return $"its certificate names '{cn}', not '{vehicleId}'";
            if (leaf.Extensions.OfType<X509BasicConstraintsExtension>().Any(b => b.CertificateAuthority))
                return "its certificate is a CA certificate, not a device certificate";
            using var chain = new X509Chain();
            chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
            chain.ChainPolicy.CustomTrustStore.Add(_ca);
            chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
            chain.ChainPolicy.DisableCertificateDownloads = true;
            chain.ChainPolicy.VerificationTime = _time.GetUtcNow().UtcDateTime;
            if (!chain.Build(leaf))
            {
                var status = string.Join("; ", chain.ChainStatus.Select(s => s.StatusInformation.Trim()).Where(s => s.Length > 0).Distinct());
                return $"its certificate '{cn}' does not chain to the fleet's device CA '{_ca.GetNameInfo(X509NameType.SimpleName, false)}' ({status})";
            }
            var root = chain.ChainElements[^1].Certificate;
            if (!root.RawData.AsSpan().SequenceEqual(_ca.RawData))
                return $"its certificate '{cn}' does not chain to the fleet's device CA";
            var spki = leaf.PublicKey.ExportSubjectPublicKeyInfo();
            if (DeviceKeyValidation.Check(spki) is { } why) return $"its certificate's key is not usable: {why}";
            key = DeviceKeyValidation.ImportP256(spki);
            return null;
        }
    }

    /// <inheritdoc/>
    public void Dispose() => _ca.Dispose();
}
