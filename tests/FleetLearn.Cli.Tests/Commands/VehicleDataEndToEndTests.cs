using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using FleetLearn.Cli.Commands;
using FleetLearn.Perception.Features;
using FleetLearn.Storage;
using FleetLearn.Transport.Mqtt;
using FleetLearn.Transport.Mqtt.Broker;

namespace FleetLearn.Cli.Tests.Commands;

/// <summary>
/// The vehicle's own data end to end: scripts/make-clips.sh writes labelled clips, <c>fleetlearn agent</c> pointed at them
/// ingests them through the pretrained ResNet18 into its feature store, trains on those features, and the aggregator
/// accepts its update.
/// </summary>
[Collection("Console")]
public sealed class VehicleDataEndToEndTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(240);

    private static Task<int> RunAsync(string[] args, CancellationToken cancellationToken)
    {
        var root = new RootCommand { AggregatorCommand.Create(), AgentCommand.Create() };
        var config = new InvocationConfiguration { Output = new StringWriter(CultureInfo.InvariantCulture), Error = new StringWriter(CultureInfo.InvariantCulture), EnableDefaultExceptionHandler = false };
        return Task.Run(() => root.Parse(args).InvokeAsync(config, cancellationToken), cancellationToken);
    }

    internal static string RepositoryRoot()
    {
        string? dir = AppContext.BaseDirectory;
        while (dir is not null && !File.Exists(Path.Combine(dir, "FleetLearn.sln"))) dir = Path.GetDirectoryName(dir);
        return dir ?? throw new InvalidOperationException($"FleetLearn.sln not found above {AppContext.BaseDirectory}");
    }

    internal static void MakeClips(string folder, params string[] args)
    {
        var start = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { Path.Combine(RepositoryRoot(), "scripts", "make-clips.sh"), folder }.Concat(args)) start.ArgumentList.Add(a);
        using var script = Process.Start(start)!;
        var errors = script.StandardError.ReadToEndAsync();
        script.StandardOutput.ReadToEnd();
        Assert.True(script.WaitForExit(120_000));
        Assert.True(script.ExitCode == 0, errors.Result);
    }

    [SkippableFact]
    public async Task Agent_OnMadeClips_IngestsTrainsOnResNet18Features_UpdateAccepted()
    {
        Skip.IfNot(VideoFrames.IsFfmpegAvailable(), "ffmpeg is not installed");
        var dir = Directory.CreateTempSubdirectory("fleetlearn-vehicle-data-").FullName;
        MakeClips(Path.Combine(dir, "clips"), "--vehicles", "1", "--clips", "4", "--frames", "8");
        await using var broker = new EmbeddedBroker(new EmbeddedBrokerOptions { Port = 0, AggregatorPassword = "smoke-secret" });
        await broker.StartAsync();
        string keyPath = Path.Combine(dir, "signing.pem");
        using (SigningKeys.LoadOrCreate(keyPath))
        {
            // created before any host starts, so the agent finds the public key
        }
        string[] common = [$"--Mqtt:Port={broker.Port}", "--Mqtt:Fleet=clips", "--Logging:LogLevel:Default=Warning"];
        using var agentStop = new CancellationTokenSource();
        string store = Path.Combine(dir, "store");
        var agent = RunAsync(
            ["agent", $"--Ingest:DataFolder={Path.Combine(dir, "clips", "vehicle-0")}", $"--Ingest:StoreFolder={store}", "--Ingest:Backbone=resnet18",
             "--Ingest:Provider=cpu", "--Ingest:Threads=2", "--Ingest:StableAfter=00:00:00", "--Ingest:HoldoutFraction=0.25",
             $"--Agent:AggregatorPublicKey={Path.ChangeExtension(keyPath, ".pub.pem")}", $"--Agent:DatabasePath={Path.Combine(dir, "car-0.db")}", .. common],
            agentStop.Token);
        try
        {
            int exit = await RunAsync(
                ["aggregator", "--Aggregator:Rounds=1", "--Aggregator:StopWhenDone=true", "--Aggregator:CohortSize=1", "--Aggregator:MinParticipants=1",
                 "--Aggregator:Model=512-200-200-10",
                 $"--Aggregator:DatabasePath={Path.Combine(dir, "agg.db")}", $"--Aggregator:SigningKeyPath={keyPath}", "--Aggregator:OnnxFolder=",
                 "--Mqtt:Password=smoke-secret", .. common],
                CancellationToken.None).WaitAsync(Timeout);
            Assert.Equal(0, exit);
            using var rounds = LiteDbRoundStore.Open(Path.Combine(dir, "agg.db"));
            var round = Assert.Single(rounds.Rounds());
            Assert.Equal(RoundStatus.Applied, round.Status);
            Assert.Equal(1, round.Participants);
            Assert.Equal(1, rounds.LatestModel()!.Version);
            Assert.Equal(4, Directory.GetFiles(store, "*.clip").Length); // mp4, mkv, h264 and the image folder, each once
        }
        finally
        {
            await agentStop.CancelAsync();
            Assert.Equal(0, await agent.WaitAsync(Timeout));
            Directory.Delete(dir, recursive: true);
        }
    }
}
