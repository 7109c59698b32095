using System.Formats.Asn1;
using System.Numerics;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace FleetLearn.Transport.Mqtt.Broker;

/// <summary>
/// An X.509 CRL (RFC 5280 §5) of the device CA, signature verified: its validity window and revoked serial numbers. Used by
/// the embedded broker to refuse revoked vehicle certificates, and to catch a CRL that is about to expire before it makes
/// every TLS handshake fail (Mosquitto refuses all clients once <see cref="NextUpdate"/> has passed).
/// </summary>
public sealed class CertificateRevocationList
{
    private readonly HashSet<BigInteger> _revoked;

    private CertificateRevocationList(DateTimeOffset thisUpdate, DateTimeOffset? nextUpdate, HashSet<BigInteger> revoked)
    {
        ThisUpdate = thisUpdate;
        NextUpdate = nextUpdate;
        _revoked = revoked;
    }

    /// <summary>When the CA issued this CRL.</summary>
    public DateTimeOffset ThisUpdate { get; }

    /// <summary>When the CA promised the next one; after it the CRL is stale. Null when the CRL names no date (never stale).</summary>
    public DateTimeOffset? NextUpdate { get; }

    /// <summary>Revoked certificates.</summary>
    public int RevokedCount => _revoked.Count;

    /// <summary>True once <see cref="NextUpdate"/> has passed at <paramref name="now"/>.</summary>
    public bool IsStale(DateTimeOffset now) => NextUpdate is { } next && now >= next;

    /// <summary>True when the CRL is stale at <paramref name="now"/> or will be within <paramref name="margin"/>: renew it now.</summary>
    public bool NeedsRenewal(DateTimeOffset now, TimeSpan margin) => NextUpdate is { } next && now + margin >= next;

    /// <summary>Is <paramref name="certificate"/> (issued by this CRL's CA) revoked?</summary>
    public bool IsRevoked(X509Certificate2 certificate)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        return _revoked.Contains(new BigInteger(certificate.SerialNumberBytes.Span, isUnsigned: true, isBigEndian: true));
    }

    /// <summary>Reads a PEM or DER CRL from <paramref name="path"/> and verifies it against <paramref name="issuer"/>; <see cref="InvalidDataException"/> naming the file when it does not.</summary>
    public static CertificateRevocationList Load(string path, X509Certificate2 issuer)
    {
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new InvalidDataException($"CRL '{path}' cannot be read: {e.Message}", e);
        }
        try
        {
            return Parse(bytes, issuer);
        }
        catch (Exception e) when (e is AsnContentException or CryptographicException or FormatException)
        {
            throw new InvalidDataException($"CRL '{path}' is not a valid CRL: {e.Message}", e);
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"CRL '{path}': {e.Message}", e);
        }
    }

    /// <summary>Parses a PEM or DER CRL and verifies its issuer and signature against <paramref name="issuer"/>.</summary>
    public static CertificateRevocationList Parse(ReadOnlySpan<byte> bytes, X509Certificate2 issuer)
    {
        ArgumentNullException.ThrowIfNull(issuer);
        byte[] der = bytes.ToArray();
        var text = System.Text.Encoding.ASCII.GetString(der);
        if (text.Contains("-----BEGIN X509 CRL-----", StringComparison.Ordinal))
        {
            var pem = PemEncoding.Find(text);
            der = Convert.FromBase64String(text[pem.Base64Data]);
        }
        var outer = new AsnReader(der, AsnEncodingRules.DER).ReadSequence();
        var tbsBytes = outer.ReadEncodedValue().ToArray();
        string signatureAlgorithm = outer.ReadSequence().ReadObjectIdentifier();
        byte[] signature = outer.ReadBitString(out _);
        outer.ThrowIfNotEmpty();

        var tbs = new AsnReader(tbsBytes, AsnEncodingRules.DER).ReadSequence();
        if (tbs.PeekTag().HasSameClassAndValue(Asn1Tag.Integer)) tbs.ReadInteger(); // version v2
        tbs.ReadSequence(); // signature algorithm (repeats the outer one)
        var issuerName = tbs.ReadEncodedValue();
        if (!issuerName.Span.SequenceEqual(issuer.SubjectName.RawData))
            throw new InvalidDataException($"it was issued by {new X500DistinguishedName(issuerName.Span).Name}, not by {issuer.Subject}.");
        var thisUpdate = ReadTime(tbs);
        DateTimeOffset? nextUpdate = null;
        if (tbs.HasData && (tbs.PeekTag().HasSameClassAndValue(Asn1Tag.UtcTime) || tbs.PeekTag().HasSameClassAndValue(Asn1Tag.GeneralizedTime)))
            nextUpdate = ReadTime(tbs);
        var revoked = new HashSet<BigInteger>();
        if (tbs.HasData && tbs.PeekTag().HasSameClassAndValue(Asn1Tag.Sequence))
        {
            var entries = tbs.ReadSequence();
            while (entries.HasData)
            {
                var entry = entries.ReadSequence();
                revoked.Add(new BigInteger(entry.ReadIntegerBytes().Span, isUnsigned: true, isBigEndian: true));
            }
        }
        if (!Verify(issuer, signatureAlgorithm, tbsBytes, signature))
            throw new InvalidDataException($"its signature does not verify with the key of {issuer.Subject}.");
        return new CertificateRevocationList(thisUpdate, nextUpdate, revoked);
    }

    private static DateTimeOffset ReadTime(AsnReader reader) =>
        reader.PeekTag().HasSameClassAndValue(Asn1Tag.UtcTime) ? reader.ReadUtcTime() : reader.ReadGeneralizedTime();

    private static bool Verify(X509Certificate2 issuer, string algorithm, byte[] data, byte[] signature)
    {
        switch (algorithm)
        {
            case "1.2.840.10045.4.3.2" or "1.2.840.10045.4.3.3" or "1.2.840.10045.4.3.4":
            {
                using var key = issuer.GetECDsaPublicKey() ?? throw new InvalidDataException($"the CRL is ECDSA-signed but {issuer.Subject} has no EC key.");
                var hash = algorithm.EndsWith('2') ? HashAlgorithmName.SHA256 : algorithm.EndsWith('3') ? HashAlgorithmName.SHA384 : HashAlgorithmName.SHA512;
                return key.VerifyData(data, signature, hash, DSASignatureFormat.Rfc3279DerSequence);
            }
            case "1.2.840.113549.1.1.11" or "1.2.840.113549.1.1.12" or "1.2.840.113549.1.1.13":
            {
                using var key = issuer.GetRSAPublicKey() ?? throw new InvalidDataException($"the CRL is RSA-signed but {issuer.Subject} has no RSA key.");
                var hash = algorithm.EndsWith("11", StringComparison.Ordinal) ? HashAlgorithmName.SHA256 : algorithm.EndsWith("12", StringComparison.Ordinal) ? HashAlgorithmName.SHA384 : HashAlgorithmName.SHA512;
                return key.VerifyData(data, signature, hash, RSASignaturePadding.Pkcs1);
            }
            default:
                throw new InvalidDataException($"its signature algorithm {algorithm} is not supported (ECDSA or RSA with SHA-2).");
        }
    }
}
