using System.CommandLine;
using FleetLearn.Transport.Mqtt;
using FleetLearn.Transport.Mqtt.Broker;
using Microsoft.Extensions.Logging;

namespace FleetLearn.Cli.Commands;

/// <summary><c>fleetlearn broker</c>: the embedded MQTT 5 broker with the per-vehicle ACL, until Ctrl-C.</summary>
internal static class BrokerCommand
{
    /// <summary>Environment variable holding the aggregator identity's password.</summary>
    public const string PasswordVariable = "FLEETLEARN_AGGREGATOR_PASSWORD";

    /// <summary>Default folder of the retained-message store, relative to the working directory.</summary>
    public const string DefaultRetainedStore = "broker-retained";

    public static Command Create()
    {
        var port = new Option<int>("--port") { Description = "TCP port.", DefaultValueFactory = _ => 1883 };
        var bindAll = new Option<bool>("--bind-all") { Description = "Listen on every interface (default: loopback only); requires --tls-cert, --tls-key and --client-ca." };
        var tlsCert = new Option<string?>("--tls-cert") { Description = "PEM certificate of the broker (broker.crt of broker-config/make-dev-ca.sh): TLS only, with client certificates." };
        var tlsKey = new Option<string?>("--tls-key") { Description = "PEM private key of --tls-cert." };
        var clientCa = new Option<string?>("--client-ca") { Description = "The device CA (ca.crt): clients must present a certificate it issued; its CN is the identity and must equal the client id." };
        var crl = new Option<string?>("--crl") { Description = "The device CA's CRL (ca.crl): revoked certificates are refused; renew it with broker-config/renew-crl.sh." };
        var aggregator = new Option<string>("--aggregator-id") { Description = "Identity allowed everything.", DefaultValueFactory = _ => "aggregator" };
        var shards = new Option<int>("--shards") { Description = "Also admit aggregator-shard-0 … aggregator-shard-{N-1} (the aggregator's password; each alone may publish its shards/{i}/partial): a coordinator with Aggregator:Shards=N.", DefaultValueFactory = _ => 0 };
        var retained = new Option<string>("--retained-store")
        {
            Description = "Folder that keeps retained messages (round plan, model chunks, presence) across restarts; \"\" = memory only.",
            DefaultValueFactory = _ => DefaultRetainedStore,
        };
        var command = new Command("broker", $"Run the embedded MQTT broker: client id = username = vehicle id; vehicles publish only under their own vehicles/{{id}}/ and read round/, model/ and their inbox. The aggregator's password comes from ${PasswordVariable}.")
        {
            port, bindAll, aggregator, shards, retained, tlsCert, tlsKey, clientCa, crl,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            int portNumber = parse.GetValue(port);
            if (portNumber is < 0 or > 65535) throw new ArgumentException($"--port {portNumber}: expected a TCP port, 1..65535 (0: any free port).");
            string store = parse.GetValue(retained) ?? "";
            var options = new EmbeddedBrokerOptions
            {
                Port = portNumber,
                LoopbackOnly = !parse.GetValue(bindAll),
                AggregatorIdentities = [parse.GetValue(aggregator)!, .. Enumerable.Range(0, Math.Clamp(parse.GetValue(shards), 0, Core.Rounds.PlanShards.MaxShards)).Select(FleetTopics.ShardIdentity)],
                AggregatorPassword = Environment.GetEnvironmentVariable(PasswordVariable),
                RetainedStorePath = string.IsNullOrWhiteSpace(store) ? null : Path.GetFullPath(store),
                TlsCertificateFile = parse.GetValue(tlsCert),
                TlsKeyFile = parse.GetValue(tlsKey),
                ClientCaFile = parse.GetValue(clientCa),
                CrlFile = parse.GetValue(crl),
            };
            options.Validate();
            // Under mutual TLS the aggregator's certificate is its credential; without it, its password.
            if (!options.MutualTls && string.IsNullOrEmpty(options.AggregatorPassword))
                throw new CliConfigurationException($"Set ${PasswordVariable}: without it (or mutual TLS: --tls-cert, --tls-key, --client-ca) no aggregator could log in.");
            using var logs = CliLogging.Create(LogLevel.Information);
            await using var broker = new EmbeddedBroker(options, logs.CreateLogger("broker"));
            try
            {
                await broker.StartAsync();
            }
            catch (System.Net.Sockets.SocketException e) when (e.SocketErrorCode == System.Net.Sockets.SocketError.AddressAlreadyInUse)
            {
                throw new CliFailureException($"port {broker.Port} is already in use: another broker (or program) listens there; stop it or pick another --port.", e);
            }
            var output = parse.InvocationConfiguration.Output;
            output.WriteLine(broker.RetainedStorePath is { } folder
                ? $"broker: retained messages in {folder} ({broker.RestoredRetainedMessages} restored, {broker.SkippedRetainedFiles.Count} unreadable files skipped)."
                : "broker: retained messages in memory only (--retained-store \"\"): a restart loses them until their publishers reconnect.");
            output.WriteLine(broker.MutualTls
                ? $"broker: mutual TLS with the device CA {options.ClientCaFile}{(broker.Crl is { } list ? $", CRL valid until {list.NextUpdate:u}" : ", no CRL")}."
                : "broker: no TLS: clients are identified by their username, not authenticated (loopback development only).");
            if (broker.CrlNeedsRenewal) output.WriteLine("broker: warning: the CRL expires within 7 days; renew it (broker-config/renew-crl.sh).");
            output.WriteLine($"broker: listening on port {broker.Port}; Ctrl-C stops it.");
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
