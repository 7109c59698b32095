using System.Diagnostics;
using System.Security.Cryptography.X509Certificates;
using FleetLearn.Testing;
using FleetLearn.Transport.Mqtt.Broker;
using Microsoft.Extensions.Time.Testing;
using MQTTnet;

namespace FleetLearn.Transport.Mqtt.Tests;

/// <summary>
/// The embedded broker with mutual TLS against the device CA of broker-config/make-dev-ca.sh, and the CRL scripts
/// (renew-crl.sh, check-crl.sh). Skipped where openssl is missing, except in CI (CI=true).
/// </summary>
public sealed class EmbeddedBrokerTlsTests : IAsyncLifetime
{
    private static readonly TimeSpan Timeout = BrokerTestKit.Timeout;
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("fleetlearn-tls-");
    private readonly List<IAsyncDisposable> _owned = [];
    private string? _skip;

    private string Certs => Path.Combine(_dir.FullName, "certs");

    private static string Script(string name) => Path.Combine(MosquittoBroker.RepositoryRoot(), "broker-config", name);

    public async Task InitializeAsync()
    {
        if (!File.Exists("/usr/bin/openssl"))
        {
            if (Environment.GetEnvironmentVariable("CI") == "true") throw new InvalidOperationException("CI must have openssl (scripts/install-deps.sh).");
            _skip = "openssl is not installed";
            return;
        }
        var (code, output) = await RunAsync(Script("make-dev-ca.sh"), Certs, "car-0", "car-1");
        Assert.True(code == 0, output);
    }

    public async Task DisposeAsync()
    {
        foreach (var d in Enumerable.Reverse(_owned)) await d.DisposeAsync();
        _dir.Delete(recursive: true);
    }

    [SkippableFact]
    public async Task Connect_CertificateWithAnotherIdentitysClientId_IsRefusedAndVictimsStayConnected()
    {
        Skip.If(_skip is not null, _skip);
        var broker = await StartAsync();
        var topics = new FleetTopics(BrokerTestKit.Fleet);
        var aggregator = await ConnectAsync(broker, "aggregator");
        var received = BrokerTestKit.Collect(aggregator);
        using (var cts = new CancellationTokenSource(Timeout))
            await aggregator.SubscribeAsync(topics.AllUp, cts.Token);
        var car0 = await ConnectAsync(broker, "car-0");

        Assert.NotEqual(MqttClientConnectResultCode.Success, await RawConnectAsync(broker, "car-1", clientId: "aggregator"));
        Assert.NotEqual(MqttClientConnectResultCode.Success, await RawConnectAsync(broker, "car-1", clientId: "car-0"));
        Assert.NotEqual(MqttClientConnectResultCode.Success, await RawConnectAsync(broker, certificate: null, clientId: "car-0"));
        Assert.Equal(MqttClientConnectResultCode.Success, await RawConnectAsync(broker, "car-1", clientId: "car-1"));

        using (var cts = new CancellationTokenSource(Timeout))
            await car0.PublishAsync(topics.Up("car-0", "update"), "own"u8.ToArray(), cancellationToken: cts.Token);
        Assert.Equal("own"u8.ToArray(), (await BrokerTestKit.NextAsync(received)).Payload);
        Assert.Equal(1, aggregator.Connects);
        Assert.Equal(1, car0.Connects);
        Assert.True(broker.RefusedConnections >= 3);
    }

    [SkippableFact]
    public async Task Connect_RevokedCertificate_IsRefused()
    {
        Skip.If(_skip is not null, _skip);
        var (revoke, output) = await RunAsync("/usr/bin/openssl", "ca", "-config", Path.Combine(Certs, "ca.cnf"), "-revoke", Path.Combine(Certs, "car-1.crt"));
        Assert.True(revoke == 0, output);
        var (renew, renewOutput) = await RunAsync(Script("renew-crl.sh"), Certs);
        Assert.True(renew == 0, renewOutput);
        var broker = await StartAsync(crl: true);
        Assert.Equal(1, broker.Crl!.RevokedCount);
        Assert.NotEqual(MqttClientConnectResultCode.Success, await RawConnectAsync(broker, "car-1", clientId: "car-1"));
        Assert.Equal(MqttClientConnectResultCode.Success, await RawConnectAsync(broker, "car-0", clientId: "car-0"));
    }

    [SkippableFact]
    public async Task Crl_NearExpiry_IsCaughtByCheckScriptAndBroker_RenewalClearsIt()
    {
        Skip.If(_skip is not null, _skip);
        // A CRL that expires in an hour: Mosquitto would refuse every client an hour from now.
        var (code, output) = await RunAsync("/usr/bin/openssl", "ca", "-config", Path.Combine(Certs, "ca.cnf"), "-gencrl", "-crlhours", "1", "-out", Path.Combine(Certs, "ca.crl"));
        Assert.True(code == 0, output);
        var (check, checkOutput) = await RunAsync(Script("check-crl.sh"), Path.Combine(Certs, "ca.crl"), "7");
        Assert.Equal(1, check);
        Assert.Contains("renew", checkOutput, StringComparison.Ordinal);

        var ca = X509CertificateLoader.LoadCertificateFromFile(Path.Combine(Certs, "ca.crt"));
        var crl = CertificateRevocationList.Load(Path.Combine(Certs, "ca.crl"), ca);
        var now = DateTimeOffset.UtcNow;
        Assert.False(crl.IsStale(now));
        Assert.True(crl.NeedsRenewal(now, TimeSpan.FromDays(7)));
        Assert.True(crl.IsStale(now.AddHours(2)));

        // The embedded broker warns while it is still valid, and refuses to start with it once it is stale.
        var soon = await StartAsync(crl: true);
        Assert.True(soon.CrlNeedsRenewal);
        var later = new FakeTimeProvider(now.AddHours(2));
        var e = Assert.Throws<ArgumentException>(() => new EmbeddedBroker(Options(crl: true), time: later));
        Assert.Contains("stale", e.Message, StringComparison.Ordinal);

        var (renew, renewOutput) = await RunAsync(Script("renew-crl.sh"), Certs);
        Assert.True(renew == 0, renewOutput);
        var (recheck, recheckOutput) = await RunAsync(Script("check-crl.sh"), Path.Combine(Certs, "ca.crl"), "7");
        Assert.True(recheck == 0, recheckOutput);
        var renewed = CertificateRevocationList.Load(Path.Combine(Certs, "ca.crl"), ca);
        Assert.InRange(renewed.NextUpdate!.Value - now, TimeSpan.FromDays(29), TimeSpan.FromDays(31));
        Assert.False(renewed.NeedsRenewal(now, TimeSpan.FromDays(7)));
    }

    [SkippableFact]
    public void Crl_SignedByAnotherCa_IsRejected()
    {
        Skip.If(_skip is not null, _skip);
        using var other = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256);
        var ca = X509CertificateLoader.LoadCertificateFromFile(Path.Combine(Certs, "ca.crt"));
        var request = new CertificateRequest(ca.SubjectName, other, System.Security.Cryptography.HashAlgorithmName.SHA256);
        using var impostor = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        var e = Assert.Throws<InvalidDataException>(() => CertificateRevocationList.Load(Path.Combine(Certs, "ca.crl"), impostor));
        Assert.Contains("signature", e.Message, StringComparison.Ordinal);
    }

    [SkippableFact]
    public async Task Create_EveryInterfaceWithMutualTls_IsAllowed()
    {
        Skip.If(_skip is not null, _skip);
        var options = Options(crl: false);
        options.LoopbackOnly = false;
        await using var broker = new EmbeddedBroker(options); // constructed, not started: tests listen on loopback only
        Assert.True(broker.MutualTls);
    }

    private EmbeddedBrokerOptions Options(bool crl) => new()
    {
        Port = 0,
        TlsCertificateFile = Path.Combine(Certs, "broker.crt"),
        TlsKeyFile = Path.Combine(Certs, "broker.key"),
        ClientCaFile = Path.Combine(Certs, "ca.crt"),
        CrlFile = crl ? Path.Combine(Certs, "ca.crl") : null,
    };

    private async Task<EmbeddedBroker> StartAsync(bool crl = false)
    {
        var broker = new EmbeddedBroker(Options(crl));
        _owned.Add(broker);
        await broker.StartAsync();
        return broker;
    }

    private async Task<MqttConnection> ConnectAsync(EmbeddedBroker broker, string identity)
    {
        var connection = new MqttConnection(new MqttTransportOptions
        {
            Host = "127.0.0.1",
            Port = broker.Port,
            Fleet = BrokerTestKit.Fleet,
            ClientId = identity,
            UseTls = true,
            CaFile = Path.Combine(Certs, "ca.crt"),
            CertFile = Path.Combine(Certs, $"{identity}.crt"),
            KeyFile = Path.Combine(Certs, $"{identity}.key"),
            TlsServerName = "localhost",
            ReconnectDelay = TimeSpan.FromMilliseconds(50),
            MaxReconnectDelay = TimeSpan.FromMilliseconds(500),
            BreakDuration = TimeSpan.FromMilliseconds(500),
            ConnectTimeout = TimeSpan.FromSeconds(5),
        });
        _owned.Add(connection);
        connection.Start();
        using var cts = new CancellationTokenSource(Timeout);
        await connection.WaitUntilConnectedAsync(cts.Token);
        return connection;
    }

    /// <summary>One connect attempt with <paramref name="certificate"/>'s key pair (or none) presenting <paramref name="clientId"/>.</summary>
    private async Task<MqttClientConnectResultCode> RawConnectAsync(EmbeddedBroker broker, string? certificate, string clientId)
    {
        using var client = new MqttClientFactory().CreateMqttClient();
        X509Certificate2? cert = null;
        if (certificate is not null)
        {
            using var pem = X509Certificate2.CreateFromPemFile(Path.Combine(Certs, $"{certificate}.crt"), Path.Combine(Certs, $"{certificate}.key"));
            cert = X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null);
        }
        var options = new MqttClientOptionsBuilder().WithTcpServer("127.0.0.1", broker.Port).WithClientId(clientId)
            .WithProtocolVersion(MQTTnet.Formatter.MqttProtocolVersion.V500)
            .WithTlsOptions(t =>
            {
                t.UseTls().WithTargetHost("localhost").WithCertificateValidationHandler(_ => true);
                if (cert is not null) t.WithClientCertificates(new X509Certificate2Collection(cert));
            })
            .WithTimeout(TimeSpan.FromSeconds(5))
            .Build();
        try
        {
            using var cts = new CancellationTokenSource(Timeout);
            var result = await client.ConnectAsync(options, cts.Token);
            if (result.ResultCode == MqttClientConnectResultCode.Success) await client.DisconnectAsync();
            return result.ResultCode;
        }
        catch (Exception e) when (e is MQTTnet.Adapter.MqttConnectingFailedException or MQTTnet.Exceptions.MqttCommunicationException or OperationCanceledException)
        {
            return MqttClientConnectResultCode.NotAuthorized; // the TLS handshake was refused
        }
    }

    /// <summary>Runs a script or openssl in the certificate folder (ca.cnf's paths are relative to it).</summary>
    private async Task<(int Code, string Output)> RunAsync(string file, params string[] args)
    {
        var info = new ProcessStartInfo(file.EndsWith(".sh", StringComparison.Ordinal) ? "/bin/bash" : file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = Directory.Exists(Certs) ? Certs : _dir.FullName,
        };
        if (file.EndsWith(".sh", StringComparison.Ordinal)) info.ArgumentList.Add(file);
        foreach (var a in args) info.ArgumentList.Add(a);
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        await process.WaitForExitAsync(cts.Token);
        return (process.ExitCode, await stdout + await stderr);
    }
}
