using System.CommandLine;
using System.Globalization;
using FleetLearn.Cli.Commands;
using FleetLearn.Storage;
using FleetLearn.Transport.Mqtt;
using FleetLearn.Transport.Mqtt.Broker;

namespace FleetLearn.Cli.Tests.Commands;

/// <summary><c>fleetlearn aggregator</c> and two <c>fleetlearn agent</c> hosts over a real in-process broker, settings on the command line.</summary>
[Collection("Console")]
public sealed class HostedCommandsEndToEndTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(120);

    private static Task<int> RunAsync(string[] args, CancellationToken cancellationToken)
    {
        var root = new RootCommand { AggregatorCommand.Create(), AgentCommand.Create() };
        var config = new InvocationConfiguration { Output = new StringWriter(CultureInfo.InvariantCulture), Error = new StringWriter(CultureInfo.InvariantCulture), EnableDefaultExceptionHandler = false };
        return Task.Run(() => root.Parse(args).InvokeAsync(config, cancellationToken), cancellationToken);
    }

    [Fact]
    public async Task AggregatorAndTwoAgents_OneRound_AppliedAndStopsWhenDone()
    {
        var dir = Directory.CreateTempSubdirectory("fleetlearn-hosts-").FullName;
        await using var broker = new EmbeddedBroker(new EmbeddedBrokerOptions { Port = 0, AggregatorPassword = "smoke-secret" });
        await broker.StartAsync();
        string keyPath = Path.Combine(dir, "signing.pem");
        using (SigningKeys.LoadOrCreate(keyPath))
        {
            // created before any host starts, so the agents find the public key
        }
        string[] common = [$"--Mqtt:Port={broker.Port}", "--Mqtt:Fleet=smoke", "--Logging:LogLevel:Default=Warning"];
        using var agentsStop = new CancellationTokenSource();
        var agents = Enumerable.Range(0, 2).Select(i => RunAsync(
            ["agent", "--vehicles", "50", "--index", i.ToString(CultureInfo.InvariantCulture), "--seed", "2",
             $"--Agent:AggregatorPublicKey={Path.ChangeExtension(keyPath, ".pub.pem")}", $"--Agent:DatabasePath={Path.Combine(dir, $"car-{i}.db")}", .. common],
            agentsStop.Token)).ToList();
        try
        {
            int exit = await RunAsync(
                ["aggregator", "--Aggregator:Rounds=1", "--Aggregator:StopWhenDone=true", "--Aggregator:CohortSize=2", "--Aggregator:MinParticipants=2",
                 $"--Aggregator:DatabasePath={Path.Combine(dir, "agg.db")}", $"--Aggregator:SigningKeyPath={keyPath}", "--Aggregator:OnnxFolder=",
                 "--Mqtt:Password=smoke-secret", .. common],
                CancellationToken.None).WaitAsync(Timeout);
            Assert.Equal(0, exit);
            using var store = LiteDbRoundStore.Open(Path.Combine(dir, "agg.db"));
            var round = Assert.Single(store.Rounds());
            Assert.Equal(RoundStatus.Applied, round.Status);
            Assert.Equal(2, round.Participants);
            Assert.Equal(1, store.LatestModel()!.Version);
        }
        finally
        {
            await agentsStop.CancelAsync();
            foreach (var exit in await Task.WhenAll(agents).WaitAsync(Timeout)) Assert.Equal(0, exit);
            Directory.Delete(dir, recursive: true);
        }
    }
}
