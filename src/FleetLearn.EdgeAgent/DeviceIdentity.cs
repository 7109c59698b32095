using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using FleetLearn.Core.Model;
using FleetLearn.Core.Rounds;
using FleetLearn.Core.SecureAggregation;
using FleetLearn.Transport.Mqtt;

namespace FleetLearn.EdgeAgent;

/// <summary>
/// The key a vehicle signs its SecAgg messages with. With an mTLS identity (Mqtt:CaFile, CertFile, KeyFile) it is the
/// certificate's own P-256 key, the certificate travels in every check-in and the CA checks every peer's key in secure plans,
/// so an aggregator cannot invent vehicles (issue 13 item 5). Without one it is a key the agent keeps in its state folder,
/// and the plan's keys are trusted (honest-but-curious aggregator).
/// </summary>
/// <param name="Key">The device key (private).</param>
/// <param name="Certificate">DER of the vehicle's certificate, or null.</param>
/// <param name="Ca">The fleet's device CA, or null.</param>
internal sealed record DeviceIdentity(ECDsa Key, byte[]? Certificate, DeviceCertificateAuthority? Ca)
{
    /// <summary>Loads the identity the settings name; refuses a certificate that is not P-256 or not this vehicle's.</summary>
    public static DeviceIdentity Load(MqttTransportOptions mqtt, EdgeAgentOptions options)
    {
        if (mqtt.CertFile is null || mqtt.KeyFile is null || mqtt.CaFile is null)
        {
            if (options.RequireMaliciousAggregator)
                throw new InvalidOperationException("Agent:RequireMaliciousAggregator needs the vehicle's mTLS identity (Mqtt:CaFile, Mqtt:CertFile, Mqtt:KeyFile): device keys are certified by the fleet's device CA.");
            return new DeviceIdentity(SigningKeys.LoadOrCreate(options.EffectiveDeviceKeyPath), null, null);
        }
        using var certificate = X509Certificate2.CreateFromPemFile(mqtt.CertFile, mqtt.KeyFile);
        var key = certificate.GetECDsaPrivateKey()
            ?? throw new InvalidOperationException($"Mqtt:CertFile '{mqtt.CertFile}' is not an ECDSA certificate; device keys are P-256.");
        string cn = certificate.GetNameInfo(X509NameType.SimpleName, forIssuer: false);
        if (cn != options.VehicleId)
            throw new InvalidOperationException($"Mqtt:CertFile '{mqtt.CertFile}' is issued to '{cn}', not to this vehicle '{options.VehicleId}'.");
        return new DeviceIdentity(key, certificate.RawData, DeviceCertificateAuthority.FromPem(File.ReadAllText(mqtt.CaFile)));
    }

    /// <summary>What this vehicle brings to every round: id, pinned model, this key and CA, its own floors (never from the plan).</summary>
    public VehicleProfile Profile(EdgeAgentOptions options, ECDsa aggregatorKey) => new()
    {
        VehicleId = options.VehicleId,
        Pinned = ModelSpec.Parse(options.PinnedModelSpec),
        DeviceKey = Key,
        Floors = options.PrivacyFloors,
        MaxBatch = TrainerPool.MaxBatch,
        DeviceCa = Ca,
        AggregatorKey = aggregatorKey,
        RequireMaliciousAggregator = options.RequireMaliciousAggregator,
    };
}
