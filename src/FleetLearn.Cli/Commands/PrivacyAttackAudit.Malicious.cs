using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using FleetLearn.Core.Rounds;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Cli.Commands;

/// <summary>Issue 13 item 5: a malicious aggregator against the real SecAggServer/SecAggVehicle state machines.</summary>
internal static partial class PrivacyAttackAudit
{
    /// <summary>The aggregator lists "car-3" with a key and certificate of its own; honest vehicles check the cohort's certificates against the device CA.</summary>
    private static AttackOutcome InventedVehicle(string name)
    {
        string[] cohort = ["car-0", "car-1", "car-2", "car-3"];
        var parameters = new SecAggParameters { Round = 1, CohortSize = 4, Dimension = 4, BitWidth = 16, MaxInputValue = 100, RoundSeed = new byte[32] };
        using var ca = EphemeralDeviceCa.Create();
        using var invented = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var selfSigned = new CertificateRequest("CN=car-3", invented, HashAlgorithmName.SHA256).CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));
        var keys = new ECDsa[4];
        var certificates = new byte[4][];
        for (int u = 0; u < 3; u++) (keys[u], certificates[u]) = ca.Issue(cohort[u]);
        (keys[3], certificates[3]) = (invented, selfSigned.RawData);
        var plan = new RoundProtection
        {
            DeviceKeys = [.. keys.Select(k => Convert.ToBase64String(k.ExportSubjectPublicKeyInfo()))],
            DeviceCertificates = [.. certificates.Select(Convert.ToBase64String)],
        };
        using var deviceCa = new DeviceCertificateAuthority(ca.Certificate);
        using var vehicleView = (CertifiedDeviceKeyRegistry)plan.CreateDeviceKeyRegistry(cohort, deviceCa);
        using var aggregatorView = (DeviceKeyRegistry)plan.CreateDeviceKeyRegistry(cohort, null);
        using var server = new SecAggServer(parameters, aggregatorView, new ManualTimeProvider());
        var vehicles = Enumerable.Range(0, 4).Select(u => new SecAggVehicle(parameters, u, keys[u], u == 3 ? aggregatorView : vehicleView)).ToArray();
        try
        {
            var directories = vehicles.SelectMany(v => server.Receive(v.Start()).Outbox).OfType<KeyDirectoryMessage>().ToList();
            try
            {
                vehicles[0].HandleKeyDirectory(directories.Single(d => d.VehicleId == 0));
                return AttackOutcome.Succeeded(name, "vehicle 0 shared its secrets with a cohort member whose key the aggregator holds");
            }
            catch (SecAggProtocolException e)
            {
                return AttackOutcome.Refused(name, $"the aggregator listed car-3 with a self-signed certificate: {e.Message}");
            }
        }
        finally
        {
            foreach (var v in vehicles) v.Dispose();
            for (int u = 0; u < 3; u++) keys[u].Dispose();
        }
    }

    /// <summary>
    /// Complete graph, n = 5, t = 3: every masked input arrives, then the aggregator shows each vehicle another survivor set so
    /// that it gets the self-mask seeds of 0 and 1 and the masking keys of 2, 3 and 4, i.e. x₀ + x₁ alone. Run in both modes.
    /// </summary>
    private static AttackOutcome InconsistentDropouts(string name)
    {
        int answeredCurious = InconsistentDropoutsAnswers(malicious: false, out _);
        int answeredMalicious = InconsistentDropoutsAnswers(malicious: true, out var reason);
        string detail = $"a different survivor set per vehicle to unmask x0 + x1 alone: in malicious-server mode {answeredMalicious} of 5 vehicles revealed shares ({reason}); "
            + $"in honest-but-curious mode (no ConsistencyCheck) {answeredCurious} of 5 would";
        return answeredMalicious == 0 ? AttackOutcome.Refused(name, detail) : AttackOutcome.Succeeded(name, detail);
    }

    private static int InconsistentDropoutsAnswers(bool malicious, out string? firstRefusal)
    {
        const int n = 5;
        int[][] views = [[0, 1, 2], [0, 1, 3], [0, 1, 2], [0, 1, 3], [0, 1, 4]];
        var session = SecAggSession.Id("audit", "plan"u8);
        var parameters = new SecAggParameters
        {
            Round = 2, CohortSize = n, Dimension = 3, BitWidth = 16, MaxInputValue = 1000, RoundSeed = new byte[32], MinNoiseShares = 3,
            MaliciousServer = malicious, SessionId = session,
        };
        using var aggregator = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var registry = new DeviceKeyRegistry();
        var keys = Enumerable.Range(0, n).Select(_ => ECDsa.Create(ECCurve.NamedCurves.nistP256)).ToArray();
        for (int u = 0; u < n; u++) registry.Add(u, keys[u].ExportSubjectPublicKeyInfo());
        var clock = new ManualTimeProvider();
        var vehicles = Enumerable.Range(0, n).Select(u => new SecAggVehicle(parameters, u, keys[u], registry, clock, aggregator)).ToArray();
        using var server = new SecAggServer(parameters, registry, clock, new SecAggServerOptions { SigningKey = aggregator });
        try
        {
            var directories = vehicles.SelectMany(v => server.Receive(v.Start()).Outbox).OfType<KeyDirectoryMessage>().ToList();
            var forwarded = directories.SelectMany(d => server.Receive(vehicles[d.VehicleId].HandleKeyDirectory(d)).Outbox).OfType<ForwardedSharesMessage>().ToList();
            foreach (var f in forwarded) server.Receive(vehicles[f.VehicleId].HandleForwardedShares(f, [1, 2, 3]));
            var signatures = new Dictionary<string, List<SurvivorSetSignature>>();
            if (malicious)
                for (int v = 0; v < n; v++)
                {
                    var signed = vehicles[v].HandleConsistencyCheck(SecAggDownlink.Sign(new ConsistencyCheckRequestMessage(2, v, [.. views[v]]), aggregator, session));
                    string key = string.Join(',', views[v]);
                    (signatures.TryGetValue(key, out var list) ? list : signatures[key] = []).Add(new SurvivorSetSignature(v, signed.Signature));
                }
            int answered = 0;
            firstRefusal = null;
            for (int v = 0; v < n; v++)
            {
                int[] dropped = [.. Enumerable.Range(0, n).Except(views[v])];
                var request = new UnmaskRequestMessage(2, v, [.. views[v]], [.. dropped], 3, malicious ? [.. signatures[string.Join(',', views[v])]] : []);
                try
                {
                    vehicles[v].HandleUnmaskRequest(SecAggDownlink.Sign(request, aggregator, session));
                    answered++;
                }
                catch (SecAggProtocolException e)
                {
                    firstRefusal ??= e.Message;
                }
            }
            return answered;
        }
        finally
        {
            foreach (var v in vehicles) v.Dispose();
            foreach (var k in keys) k.Dispose();
        }
    }

    /// <summary>A key directory injected without the aggregator's signature, and a genuine one replayed from another fleet's round.</summary>
    private static AttackOutcome UnsignedDownlink(string name)
    {
        const int n = 4;
        using var aggregator = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var registry = new DeviceKeyRegistry();
        var keys = Enumerable.Range(0, n).Select(_ => ECDsa.Create(ECCurve.NamedCurves.nistP256)).ToArray();
        for (int u = 0; u < n; u++) registry.Add(u, keys[u].ExportSubjectPublicKeyInfo());
        SecAggParameters Parameters(string fleet) => new()
        {
            Round = 3, CohortSize = n, Dimension = 2, BitWidth = 16, MaxInputValue = 100, RoundSeed = new byte[32], MaliciousServer = true,
            SessionId = SecAggSession.Id(fleet, "plan"u8),
        };
        var refusals = new List<string>();
        foreach (var (serverFleet, forge) in new[] { ("fleet-a", true), ("fleet-b", false) })
        {
            using var server = new SecAggServer(Parameters(serverFleet), registry, new ManualTimeProvider(), new SecAggServerOptions { SigningKey = aggregator });
            var vehicles = Enumerable.Range(0, n).Select(u => new SecAggVehicle(Parameters("fleet-a"), u, keys[u], registry, null, aggregator)).ToArray();
            var directory = vehicles.SelectMany(v => server.Receive(v.Start()).Outbox).OfType<KeyDirectoryMessage>().Single(d => d.VehicleId == 0);
            try
            {
                vehicles[0].HandleKeyDirectory(forge ? new KeyDirectoryMessage(3, 0, directory.Entries) : directory);
            }
            catch (SecAggProtocolException e)
            {
                refusals.Add(e.Message);
            }
            foreach (var v in vehicles) v.Dispose();
        }
        foreach (var k in keys) k.Dispose();
        string detail = $"an unsigned key directory and one replayed from fleet-b's round into fleet-a's: {refusals.Count} of 2 refused{(refusals.Count > 0 ? $" ({refusals[0]})" : "")}";
        return refusals.Count == 2 ? AttackOutcome.Refused(name, detail) : AttackOutcome.Succeeded(name, detail);
    }
}
