using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace FleetLearn.Simulation;

/// <summary>
/// A throw-away device CA for a simulated fleet over the embedded broker, written as broker-config/make-dev-ca.sh writes
/// one (ca.crt, broker.crt/.key, aggregator.crt/.key, {vehicle}.crt/.key, PEM): mutual TLS on the broker, and each
/// vehicle's certificate key is its CA-certified SecAgg device key (issue 13 item 5, <c>--secagg-malicious</c>).
/// </summary>
public static class SimulationCertificates
{
    /// <summary>The folder under a simulation's work directory that holds them.</summary>
    public const string FolderName = "certs";

    /// <summary>Writes the CA, the broker's and the aggregator's certificates and one per vehicle name into <paramref name="folder"/>.</summary>
    public static void Write(string folder, IEnumerable<string> vehicles)
    {
        ArgumentNullException.ThrowIfNull(vehicles);
        Directory.CreateDirectory(folder);
        var now = DateTimeOffset.UtcNow;
        using var caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var caRequest = new CertificateRequest("CN=FleetLearn simulated device CA", caKey, HashAlgorithmName.SHA256);
        caRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        caRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        caRequest.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(caRequest.PublicKey, false));
        using var ca = caRequest.CreateSelfSigned(now.AddDays(-1), now.AddYears(1));
        File.WriteAllText(Path.Combine(folder, "ca.crt"), ca.ExportCertificatePem());
        var names = new SubjectAlternativeNameBuilder();
        names.AddDnsName("localhost");
        names.AddIpAddress(IPAddress.Loopback);
        Issue(folder, "broker", "localhost", ca, caKey, now, "1.3.6.1.5.5.7.3.1", names.Build()); // serverAuth
        Issue(folder, "aggregator", "aggregator", ca, caKey, now, "1.3.6.1.5.5.7.3.2", null);
        foreach (var vehicle in vehicles) Issue(folder, vehicle, vehicle, ca, caKey, now, "1.3.6.1.5.5.7.3.2", null); // clientAuth
    }

    private static void Issue(string folder, string file, string commonName, X509Certificate2 ca, ECDsa caKey, DateTimeOffset now, string usage, X509Extension? alternativeNames)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={commonName}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid(usage)], false));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(ca, true, false));
        if (alternativeNames is not null) request.CertificateExtensions.Add(alternativeNames);
        Span<byte> serial = stackalloc byte[16];
        RandomNumberGenerator.Fill(serial);
        serial[0] &= 0x7F;
        using var certificate = request.Create(ca.SubjectName, X509SignatureGenerator.CreateForECDsa(caKey), now.AddDays(-1), now.AddYears(1), serial);
        File.WriteAllText(Path.Combine(folder, $"{file}.crt"), certificate.ExportCertificatePem());
        string keyPath = Path.Combine(folder, $"{file}.key");
        // Private keys are created 0600, as make-dev-ca.sh does.
        var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        using var writer = new StreamWriter(new FileStream(keyPath, options));
        writer.Write(key.ExportPkcs8PrivateKeyPem());
    }
}
