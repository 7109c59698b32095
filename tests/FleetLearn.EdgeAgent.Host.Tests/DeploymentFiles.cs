using System.Diagnostics;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using FleetLearn.Transport.Mqtt;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace FleetLearn.EdgeAgent.Host.Tests;

/// <summary>The files under edge-agent/, and the agent's own configuration pipeline to load them with.</summary>
internal static class DeploymentFiles
{
    /// <summary>Where the unit and appsettings.json point the agent's files (install.sh puts them there).</summary>
    public const string EtcFolder = "/etc/fleetlearn/";

    /// <summary>The settings that name a file the agent reads at start.</summary>
    public static readonly string[] FileSettings = ["Agent:AggregatorPublicKey", "Mqtt:CaFile", "Mqtt:CertFile", "Mqtt:KeyFile"];

    public static string RepositoryRoot { get; } = FindRepositoryRoot();

    public static string EdgeAgentFolder => Path.Combine(RepositoryRoot, "edge-agent");

    private static string FindRepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "FleetLearn.sln"))) return dir.FullName;
        }
        throw new InvalidOperationException("FleetLearn.sln not found above the test assembly.");
    }

    /// <summary>
    /// The agent's host (<see cref="AgentHost.CreateBuilder"/>) with <paramref name="contentRoot"/>'s appsettings files, as the
    /// unit runs it, plus <paramref name="environment"/> variables the way agent.env supplies them (<c>Section__Key</c>).
    /// </summary>
    public static IHost BuildHost(string contentRoot, string environmentName, IReadOnlyDictionary<string, string> environment,
        Func<IConfiguration, IReadOnlyDictionary<string, string?>>? overlay = null)
    {
        var builder = AgentHost.CreateBuilder(new HostApplicationBuilderSettings
        {
            Args = [],
            ContentRootPath = contentRoot,
            EnvironmentName = environmentName,
        });
        // What the environment-variables provider makes of agent.env's lines.
        builder.Configuration.AddInMemoryCollection(environment.Select(kv => KeyValuePair.Create(kv.Key.Replace("__", ":", StringComparison.Ordinal), (string?)kv.Value)));
        if (overlay is not null) builder.Configuration.AddInMemoryCollection(overlay(builder.Configuration));
        return builder.Build();
    }

    /// <summary>The <c>KEY=VALUE</c> lines of a systemd EnvironmentFile (comments and blank lines skipped).</summary>
    public static Dictionary<string, string> ReadEnvironmentFile(string path) =>
        File.ReadAllLines(path)
            .Where(l => l.Length > 0 && !l.StartsWith('#'))
            .Select(l => l.Split('=', 2))
            .ToDictionary(p => p[0], p => p[1], StringComparer.Ordinal);

    /// <summary>
    /// Test credentials for <paramref name="vehicle"/>: a CA, a client certificate with CN = the vehicle id and its key
    /// (SEC1 PEM, as broker-config/make-dev-ca.sh writes them), and an aggregator plan-signing public key.
    /// </summary>
    public static void WriteCredentials(string vehicle, string aggregatorKey, string caFile, string certFile, string keyFile)
    {
        foreach (var f in new[] { aggregatorKey, caFile, certFile, keyFile }) Directory.CreateDirectory(Path.GetDirectoryName(f)!);
        using (var signing = ECDsa.Create(ECCurve.NamedCurves.nistP256)) File.WriteAllText(aggregatorKey, signing.ExportSubjectPublicKeyInfoPem());
        using var caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var caRequest = new CertificateRequest("CN=test device CA", caKey, HashAlgorithmName.SHA256);
        caRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        var now = DateTimeOffset.UtcNow;
        using var ca = caRequest.CreateSelfSigned(now.AddDays(-1), now.AddDays(30));
        File.WriteAllText(caFile, ca.ExportCertificatePem());
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={vehicle}", key, HashAlgorithmName.SHA256);
        using var leaf = request.Create(ca, now.AddDays(-1), now.AddDays(30), [1, 2, 3, 4]);
        File.WriteAllText(certFile, leaf.ExportCertificatePem());
        File.WriteAllText(keyFile, key.ExportECPrivateKeyPem());
    }

    /// <summary>Every options type the agent binds, resolved: the failures, as the agent would print them at start.</summary>
    public static IReadOnlyList<string> Validate(IHost host) => AgentHost.Validate(host.Services);

    public static T Options<T>(IHost host) where T : class => host.Services.GetRequiredService<IOptions<T>>().Value;

    public static MqttTransportOptions Mqtt(IHost host) => Options<MqttTransportOptions>(host);

    /// <summary>Runs a program to its end (60 s at most) and returns its exit code and output.</summary>
    public static async Task<(int ExitCode, string Stdout, string Stderr)> RunAsync(string file, params string[] args)
    {
        using var process = Process.Start(new ProcessStartInfo(file, args) { RedirectStandardOutput = true, RedirectStandardError = true })!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(cts.Token);
        return (process.ExitCode, await stdout, await stderr);
    }
}
