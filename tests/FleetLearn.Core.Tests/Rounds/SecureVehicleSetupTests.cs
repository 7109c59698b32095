using System.Security.Cryptography;
using FleetLearn.Core.Rounds;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Core.Tests.Rounds;

/// <summary>The vehicle side of a malicious-aggregator round, built from the signed plan the way a vehicle runner must.</summary>
public sealed class SecureVehicleSetupTests : IDisposable
{
    private const string Fleet = "fleet-a";
    private static readonly string[] Cohort = ["car-0", "car-1", "car-2", "car-3"];
    private static readonly byte[] SignedPlan = "the signed plan's bytes"u8.ToArray();
    private readonly EphemeralDeviceCa _ca = EphemeralDeviceCa.Create();
    private readonly DeviceCertificateAuthority _authority;
    private readonly ECDsa _aggregator = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    private readonly ECDsa[] _keys;
    private readonly byte[][] _certificates;

    public SecureVehicleSetupTests()
    {
        _authority = new DeviceCertificateAuthority(_ca.Certificate);
        _keys = new ECDsa[Cohort.Length];
        _certificates = new byte[Cohort.Length][];
        for (int i = 0; i < Cohort.Length; i++) (_keys[i], _certificates[i]) = _ca.Issue(Cohort[i]);
    }

    private RoundPlan Plan(bool malicious) => new()
    {
        Fleet = Fleet, Round = 6, ModelVersion = 1, ModelSpec = "4-2", ModelSha256 = "", ModelBytes = 1, Cohort = Cohort,
        DeadlineUnixMs = 1, IssuedUnixMs = 0,
        Protection = new RoundProtection
        {
            Codec = "q8", SecureAggregation = "full", ClipNorm = 1, Noise = "distributed", NoiseMultiplier = 1, VehicleNoiseStdDev = 0.5, MinNoiseShares = 4,
            UniformWeights = true, SecAggRoundSeed = Convert.ToBase64String(new byte[32]), MaliciousAggregator = malicious,
            DeviceKeys = [.. _keys.Select(k => Convert.ToBase64String(k.ExportSubjectPublicKeyInfo()))],
            DeviceCertificates = [.. _certificates.Select(Convert.ToBase64String)],
        },
    };

    [Fact]
    public void Create_MaliciousAggregatorPlan_FullRoundThroughConsistencyCheckSumsExactly()
    {
        var plan = Plan(malicious: true);
        var protection = plan.Protection!;
        var pipeline = protection.CreatePipeline(10, Cohort.Length);
        var parameters = protection.CreateSecAggParameters(pipeline, plan.Round, Cohort.Length, SecAggSession.Id(Fleet, SignedPlan));
        using var serverRegistry = (CertifiedDeviceKeyRegistry)protection.CreateDeviceKeyRegistry(Cohort, _authority);
        using var server = new SecAggServer(parameters, serverRegistry, new ManualTimeProvider(), new SecAggServerOptions { SigningKey = _aggregator });
        var rounds = Enumerable.Range(0, Cohort.Length).Select(i => SecureVehicleSetup.Create(plan, SignedPlan, Cohort[i], _keys[i], _authority, _aggregator)).ToArray();
        try
        {
            // Distributed discrete Gaussian: the charge is the σ equivalent of what is added, below σ = 1.
            Assert.All(rounds, r => Assert.Equal(protection.Charge(pipeline, plan.Round), r.Charge));
            Assert.InRange(rounds[0].Charge!.Value.NoiseMultiplier, 0.01, 0.999);
            var down = rounds.SelectMany(r => server.Receive(r.Vehicle.Start()).Outbox).ToList();
            down = [.. down.Cast<KeyDirectoryMessage>().SelectMany(d => server.Receive(rounds[d.VehicleId].Vehicle.HandleKeyDirectory(d)).Outbox)];
            var input = Enumerable.Repeat(1u, parameters.Dimension).ToArray(); // signed inputs mod 2^m: the sum is 4 per coordinate
            down = [.. down.Cast<ForwardedSharesMessage>().SelectMany(f => server.Receive(rounds[f.VehicleId].Vehicle.HandleForwardedShares(f, input)).Outbox)];
            Assert.All(down, m => Assert.IsType<ConsistencyCheckRequestMessage>(m));
            down = [.. down.Cast<ConsistencyCheckRequestMessage>().SelectMany(c => server.Receive(rounds[c.VehicleId].Vehicle.HandleConsistencyCheck(c)).Outbox)];
            foreach (var u in down.Cast<UnmaskRequestMessage>()) server.Receive(rounds[u.VehicleId].Vehicle.HandleUnmaskRequest(u));

            Assert.Equal(SecAggServerPhase.Completed, server.Phase);
            Assert.All(server.Result!.Sum.ToArray(), v => Assert.Equal(4u, v));
        }
        finally
        {
            foreach (var r in rounds) r.Dispose();
        }
    }

    [Fact]
    public void Create_VehicleRequiresMaliciousModeButPlanIsHonestButCurious_Refused()
    {
        var e = Assert.Throws<WireFormatException>(() => SecureVehicleSetup.Create(Plan(malicious: false), SignedPlan, "car-0", _keys[0], _authority, _aggregator, requireMaliciousAggregatorMode: true));

        Assert.Contains("malicious aggregator", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Create_OwnSlotCarriesAnotherVehiclesCertificate_Refused()
    {
        using var other = ECDsa.Create(ECCurve.NamedCurves.nistP256);

        var e = Assert.Throws<WireFormatException>(() => SecureVehicleSetup.Create(Plan(malicious: true), SignedPlan, "car-0", other, _authority, _aggregator));

        Assert.Contains("another device key", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Create_NotInTheCohort_Refused()
    {
        var e = Assert.Throws<WireFormatException>(() => SecureVehicleSetup.Create(Plan(malicious: true), SignedPlan, "car-9", _keys[0], _authority, _aggregator));

        Assert.Contains("not in the cohort", e.Message, StringComparison.Ordinal);
    }

    public void Dispose()
    {
        foreach (var k in _keys) k.Dispose();
        _aggregator.Dispose();
        _authority.Dispose();
        _ca.Dispose();
    }
}
