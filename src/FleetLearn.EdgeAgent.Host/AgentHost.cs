using System.Reflection;
using FleetLearn.Core.Federated;
using FleetLearn.EdgeAgent.Ingest;
using FleetLearn.Perception.Datasets;
using FleetLearn.Transport.Mqtt;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace FleetLearn.EdgeAgent.Host;

/// <summary>
/// The vehicle's edge agent as a generic host: settings from appsettings.json, appsettings.{Environment}.json (both in
/// the content root), <c>Section__Key</c> environment variables and <c>--Section:Key=value</c> arguments; under systemd
/// it notifies readiness (Type=notify) and logs with journald priorities.
/// </summary>
public static class AgentHost
{
    /// <summary>Exit code of an invalid configuration (sysexits.h EX_CONFIG).</summary>
    public const int ConfigurationError = 78;

    /// <summary>Exit code when the worker failed (the host logged why).</summary>
    public const int WorkerFailed = 1;

    /// <summary>The agent's host builder: the edge agent, its vehicle data, systemd integration and start-up checks.</summary>
    public static HostApplicationBuilder CreateBuilder(HostApplicationBuilderSettings settings)
    {
        var builder = Microsoft.Extensions.Hosting.Host.CreateApplicationBuilder(settings); // qualified: this namespace ends in Host
        builder.Services.AddSystemd();
        // Logs on stderr (journald takes both streams under systemd; a terminal keeps stdout for what the agent prints).
        builder.Services.Configure<Microsoft.Extensions.Logging.Console.ConsoleLoggerOptions>(o => o.LogToStandardErrorThreshold = Microsoft.Extensions.Logging.LogLevel.Trace);
        builder.Services.AddFleetLearnEdgeAgent();
        builder.Services.AddVehicleEligibility();
        builder.Services.AddSingleton<IValidateOptions<EdgeAgentOptions>, AggregatorKeyValidator>();
        builder.Services.AddSingleton<IValidateOptions<MqttTransportOptions>, VehicleCertificateValidator>();
        // The vehicle id is its MQTT client id (the broker enforces client id = username = certificate CN).
        // Read from the configuration, not IOptions<EdgeAgentOptions>: an invalid Agent section must not hide Mqtt's failures.
        builder.Services.AddOptions<MqttTransportOptions>().PostConfigure<IConfiguration>((m, configuration) =>
        {
            if (string.IsNullOrEmpty(m.ClientId)) m.ClientId = configuration[$"{EdgeAgentOptions.Section}:{nameof(EdgeAgentOptions.VehicleId)}"] ?? "";
        });
        if (UsesFeatureStore(builder.Configuration))
        {
            // The vehicle's own data: clips from the recorder's folder → backbone → feature store → training.
            builder.Services.AddVehicleFeatureStore();
            return builder;
        }
        builder.Services.AddOptions<VehicleDataOptions>().BindConfiguration(VehicleDataOptions.Section).ValidateOnStart();
        builder.Services.AddSingleton<IValidateOptions<VehicleDataOptions>>(new DataAnnotationsValidator<VehicleDataOptions>());
        builder.Services.AddSingleton(sp => LoadDataset(sp.GetRequiredService<IOptions<VehicleDataOptions>>().Value));
        return builder;
    }

    /// <summary>True when <c>Ingest:DataFolder</c> is set: the agent trains on its feature store, not on the stand-in partition.</summary>
    internal static bool UsesFeatureStore(IConfiguration configuration) =>
        !string.IsNullOrWhiteSpace(configuration[$"{VehicleIngestOptions.Section}:{nameof(VehicleIngestOptions.DataFolder)}"]);

    /// <summary>Vehicle data per <see cref="VehicleDataOptions"/>: its part of the Fashion-MNIST training set.</summary>
    internal static VehicleDataset LoadDataset(VehicleDataOptions options)
    {
        var train = FashionMnist.LoadTrain(options.Folder);
        return VehicleDataset.FromPartition(train, options.Vehicles, options.Index!.Value, PartitionScheme.Parse(options.Partition),
            options.Seed, options.HoldoutFraction);
    }

    /// <summary>
    /// Runs the agent until SIGTERM/Ctrl-C. Settings are validated and the vehicle data loaded before the host starts,
    /// so a bad setting is one line on stderr and exit code <see cref="ConfigurationError"/>, never a stack trace.
    /// </summary>
    public static async Task<int> RunAsync(string[] args, TextWriter output, TextWriter error, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(args);
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(error);
        if (args.Any(a => a is "--help" or "-h" or "-?"))
        {
            await output.WriteAsync(Usage).ConfigureAwait(false);
            return 0;
        }
        if (args.Any(a => a is "--version"))
        {
            await output.WriteLineAsync($"fleetlearn-agent {Version}").ConfigureAwait(false);
            return 0;
        }
        var builder = CreateBuilder(new HostApplicationBuilderSettings { Args = args });
        using var host = builder.Build();
        var failures = Validate(host.Services);
        if (failures.Count > 0) // then the data, whose loading takes a while
        {
            await error.WriteLineAsync($"fleetlearn-agent: invalid configuration (files in {builder.Environment.ContentRootPath}, environment {builder.Environment.EnvironmentName}): {string.Join(" ", failures)}").ConfigureAwait(false);
            return ConfigurationError;
        }
        List<BackgroundService> workers;
        try
        {
            _ = host.Services.GetRequiredService<VehicleDataset>();
            workers = [.. host.Services.GetServices<IHostedService>().OfType<BackgroundService>()];
        }
        catch (Exception e) when (e is DatasetNotFoundException or IdxFormatException or FileNotFoundException or Perception.Onnx.OnnxModelException or IOException)
        {
            await error.WriteLineAsync($"fleetlearn-agent: vehicle data: {e.Message}").ConfigureAwait(false);
            return ConfigurationError;
        }
        await host.RunAsync(cancellationToken).ConfigureAwait(false);
        // A failed worker stops the host, which logs the exception, but RunAsync still completes normally
        // (dotnet/runtime#67146): report the failure in the exit code, so that systemd counts it.
        return workers.Any(w => w.ExecuteTask?.IsFaulted == true) ? WorkerFailed : 0;
    }

    /// <summary>
    /// Binds and validates every section the agent reads, as it does at start, and returns all failures (resolving one
    /// options type throws only its own): empty when the settings are good.
    /// </summary>
    public static IReadOnlyList<string> Validate(IServiceProvider services)
    {
        var failures = new List<string>();
        Check<EdgeAgentOptions>(services, failures);
        Check<MqttTransportOptions>(services, failures);
        Check<EligibilityOptions>(services, failures);
        if (UsesFeatureStore(services.GetRequiredService<IConfiguration>())) Check<VehicleIngestOptions>(services, failures);
        else Check<VehicleDataOptions>(services, failures);
        return failures;
    }

    private static void Check<T>(IServiceProvider services, List<string> failures) where T : class
    {
        try
        {
            _ = services.GetRequiredService<IOptions<T>>().Value;
        }
        catch (OptionsValidationException e)
        {
            failures.AddRange(e.Failures);
        }
    }

    /// <summary>The informational version stamped by edge-agent/publish.sh (git describe), else the assembly version.</summary>
    public static string Version =>
        typeof(AgentHost).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
        ?? typeof(AgentHost).Assembly.GetName().Version?.ToString() ?? "unknown";

    internal const string Usage = """
        fleetlearn-agent: the FleetLearn edge agent (federated learning on this vehicle; its data never leaves it).

        usage: fleetlearn-agent [--Section:Key=value ...]
               fleetlearn-agent --help | --version

        Settings, later sources overriding earlier ones:
          appsettings.json, appsettings.{Environment}.json   in the content root (DOTNET_CONTENTROOT; the unit: /etc/fleetlearn)
          environment variables Section__Key=value           (the unit's EnvironmentFile: /etc/fleetlearn/agent.env)
          arguments --Section:Key=value
        Environment: DOTNET_ENVIRONMENT (default Production; Development = plain MQTT to a loopback broker).

        Sections:
          Agent        VehicleId (required), AggregatorPublicKey (required: PEM or PEM file), PinnedModelSpec,
                       DatabasePath, ResendInterval, Seed, MaxModelBytes, EvaluationEpsilon
          Mqtt         Host, Port, Fleet, ClientId (default Agent:VehicleId), UseTls, CaFile, CertFile, KeyFile,
                       TlsServerName, SessionExpirySeconds, KeepAliveSeconds, MaxPacketSize, MaxInFlight,
                       ReconnectDelay, MaxReconnectDelay, BreakAfterFailures, BreakDuration, ConnectTimeout, WillDelaySeconds
          Eligibility  StateFile | StateSocket (the gateway's vehicle state), PollInterval, RequireParked, RequireChargingOrCharge,
                       ChargeFloor, RequireUnmetered, MaxSocTemperatureC, TrainingThreads
          Ingest       DataFolder (the recorder's clips; when set, the agent trains on its own feature store), StoreFolder,
                       Backbone (resnet18 | generated | ONNX file), Provider, Threads, Batch, QuotaMiB, MaxAge, SampleEvery,
                       SampleRate, StableAfter, ScanInterval, ClassCount, Teacher, TeacherThreshold, HoldoutFraction, Ffmpeg
          VehicleData  Index (required without Ingest:DataFolder), Vehicles, Partition, Seed, HoldoutFraction, Folder
                       (stand-in: part Index of the Fashion-MNIST training set)

        Exit codes: 0 stopped, 1 the worker failed, 78 invalid configuration.
        """;
}
