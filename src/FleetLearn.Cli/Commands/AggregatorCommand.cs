using System.CommandLine;
using FleetLearn.Aggregator;
using FleetLearn.Transport.Mqtt;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace FleetLearn.Cli.Commands;

/// <summary><c>fleetlearn aggregator</c>: the aggregator worker (and its HTTP surface) as a generic host, until Ctrl-C.</summary>
internal static class AggregatorCommand
{
    public static Command Create()
    {
        var command = new Command("aggregator",
            "Run the aggregator as a service. Settings come from appsettings.json, the environment (Aggregator__Rounds=5) and "
            + "--Section:Key=value arguments, in sections Aggregator and Mqtt, e.g. --Aggregator:CohortSize=2 --Aggregator:MinParticipants=2 "
            + "--Aggregator:HttpPort=8080 or --Aggregator:Urls=http://localhost:8080 (/ dashboard, /healthz, /metrics, /api/rounds, /api/vehicles, /openapi/v1.json; "
            + "--Aggregator:HttpToken=... requires a bearer token beyond /healthz) --Mqtt:Host=127.0.0.1. "
            + $"Mqtt:ClientId defaults to 'aggregator' (with Aggregator:ShardIndex=i, a shard of a coordinator's sharded rounds: 'aggregator-shard-i') and Mqtt:Password to ${BrokerCommand.PasswordVariable}. "
            + "Aggregator:Rounds counts the rounds of this start (a restart on the same database runs that many more, numbered on from the last). "
            + "After them the process stays up, serving the last model and its HTTP surface, with no more rounds; Aggregator:StopWhenDone=true ends it instead.\n\n"
            + SettingsHelp.Describe((AggregatorOptions.Section, typeof(AggregatorOptions)), (MqttTransportOptions.Section, typeof(MqttTransportOptions))))
        {
            TreatUnmatchedTokensAsErrors = false,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            var builder = Host.CreateApplicationBuilder([.. parse.UnmatchedTokens]);
            builder.Logging.ToStandardError();
            builder.Services.AddFleetLearnAggregator();
            builder.Services.AddOptions<MqttTransportOptions>().PostConfigure<Microsoft.Extensions.Options.IOptions<AggregatorOptions>>((o, aggregator) =>
            {
                // Aggregator:ShardIndex=i runs shard i of a coordinator's sharded rounds, as the broker identity aggregator-shard-{i}.
                if (string.IsNullOrEmpty(o.ClientId)) o.ClientId = aggregator.Value.ShardIndex is { } shard ? FleetTopics.ShardIdentity(shard) : "aggregator";
                o.Password ??= Environment.GetEnvironmentVariable(BrokerCommand.PasswordVariable);
            });
            if (DpWarning(builder.Configuration) is { } weak) parse.InvocationConfiguration.Error.WriteLine($"aggregator: {weak}");
            return await HostRunner.RunAsync(builder, cancellationToken);
        });
        return command;
    }

    /// <summary>The <see cref="DpSignalCheck"/> warning for the configured DP, cohort and model; null when fine or not decidable here (validation reports bad settings).</summary>
    internal static string? DpWarning(Microsoft.Extensions.Configuration.IConfiguration configuration)
    {
        var options = new AggregatorOptions();
        try
        {
            Microsoft.Extensions.Configuration.ConfigurationBinder.Bind(configuration.GetSection(AggregatorOptions.Section), options);
            if (options.Privacy.Trim().Equals("off", StringComparison.OrdinalIgnoreCase)) return null;
            int dimension = Core.Model.ModelSpec.Parse(options.Model).ParameterCount;
            return DpSignalCheck.Warning(options.CohortSize, options.NoiseMultiplier, options.ClipNorm ?? 1.0, dimension, "Aggregator:NoiseMultiplier");
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException or ArgumentException)
        {
            return null;
        }
    }
}
