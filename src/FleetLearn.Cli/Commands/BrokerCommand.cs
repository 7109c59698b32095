using System.CommandLine;
using FleetLearn.Transport.Mqtt.Broker;
using Microsoft.Extensions.Logging;

namespace FleetLearn.Cli.Commands;

/// <summary><c>fleetlearn broker</c>: the embedded MQTT 5 broker with the per-vehicle ACL, until Ctrl-C.</summary>
internal static class BrokerCommand
{
    /// <summary>Environment variable holding the aggregator identity's password.</summary>
    public const string PasswordVariable = "FLEETLEARN_AGGREGATOR_PASSWORD";

    public static Command Create()
    {
        var port = new Option<int>("--port") { Description = "TCP port.", DefaultValueFactory = _ => 1883 };
        var bindAll = new Option<bool>("--bind-all") { Description = "Listen on every interface (default: loopback only)." };
        var aggregator = new Option<string>("--aggregator-id") { Description = "Identity allowed everything.", DefaultValueFactory = _ => "aggregator" };
        var command = new Command("broker", $"Run the embedded MQTT broker: client id = username = vehicle id; vehicles publish only under their own vehicles/{{id}}/ and read round/, model/ and their inbox. The aggregator's password comes from ${PasswordVariable}.")
        {
            port, bindAll, aggregator,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            string password = Environment.GetEnvironmentVariable(PasswordVariable)
                ?? throw new ArgumentException($"Set ${PasswordVariable}: without it no aggregator could log in.");
            using var logs = LoggerFactory.Create(b => b.AddSimpleConsole(o => o.SingleLine = true));
            await using var broker = new EmbeddedBroker(new EmbeddedBrokerOptions
            {
                Port = parse.GetValue(port),
                LoopbackOnly = !parse.GetValue(bindAll),
                AggregatorIdentities = [parse.GetValue(aggregator)!],
                AggregatorPassword = password,
            }, logs.CreateLogger("broker"));
            await broker.StartAsync();
            parse.InvocationConfiguration.Output.WriteLine($"broker: listening on port {broker.Port}; Ctrl-C stops it.");
            try
            {
                await Task.Delay(Timeout.Infinite, cancellationToken);
            }
            catch (OperationCanceledException)
            {
            }
            parse.InvocationConfiguration.Output.WriteLine($"broker: stopped; refused {broker.RefusedConnections} connections, {broker.RefusedPublishes} publishes, {broker.RefusedSubscriptions} subscriptions.");
            return 0;
        });
        return command;
    }
}
