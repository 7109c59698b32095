using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using FleetLearn.Transport.Mqtt;
using Microsoft.Extensions.Options;

namespace FleetLearn.EdgeAgent.Host;

/// <summary>
/// Checks at start what the worker would otherwise find only when it first uses it: the pinned aggregator key parses as
/// a P-256 public key (the worker loads it in its first line; a bad one would fault it after the service reported ready).
/// </summary>
internal sealed class AggregatorKeyValidator : IValidateOptions<EdgeAgentOptions>
{
    public ValidateOptionsResult Validate(string? name, EdgeAgentOptions options)
    {
        if (string.IsNullOrWhiteSpace(options.AggregatorPublicKey)) return ValidateOptionsResult.Skip; // [Required] reports it
        try
        {
            using var key = SigningKeys.LoadPublic(options.AggregatorPublicKey);
            return ValidateOptionsResult.Success;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or CryptographicException or PlatformNotSupportedException)
        {
            return ValidateOptionsResult.Fail($"Agent:AggregatorPublicKey '{Shorten(options.AggregatorPublicKey)}': {e.Message}");
        }
    }

    private static string Shorten(string pemOrPath) => pemOrPath.Contains("-----BEGIN", StringComparison.Ordinal) ? "(PEM text)" : pemOrPath;
}

/// <summary>
/// Checks the vehicle's TLS files at start: readable by the service user, the certificate and key a pair, and the
/// certificate's CN equal to the client id. Mosquitto takes the CN as the username its ACL grants <c>vehicles/%u/</c> to
/// (broker-config/), so a certificate of another name would connect and then be refused every publish, silently.
/// </summary>
internal sealed class VehicleCertificateValidator : IValidateOptions<MqttTransportOptions>
{
    public ValidateOptionsResult Validate(string? name, MqttTransportOptions options)
    {
        if (!options.UseTls) return ValidateOptionsResult.Skip;
        var failures = new List<string>();
        try
        {
            if (options.CaFile is not null && File.Exists(options.CaFile))
            {
                using var ca = X509CertificateLoader.LoadCertificateFromFile(options.CaFile);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or CryptographicException or PlatformNotSupportedException)
        {
            failures.Add($"Mqtt:CaFile '{options.CaFile}': {e.Message}");
        }
        if (options.CertFile is not null && options.KeyFile is not null && File.Exists(options.CertFile) && File.Exists(options.KeyFile))
        {
            try
            {
                using var certificate = X509Certificate2.CreateFromPemFile(options.CertFile, options.KeyFile);
                string cn = certificate.GetNameInfo(X509NameType.SimpleName, forIssuer: false);
                if (!string.IsNullOrEmpty(options.ClientId) && cn != options.ClientId)
                    failures.Add($"Mqtt:CertFile '{options.CertFile}' is issued to CN={cn}, not to this vehicle ({options.ClientId}): the broker would refuse its publishes.");
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or CryptographicException or ArgumentException or PlatformNotSupportedException)
            {
                failures.Add($"Mqtt:CertFile/KeyFile '{options.CertFile}', '{options.KeyFile}': {e.Message}");
            }
        }
        // Missing files and a lone CertFile or KeyFile are MqttTransportOptions.Validate's to report.
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}
