using System.Globalization;
using FleetLearn.Transport.Mqtt;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;

namespace FleetLearn.EdgeAgent.Host.Tests;

/// <summary>
/// edge-agent/appsettings.json and appsettings.Development.json, loaded through the agent's own host builder and
/// validated as the agent validates them at start: a renamed or removed option fails here, not on a vehicle.
/// </summary>
public sealed class AgentSettingsTests : IDisposable
{
    /// <summary>What install.sh writes to agent.env on a first install (--vehicle-id, --broker, --data-index).</summary>
    private static readonly Dictionary<string, string> VehicleEnvironment = new(StringComparer.Ordinal)
    {
        ["Agent__VehicleId"] = "car-7",
        ["Mqtt__Host"] = "mqtt.fleet.test",
        ["VehicleData__Index"] = "7",
    };

    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("fleetlearn-agent-settings-");

    public void Dispose() => _dir.Delete(recursive: true);

    /// <summary>
    /// Points the settings that name files at test files under the temp folder — absolute paths (which must lie under
    /// /etc/fleetlearn/) keep their layout below it, relative ones sit in a working folder — and writes them.
    /// </summary>
    private Dictionary<string, string?> TestFiles(IConfiguration configuration, string vehicle)
    {
        var mapped = new Dictionary<string, string?>(StringComparer.Ordinal);
        foreach (var key in DeploymentFiles.FileSettings)
        {
            string? value = configuration[key];
            if (string.IsNullOrEmpty(value)) continue;
            if (Path.IsPathRooted(value))
            {
                Assert.StartsWith(DeploymentFiles.EtcFolder, value, StringComparison.Ordinal);
                mapped[key] = Path.Combine(_dir.FullName, value.TrimStart('/'));
            }
            else
            {
                mapped[key] = Path.Combine(_dir.FullName, "work", value);
            }
        }
        string Or(string key, string name) => mapped.GetValueOrDefault(key) ?? Path.Combine(_dir.FullName, "unused", name);
        DeploymentFiles.WriteCredentials(vehicle, Or("Agent:AggregatorPublicKey", "agg.pem"), Or("Mqtt:CaFile", "ca.crt"),
            Or("Mqtt:CertFile", "v.crt"), Or("Mqtt:KeyFile", "v.key"));
        return mapped;
    }

    [Fact]
    public void ProductionSettings_WithTheVehicleEnvFile_BindAndValidate()
    {
        using var host = DeploymentFiles.BuildHost(DeploymentFiles.EdgeAgentFolder, Environments.Production, VehicleEnvironment, c => TestFiles(c, "car-7"));

        Assert.Empty(DeploymentFiles.Validate(host));
        var agent = DeploymentFiles.Options<EdgeAgentOptions>(host);
        var mqtt = DeploymentFiles.Mqtt(host);
        Assert.Equal("car-7", agent.VehicleId);
        Assert.Equal("car-7", mqtt.ClientId); // defaults to the vehicle id
        Assert.True(mqtt.UseTls);
        Assert.Equal(8883, mqtt.Port);
        Assert.Equal("mqtt.fleet.test", mqtt.Host);
        Assert.Equal(7, DeploymentFiles.Options<VehicleDataOptions>(host).Index);
    }

    [Fact]
    public void ProductionSettings_KeepState_InTheUnitsStateDirectory()
    {
        var configuration = new ConfigurationBuilder().AddJsonFile(Path.Combine(DeploymentFiles.EdgeAgentFolder, "appsettings.json")).Build();
        var unit = File.ReadAllLines(Path.Combine(DeploymentFiles.EdgeAgentFolder, "fleetlearn-agent.service"));
        string state = unit.Single(l => l.StartsWith("StateDirectory=", StringComparison.Ordinal))["StateDirectory=".Length..];

        Assert.Equal($"/var/lib/{state}", Path.GetDirectoryName(configuration["Agent:DatabasePath"]));
        Assert.Contains($"WorkingDirectory=/var/lib/{state}", unit);
        Assert.Contains($"ReadWritePaths=/var/lib/{state}", unit);
        Assert.Contains($"Environment=DOTNET_CONTENTROOT={DeploymentFiles.EtcFolder.TrimEnd('/')}", unit);
        Assert.Contains($"EnvironmentFile={DeploymentFiles.EtcFolder}agent.env", unit);
    }

    [Fact]
    public void DevelopmentSettings_OverProduction_BindAndValidate_PlainLoopbackBroker()
    {
        using var host = DeploymentFiles.BuildHost(DeploymentFiles.EdgeAgentFolder, Environments.Development, VehicleEnvironment, c => TestFiles(c, "car-7"));

        Assert.Empty(DeploymentFiles.Validate(host));
        var mqtt = DeploymentFiles.Mqtt(host);
        Assert.False(mqtt.UseTls);
        Assert.Null(mqtt.CaFile);
        Assert.Null(mqtt.CertFile);
        Assert.Null(mqtt.KeyFile);
        Assert.Equal(1883, mqtt.Port);
        Assert.Equal("mqtt.fleet.test", mqtt.Host); // agent.env still overrides the files
        Assert.False(Path.IsPathRooted(DeploymentFiles.Options<EdgeAgentOptions>(host).DatabasePath));
    }

    [Fact]
    public void DevelopmentSettings_WithoutAnEnvironmentHost_UseTheLoopbackBroker()
    {
        var env = new Dictionary<string, string>(VehicleEnvironment, StringComparer.Ordinal);
        env.Remove("Mqtt__Host");
        using var host = DeploymentFiles.BuildHost(DeploymentFiles.EdgeAgentFolder, Environments.Development, env, c => TestFiles(c, "car-7"));

        Assert.Empty(DeploymentFiles.Validate(host));
        Assert.Equal("127.0.0.1", DeploymentFiles.Mqtt(host).Host);
    }

    [Theory]
    [InlineData("appsettings.json")]
    [InlineData("appsettings.Development.json")]
    public void ShippedSettings_NameOnlySectionsAndKeysTheAgentHas(string file)
    {
        // The agent's binder ignores unknown keys (a newer config must not stop an older binary after a rollback);
        // this test does not: a misspelt or renamed key in a shipped file would otherwise be silently without effect.
        var configuration = new ConfigurationBuilder().AddJsonFile(Path.Combine(DeploymentFiles.EdgeAgentFolder, file)).Build();
        var sections = configuration.GetChildren().Select(s => s.Key).ToList();
        Assert.Subset(new HashSet<string>(["Agent", "Mqtt", "VehicleData", "Logging"], StringComparer.Ordinal), sections.ToHashSet(StringComparer.Ordinal));

        void Strict<T>(string section) => configuration.GetSection(section).Get<T>(o => o.ErrorOnUnknownConfiguration = true);
        Strict<EdgeAgentOptions>(EdgeAgentOptions.Section);
        Strict<MqttTransportOptions>(MqttTransportOptions.Section);
        Strict<VehicleDataOptions>(VehicleDataOptions.Section);
    }

    [Fact]
    public void ProductionSettings_CertificateOfAnotherVehicle_FailNamingItsCn()
    {
        using var host = DeploymentFiles.BuildHost(DeploymentFiles.EdgeAgentFolder, Environments.Production, VehicleEnvironment, c => TestFiles(c, "car-8"));

        var failure = Assert.Single(DeploymentFiles.Validate(host));
        Assert.Contains("CN=car-8", failure, StringComparison.Ordinal);
        Assert.Contains("car-7", failure, StringComparison.Ordinal);
    }

    [Fact]
    public void ProductionSettings_MissingVehicleSettingsAndFiles_AllFailuresAtOnce()
    {
        using var host = DeploymentFiles.BuildHost(DeploymentFiles.EdgeAgentFolder, Environments.Production, new Dictionary<string, string>());

        var failures = string.Join("\n", DeploymentFiles.Validate(host));
        Assert.Contains("VehicleId", failures, StringComparison.Ordinal);
        Assert.Contains("/etc/fleetlearn/aggregator-signing.pub.pem", failures, StringComparison.Ordinal);
        Assert.Contains("Index", failures, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--VehicleData:Index=10", "VehicleData:Index 10")]
    [InlineData("--VehicleData:Partition=zipf", "VehicleData:Partition")]
    [InlineData("--VehicleData:HoldoutFraction=1", "VehicleData:HoldoutFraction")]
    public async Task RunAsync_BadVehicleData_ExitsWithConfigurationErrorNamingTheSetting(string argument, string expected)
    {
        var (code, _, error) = await RunAgentAsync(argument);

        Assert.Equal(AgentHost.ConfigurationError, code);
        Assert.Contains(expected, error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--Ingest:HoldoutFraction=2", "Ingest:HoldoutFraction 2")]
    [InlineData("--Ingest:Backbone=/no/such.onnx", "Ingest:Backbone '/no/such.onnx'")]
    [InlineData("--Eligibility:PollInterval=00:00:05", "Eligibility:PollInterval")]
    public async Task RunAsync_BadIngestOrEligibility_ExitsWithConfigurationErrorNamingTheSetting(string argument, string expected)
    {
        var (code, _, error) = await RunAgentAsync($"--Ingest:DataFolder={_dir.FullName}", argument);

        Assert.Equal(AgentHost.ConfigurationError, code);
        Assert.Contains(expected, error, StringComparison.Ordinal);
        Assert.DoesNotContain("VehicleData", error, StringComparison.Ordinal); // with a data folder the stand-in settings are not read
    }

    [Fact]
    public async Task RunAsync_NoAggregatorKey_ExitsWithConfigurationErrorBeforeStarting()
    {
        var (code, output, error) = await RunAgentAsync();

        Assert.Equal(AgentHost.ConfigurationError, code);
        Assert.StartsWith("fleetlearn-agent: invalid configuration", error, StringComparison.Ordinal);
        Assert.Contains("AggregatorPublicKey", error, StringComparison.Ordinal);
        Assert.DoesNotContain("Exception", error, StringComparison.Ordinal);
        Assert.Equal("", output);
    }

    [Theory]
    [InlineData("--help")]
    [InlineData("-h")]
    public async Task RunAsync_Help_PrintsTheSettingsAndExitsZero(string argument)
    {
        using var output = new StringWriter(CultureInfo.InvariantCulture);
        using var error = new StringWriter(CultureInfo.InvariantCulture);

        Assert.Equal(0, await AgentHost.RunAsync([argument], output, error));
        Assert.Contains("usage: fleetlearn-agent", output.ToString(), StringComparison.Ordinal);
        Assert.Contains("VehicleData", output.ToString(), StringComparison.Ordinal);
    }

    /// <summary>The agent's entry point, on an empty content root, with a vehicle id and whatever <paramref name="arguments"/> add.</summary>
    private async Task<(int Code, string Output, string Error)> RunAgentAsync(params string[] arguments)
    {
        using var output = new StringWriter(CultureInfo.InvariantCulture);
        using var error = new StringWriter(CultureInfo.InvariantCulture);
        string[] args = ["--contentRoot", _dir.FullName, "--Agent:VehicleId=car-7", "--VehicleData:Index=7", .. arguments];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30)); // never left running should it start
        int code = await AgentHost.RunAsync(args, output, error, timeout.Token);
        return (code, output.ToString(), error.ToString());
    }
}
