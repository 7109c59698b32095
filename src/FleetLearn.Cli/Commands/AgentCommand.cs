using System.CommandLine;
using System.Globalization;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Training;
using FleetLearn.EdgeAgent;
using FleetLearn.EdgeAgent.Ingest;
using FleetLearn.Perception.Datasets;
using FleetLearn.Transport.Mqtt;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Configuration.Memory;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace FleetLearn.Cli.Commands;

/// <summary><c>fleetlearn agent</c>: one edge agent as a generic host, its local data a Fashion-MNIST partition, until Ctrl-C.</summary>
internal static class AgentCommand
{
    public static Command Create()
    {
        var vehicles = new Option<int>("--vehicles") { Description = "Vehicles the training set is partitioned across.", DefaultValueFactory = _ => 10 };
        var index = new Option<int?>("--index") { Description = "This vehicle's part, 0..vehicles-1 (the stand-in data; not with --Ingest:DataFolder)." };
        var partition = new Option<string>("--partition") { Description = "iid | shards | dirichlet:α (same split for every --index with the same --seed).", DefaultValueFactory = _ => "iid" };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the partition and of the hold-out choice.", DefaultValueFactory = _ => 1UL };
        var holdout = new Option<double>("--holdout") { Description = "Fraction of the vehicle's rows kept back to evaluate each global model on the vehicle.", DefaultValueFactory = _ => 0.1 };
        var data = new Option<string?>("--data") { Description = $"Fashion-MNIST folder (default ${FashionMnist.DataVariable}, then {FashionMnist.DebianFolder})." };
        var command = new Command("agent",
            "Run one edge agent as a service. With --Ingest:DataFolder=DIR it trains on its own feature store: it ingests the clips a recorder "
            + "writes to DIR (videos through ffmpeg, image folders, sidecar labels {clip}.labels.csv) through the backbone Ingest:Backbone "
            + "(default resnet18) and trains on their labelled frames (head pinned to F-200-200-10 unless Agent:PinnedModelSpec says otherwise). "
            + "Without it, its local data is vehicle --index's part of the Fashion-MNIST training set (a stand-in). "
            + "Settings come from appsettings.json, the environment and "
            + "--Section:Key=value arguments, in sections Agent, Mqtt and Ingest. Defaults for a quick local run: Agent:VehicleId car-{index} (car-0 with ingest), "
            + "Agent:DatabasePath {VehicleId}.db, Agent:AggregatorPublicKey aggregator-signing.pub.pem (the aggregator's default key), "
            + "Mqtt:ClientId = Agent:VehicleId.\n\n"
            + SettingsHelp.Describe((EdgeAgentOptions.Section, typeof(EdgeAgentOptions)), (MqttTransportOptions.Section, typeof(MqttTransportOptions))))
        {
            vehicles, index, partition, seed, holdout, data,
        };
        command.TreatUnmatchedTokensAsErrors = false;
        command.SetAction(async (parse, cancellationToken) =>
        {
            var builder = Host.CreateApplicationBuilder([.. parse.UnmatchedTokens]);
            builder.Logging.ToStandardError();
            string? clips = builder.Configuration[$"{VehicleIngestOptions.Section}:{nameof(VehicleIngestOptions.DataFolder)}"];
            VehicleDataset? dataset = null;
            int i = parse.GetValue(index) ?? 0;
            if (clips is null)
            {
                if (parse.GetValue(index) is null) throw new ArgumentException("agent: give --index N (the stand-in data) or --Ingest:DataFolder=DIR (the vehicle's own clips).");
                CheckArguments(parse.GetValue(vehicles), i, parse.GetValue(holdout)); // before the data set is read
                var scheme = PartitionScheme.Parse(parse.GetValue(partition)!);
                var train = CliData.LoadTrain(parse.GetValue(data), parse.InvocationConfiguration.Error);
                dataset = SelectRows(train, parse.GetValue(vehicles), i, scheme, parse.GetValue(seed), parse.GetValue(holdout));
            }
            else if (parse.GetValue(index) is not null)
            {
                throw new ArgumentException("agent: --index selects the stand-in data; with --Ingest:DataFolder the vehicle trains on its own clips. Give one of them.");
            }
            string backboneName = builder.Configuration[$"{VehicleIngestOptions.Section}:{nameof(VehicleIngestOptions.Backbone)}"] ?? "resnet18";
            // Lowest-precedence defaults: appsettings.json, the environment and the command line all override them.
            var defaults = new Dictionary<string, string?>
            {
                [$"{EdgeAgentOptions.Section}:{nameof(EdgeAgentOptions.VehicleId)}"] = $"car-{i}",
                [$"{EdgeAgentOptions.Section}:{nameof(EdgeAgentOptions.AggregatorPublicKey)}"] = "aggregator-signing.pub.pem",
            };
            if (clips is not null)
            {
                int? width = backboneName.Trim().ToLowerInvariant() switch { "resnet18" => Perception.Onnx.ResNet18Backbone.FeatureSize, "generated" => Perception.Onnx.GeneratedBackbone.FeatureSize, _ => null };
                if (width is { } w) defaults[$"{EdgeAgentOptions.Section}:{nameof(EdgeAgentOptions.PinnedModelSpec)}"] = $"{w}-200-200-10";
            }
            builder.Configuration.Sources.Insert(0, new MemoryConfigurationSource { InitialData = defaults });
            if (dataset is not null) builder.Services.AddSingleton(dataset);
            else builder.Services.AddVehicleFeatureStore();
            builder.Services.AddFleetLearnEdgeAgent();
            builder.Services.AddVehicleEligibility();
            builder.Services.AddSingleton<IValidateOptions<EdgeAgentOptions>, AggregatorKeyFileValidator>();
            builder.Services.AddOptions<EdgeAgentOptions>().PostConfigure<IConfiguration>((o, configuration) =>
            {
                if (configuration[$"{EdgeAgentOptions.Section}:{nameof(EdgeAgentOptions.DatabasePath)}"] is null) o.DatabasePath = $"{o.VehicleId}.db";
            });
            builder.Services.AddOptions<MqttTransportOptions>().PostConfigure<IOptions<EdgeAgentOptions>>((m, a) =>
            {
                if (string.IsNullOrEmpty(m.ClientId)) m.ClientId = a.Value.VehicleId;
            });
            parse.InvocationConfiguration.Output.WriteLine(dataset is not null
                ? $"agent: vehicle {i} of {parse.GetValue(vehicles)} ({parse.GetValue(partition)}, seed {parse.GetValue(seed)}): {dataset.Rows.Length:N0} training rows, {dataset.HoldoutRows?.Length ?? 0:N0} hold-out rows; Ctrl-C stops it."
                : $"agent: ingesting clips from {clips} through backbone {backboneName}; Ctrl-C stops it.");
            return await HostRunner.RunAsync(builder, cancellationToken);
        });
        return command;
    }

    /// <summary>Vehicle <paramref name="index"/>'s rows with a seeded hold-out (<see cref="VehicleDataset.FromPartition"/>); errors name the command's options.</summary>
    internal static VehicleDataset SelectRows(LabeledData train, int vehicles, int index, PartitionScheme scheme, ulong seed, double holdoutFraction)
    {
        ArgumentNullException.ThrowIfNull(train);
        CheckArguments(vehicles, index, holdoutFraction);
        return VehicleDataset.FromPartition(train, vehicles, index, scheme, seed, holdoutFraction);
    }

    private static void CheckArguments(int vehicles, int index, double holdoutFraction)
    {
        if (vehicles < 1) throw new ArgumentException($"--vehicles {vehicles}: at least 1.");
        if (index < 0 || index >= vehicles) throw new ArgumentException($"--index {index}: expected 0..{vehicles - 1} (--vehicles {vehicles}).");
        if (!(holdoutFraction >= 0 && holdoutFraction < 1)) throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"--holdout {holdoutFraction}: expected a fraction in [0, 1)."));
    }
}

/// <summary>
/// Checks at start that the pinned aggregator key can be read and parsed, naming the setting and the file; without it the
/// worker would fail on its first line with a stack trace (typically: the aggregator has not written its key yet).
/// </summary>
internal sealed class AggregatorKeyFileValidator : IValidateOptions<EdgeAgentOptions>
{
    public ValidateOptionsResult Validate(string? name, EdgeAgentOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        string value = options.AggregatorPublicKey;
        if (string.IsNullOrWhiteSpace(value)) return ValidateOptionsResult.Skip; // [Required] reports it
        bool isPem = value.Contains("-----BEGIN", StringComparison.Ordinal);
        if (!isPem && !File.Exists(value))
            return ValidateOptionsResult.Fail($"Agent:AggregatorPublicKey '{value}' does not exist ({Path.GetFullPath(value)}). Start the aggregator first (it writes "
                + "aggregator-signing.pub.pem in its working folder), or point --Agent:AggregatorPublicKey=FILE at the aggregator's public key.");
        try
        {
            using var key = SigningKeys.LoadPublic(value);
            return ValidateOptionsResult.Success;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or System.Security.Cryptography.CryptographicException)
        {
            return ValidateOptionsResult.Fail($"Agent:AggregatorPublicKey '{(isPem ? "(PEM text)" : value)}': not a P-256 public key in PEM ({e.Message}).");
        }
    }
}
