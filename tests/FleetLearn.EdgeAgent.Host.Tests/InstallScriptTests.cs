using System.Security.Cryptography;
using Microsoft.Extensions.Hosting;

namespace FleetLearn.EdgeAgent.Host.Tests;

/// <summary>
/// edge-agent/install.sh in DESTDIR mode (no user, no chown, no systemctl) into a temporary root, with certificates
/// from broker-config/make-dev-ca.sh: the tree it lays out, that a second run changes nothing, update and rollback,
/// what it refuses, and that the installed configuration is one the agent accepts. Skipped where bash or openssl is
/// missing, except in CI (CI=true), where scripts/install-deps.sh installs openssl and a missing one is a failure.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class InstallScriptTests : IAsyncLifetime
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("fleetlearn-agent-install-");
    private string? _skip;

    private string Root => Path.Combine(_dir.FullName, "root");

    private string Certs => Path.Combine(_dir.FullName, "certs");

    private string AggregatorKey => Path.Combine(_dir.FullName, "aggregator-signing.pub.pem");

    private static string Script => Path.Combine(DeploymentFiles.EdgeAgentFolder, "install.sh");

    public async Task InitializeAsync()
    {
        if (!File.Exists("/bin/bash") || !File.Exists("/usr/bin/openssl"))
        {
            if (Environment.GetEnvironmentVariable("CI") == "true")
                throw new InvalidOperationException("CI must have bash and openssl (scripts/install-deps.sh installs openssl).");
            _skip = "bash or openssl is not installed";
            return;
        }
        var made = await DeploymentFiles.RunAsync("/bin/bash", Path.Combine(DeploymentFiles.RepositoryRoot, "broker-config", "make-dev-ca.sh"), Certs, "car-7", "car-8");
        Assert.True(made.ExitCode == 0, made.Stderr);
        using var signing = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        await File.WriteAllTextAsync(AggregatorKey, signing.ExportSubjectPublicKeyInfoPem());
    }

    public Task DisposeAsync()
    {
        _dir.Delete(recursive: true);
        return Task.CompletedTask;
    }

    private string FakeBinary(string name)
    {
        string path = Path.Combine(_dir.FullName, name);
        File.WriteAllText(path, $"#!/bin/sh\necho {name}\n");
        return path;
    }

    private Task<(int ExitCode, string Stdout, string Stderr)> InstallAsync(params string[] args) =>
        DeploymentFiles.RunAsync("/bin/bash", [Script, "--destdir", Root, "--no-start", .. args]);

    private Task<(int ExitCode, string Stdout, string Stderr)> FirstInstallAsync(string binary) =>
        InstallAsync("--binary", binary, "--vehicle-id", "car-7", "--broker", "mqtt.fleet.test:8883", "--data-index", "7",
            "--certs", Certs, "--aggregator-key", AggregatorKey);

    private string At(string path) => Path.Combine(Root, path.TrimStart('/'));

    private static string Mode(string path) => Convert.ToString((int)File.GetUnixFileMode(path), 8);

    private static string Sha256(string path) => Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(path)));

    /// <summary>Every path under the root with its mode, link target and content hash.</summary>
    private List<string> Tree() =>
        [.. Directory.EnumerateFileSystemEntries(Root, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal).Select(p =>
        {
            var info = new FileInfo(p);
            string what = info.LinkTarget is { } target ? $"-> {target}" : Directory.Exists(p) ? "dir" : Sha256(p);
            return $"{Path.GetRelativePath(Root, p)} {Mode(p)} {what}";
        })];

    [SkippableFact]
    public async Task Install_IntoDestDir_LaysOutReleaseUnitConfigurationAndCertificates()
    {
        Skip.If(_skip is not null, _skip);
        string binary = FakeBinary("agent-v1");

        var result = await FirstInstallAsync(binary);

        Assert.True(result.ExitCode == 0, result.Stderr);
        string current = At("/opt/fleetlearn-agent/current");
        string release = new FileInfo(current).LinkTarget!;
        Assert.StartsWith("releases/unknown-", release, StringComparison.Ordinal);
        Assert.Equal(Sha256(binary), Sha256(Path.Combine(current, "fleetlearn-agent")));
        Assert.Equal("755", Mode(Path.Combine(current, "fleetlearn-agent")));
        Assert.False(File.Exists(At("/opt/fleetlearn-agent/previous")));

        Assert.Equal(File.ReadAllText(Path.Combine(DeploymentFiles.EdgeAgentFolder, "fleetlearn-agent.service")), File.ReadAllText(At("/etc/systemd/system/fleetlearn-agent.service")));
        Assert.Equal(File.ReadAllText(Path.Combine(DeploymentFiles.EdgeAgentFolder, "appsettings.json")), File.ReadAllText(At("/etc/fleetlearn/appsettings.json")));
        Assert.False(File.Exists(At("/etc/fleetlearn/appsettings.Development.json")));

        var env = DeploymentFiles.ReadEnvironmentFile(At("/etc/fleetlearn/agent.env"));
        Assert.Equal("car-7", env["Agent__VehicleId"]);
        Assert.Equal("mqtt.fleet.test", env["Mqtt__Host"]);
        Assert.Equal("8883", env["Mqtt__Port"]);
        Assert.Equal("7", env["VehicleData__Index"]);
        Assert.Equal("600", Mode(At("/etc/fleetlearn/agent.env")));

        Assert.Equal(Sha256(Path.Combine(Certs, "car-7.crt")), Sha256(At("/etc/fleetlearn/certs/vehicle.crt")));
        Assert.Equal(Sha256(Path.Combine(Certs, "car-7.key")), Sha256(At("/etc/fleetlearn/certs/vehicle.key")));
        Assert.Equal(Sha256(Path.Combine(Certs, "ca.crt")), Sha256(At("/etc/fleetlearn/certs/ca.crt")));
        Assert.Equal("640", Mode(At("/etc/fleetlearn/certs/vehicle.key")));
        Assert.Equal("750", Mode(At("/etc/fleetlearn/certs")));
        Assert.Equal(Sha256(AggregatorKey), Sha256(At("/etc/fleetlearn/aggregator-signing.pub.pem")));
        Assert.Equal("750", Mode(At("/var/lib/fleetlearn-agent")));
        Assert.Contains("systemctl daemon-reload  (skipped: DESTDIR)", result.Stdout, StringComparison.Ordinal);
    }

    [SkippableFact]
    public async Task Install_InstalledConfiguration_IsOneTheAgentAccepts()
    {
        Skip.If(_skip is not null, _skip);
        Assert.Equal(0, (await FirstInstallAsync(FakeBinary("agent-v1"))).ExitCode);
        // The agent as the unit starts it: content root /etc/fleetlearn, agent.env in its environment; the paths
        // under /etc/fleetlearn/ read from the temporary root instead.
        var env = DeploymentFiles.ReadEnvironmentFile(At("/etc/fleetlearn/agent.env"));
        using var host = DeploymentFiles.BuildHost(At("/etc/fleetlearn"), Environments.Production, env, configuration =>
            DeploymentFiles.FileSettings.Where(k => configuration[k] is not null)
                .ToDictionary(k => k, k => (string?)At(configuration[k]!), StringComparer.Ordinal));

        Assert.Empty(DeploymentFiles.Validate(host)); // includes: the certificate's CN is the vehicle id, key and certificate match
        Assert.Equal("car-7", DeploymentFiles.Mqtt(host).ClientId);
        Assert.Equal(8883, DeploymentFiles.Mqtt(host).Port);
    }

    [SkippableFact]
    public async Task Install_Again_ChangesNothing_ThenUpdateAndRollback()
    {
        Skip.If(_skip is not null, _skip);
        string v1 = FakeBinary("agent-v1"), v2 = FakeBinary("agent-v2");
        Assert.Equal(0, (await FirstInstallAsync(v1)).ExitCode);
        var before = Tree();

        var again = await InstallAsync("--binary", v1);
        Assert.True(again.ExitCode == 0, again.Stderr);
        Assert.Contains("(nothing changed)", again.Stderr, StringComparison.Ordinal);
        Assert.Equal(before, Tree());

        Assert.Equal(0, (await InstallAsync("--binary", v2, "--set", "Agent__EvaluationEpsilon=1.5")).ExitCode);
        string current = At("/opt/fleetlearn-agent/current"), previous = At("/opt/fleetlearn-agent/previous");
        Assert.Equal(Sha256(v2), Sha256(Path.Combine(current, "fleetlearn-agent")));
        Assert.Equal(Sha256(v1), Sha256(Path.Combine(previous, "fleetlearn-agent")));
        var env = DeploymentFiles.ReadEnvironmentFile(At("/etc/fleetlearn/agent.env"));
        Assert.Equal("1.5", env["Agent__EvaluationEpsilon"]);
        Assert.Equal("car-7", env["Agent__VehicleId"]); // kept

        var rollback = await InstallAsync("--rollback");
        Assert.True(rollback.ExitCode == 0, rollback.Stderr);
        Assert.Equal(Sha256(v1), Sha256(Path.Combine(current, "fleetlearn-agent")));
        Assert.Equal(Sha256(v2), Sha256(Path.Combine(previous, "fleetlearn-agent")));
    }

    [SkippableFact]
    public async Task Install_CertificateOfAnotherVehicle_IsRefused()
    {
        Skip.If(_skip is not null, _skip);
        string wrong = Path.Combine(_dir.FullName, "wrong");
        Directory.CreateDirectory(wrong);
        File.Copy(Path.Combine(Certs, "ca.crt"), Path.Combine(wrong, "ca.crt"));
        File.Copy(Path.Combine(Certs, "car-8.crt"), Path.Combine(wrong, "vehicle.crt"));
        File.Copy(Path.Combine(Certs, "car-8.key"), Path.Combine(wrong, "vehicle.key"));

        var result = await InstallAsync("--binary", FakeBinary("agent-v1"), "--vehicle-id", "car-7", "--broker", "b", "--data-index", "7", "--certs", wrong);

        Assert.Equal(2, result.ExitCode);
        Assert.Contains("CN=car-8", result.Stderr, StringComparison.Ordinal);
        Assert.False(Directory.Exists(At("/opt/fleetlearn-agent")));
    }

    [SkippableFact]
    public async Task Install_AggregatorKeyNotAPublicKey_IsRefusedBeforeAnythingIsInstalled()
    {
        Skip.If(_skip is not null, _skip);
        string junk = Path.Combine(_dir.FullName, "junk.pem");
        await File.WriteAllTextAsync(junk, "not a key\n");

        var result = await InstallAsync("--binary", FakeBinary("agent-v1"), "--vehicle-id", "car-7", "--broker", "b", "--data-index", "7",
            "--certs", Certs, "--aggregator-key", junk);

        Assert.Equal(2, result.ExitCode);
        Assert.Contains($"--aggregator-key {junk} is not a P-256 public key", result.Stderr, StringComparison.Ordinal);
        Assert.False(Directory.Exists(At("/opt/fleetlearn-agent")));
    }

    [SkippableFact]
    public async Task Help_ListsTheOptionsAndNothingOfTheScript()
    {
        Skip.If(_skip is not null, _skip);
        var result = await DeploymentFiles.RunAsync("/bin/bash", Script, "--help");
        Assert.Equal(0, result.ExitCode);
        Assert.Contains("--dry-run", result.Stdout, StringComparison.Ordinal);
        Assert.DoesNotContain("set -euo pipefail", result.Stdout, StringComparison.Ordinal);
    }

    [SkippableFact]
    public async Task Install_FirstWithoutVehicleSettings_IsRefusedNamingThem()
    {
        Skip.If(_skip is not null, _skip);

        var result = await InstallAsync("--binary", FakeBinary("agent-v1"));

        Assert.Equal(2, result.ExitCode);
        Assert.Contains("--vehicle-id --broker --data-index required", result.Stderr, StringComparison.Ordinal);
    }

    [SkippableFact]
    public async Task Install_DryRun_PrintsTheStepsAndWritesNothing()
    {
        Skip.If(_skip is not null, _skip);

        var result = await DeploymentFiles.RunAsync("/bin/bash", Script, "--dry-run", "--destdir", Root, "--binary", FakeBinary("agent-v1"),
            "--vehicle-id", "car-7", "--broker", "b", "--data-index", "7");

        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Contains("+ install -m 0755", result.Stdout, StringComparison.Ordinal);
        Assert.Contains("Agent__VehicleId=car-7", result.Stdout, StringComparison.Ordinal);
        Assert.False(Directory.Exists(Root));
    }

    [SkippableFact]
    public async Task Unit_AsInstalled_PassesSystemdAnalyzeVerify()
    {
        Skip.If(_skip is not null, _skip);
        Skip.IfNot(File.Exists("/usr/bin/systemd-analyze"), "systemd-analyze is not installed");
        Assert.Equal(0, (await FirstInstallAsync(FakeBinary("agent-v1"))).ExitCode);
        // verify checks that ExecStart exists: point it at the installed binary under the temporary root.
        string unit = Path.Combine(_dir.FullName, "fleetlearn-agent.service");
        await File.WriteAllTextAsync(unit, (await File.ReadAllTextAsync(At("/etc/systemd/system/fleetlearn-agent.service")))
            .Replace("ExecStart=/opt/", $"ExecStart={Root}/opt/", StringComparison.Ordinal));

        var result = await DeploymentFiles.RunAsync("/usr/bin/systemd-analyze", "verify", unit);

        // systemd < 254 warns about RestartSteps/RestartMaxDelaySec (ignored there) and still passes.
        Assert.True(result.ExitCode == 0, result.Stderr + result.Stdout);
        var complaints = result.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Where(l => !l.Contains("Unknown key 'RestartSteps'", StringComparison.Ordinal) && !l.Contains("Unknown key 'RestartMaxDelaySec'", StringComparison.Ordinal));
        Assert.Empty(complaints);
    }
}
