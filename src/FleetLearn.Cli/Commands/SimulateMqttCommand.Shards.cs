using System.Diagnostics;
using System.Globalization;
using FleetLearn.Aggregator;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Training;
using FleetLearn.Simulation;
using FleetLearn.Transport.Mqtt;
using Microsoft.Extensions.Logging;

namespace FleetLearn.Cli.Commands;

/// <summary><c>simulate --transport mqtt --shards S</c>: each aggregator shard an OS process of its own (this executable again, with <see cref="ShardProcessOption"/>).</summary>
internal static partial class SimulateMqttCommand
{
    /// <summary>
    /// Shards run as OS processes of their own when this is the fleetlearn executable; the command invoked inside another host
    /// (the CLI tests' in-process runs) cannot start itself again, and runs the shard workers in its process instead.
    /// </summary>
    private static bool ShardProcesses => System.Reflection.Assembly.GetEntryAssembly()?.GetName().Name == "fleetlearn";

    /// <summary>Parses <c>--shard-kill ROUND:SHARD</c>.</summary>
    public static ShardKill ParseShardKill(string text)
    {
        var parts = text.Split(':');
        return parts.Length == 2 && int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out int round) && round >= 1
            && int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int shard)
            ? new ShardKill(round, shard)
            : throw new ArgumentException($"--shard-kill '{text}': expected ROUND:SHARD, e.g. 1:2.");
    }

    /// <summary>What a shard process prints on standard output once it is connected and subscribed.</summary>
    private const string ShardReadyLine = "shard: ready";

    /// <summary>Starts this executable again, with the same arguments plus <see cref="ShardProcessOption"/>, as aggregator shard <paramref name="shard"/>.</summary>
    private static Process StartShardProcess(int shard, AgentEndpoint endpoint, string? password, string work, TextWriter progress)
    {
        var args = Environment.GetCommandLineArgs().Skip(1).ToList();
        string exe = Environment.ProcessPath ?? throw new InvalidOperationException("Cannot find this executable to start shard processes.");
        if (Path.GetFileNameWithoutExtension(exe) == "dotnet") args.Insert(0, typeof(SimulateMqttCommand).Assembly.Location);
        args.AddRange([ShardProcessOption, FormattableString.Invariant($"{shard}:{endpoint.Scheme}://{endpoint.Host}:{endpoint.Port}"), "--agent-work", work]);
        if (endpoint.CertificateFolder is { } certs && !args.Contains("--broker-certs")) args.AddRange(["--broker-certs", certs]);
        var start = new ProcessStartInfo(exe, args) { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (password is not null) start.Environment[MqttFleetSimulation.PasswordVariable] = password; // the embedded broker's, never on a command line
        var process = Process.Start(start) ?? throw new InvalidOperationException("Could not start a shard process.");
        var ready = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        process.OutputDataReceived += (_, line) =>
        {
            if (line.Data == ShardReadyLine) ready.TrySetResult();
        };
        process.Exited += (_, _) => ready.TrySetException(new InvalidOperationException($"Aggregator shard {shard}'s process exited before it was ready (exit code {process.ExitCode})."));
        process.EnableRaisingEvents = true;
        process.ErrorDataReceived += (_, line) =>
        {
            if (line.Data is { Length: > 0 } text) progress.WriteLine($"[shard {shard}] {text}");
        };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        progress.WriteLine($"started shard process {process.Id} for aggregator shard {shard}");
        // The coordinator opens a round only once every shard listens: an update sent to a shard that has not subscribed yet
        // would wait for the vehicle's next resend.
        if (!ready.Task.Wait(TimeSpan.FromMinutes(2)))
            throw new TimeoutException($"Aggregator shard {shard}'s process (pid {process.Id}) did not report ready within 2 minutes.");
        return process;
    }

    /// <summary>The child side of <c>--shards</c>: runs aggregator shard I until the parent stops it (or a <c>--shard-kill</c> kills it).</summary>
    public static async Task<int> RunShardAsync(SimulationOptions options, LabeledData train, string spec, string work, string? certificates, bool verbose)
    {
        using var stop = new CancellationTokenSource();
        using var term = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Cancel(); });
        using var interrupt = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGINT, c => { c.Cancel = true; stop.Cancel(); });
        _ = Task.Run(() =>
        {
            while (Console.In.ReadLine() is not null) { }
            stop.Cancel(); // the parent went away
        });
        var parts = spec.Split(':', 2);
        if (parts.Length != 2 || !int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out int shard) || !Uri.TryCreate(parts[1], UriKind.Absolute, out var uri))
            throw new ArgumentException($"{ShardProcessOption} '{spec}': expected I:SCHEME://HOST:PORT.");
        var endpoint = new AgentEndpoint(uri.Scheme, uri.Host, uri.Port, certificates, Path.Combine(work, "aggregator-signing.pub.pem"));
        var partitions = Partitioner.Split(train.Labels, options.Vehicles, options.Partition, options.Seed);
        var settings = MqttShards.ShardOptions(MqttShards.ForEndpoint(MqttFleetSimulation.AggregatorOptionsFor(options, partitions, work), endpoint), shard, work);
        using var logs = CliLogging.Create(verbose ? LogLevel.Information : LogLevel.Warning);
        var worker = new ShardWorker(settings, endpoint.Mqtt(FleetTopics.ShardIdentity(shard), Environment.GetEnvironmentVariable(MqttFleetSimulation.PasswordVariable)),
            new AggregatorStatus(), TimeProvider.System, logs.CreateLogger<ShardWorker>())
        {
            BeforeHandOn = round =>
            {
                if (!options.ShardKills.Contains(new ShardKill((int)round, shard))) return;
                Console.Error.WriteLine($"shard {shard}: --shard-kill {round}:{shard}: killing this process before it hands round {round} on.");
                Process.GetCurrentProcess().Kill(); // SIGKILL: no clean disconnect, nothing more sent
            },
        };
        var running = worker.RunAsync(stop.Token);
        await Task.WhenAny(worker.Ready, running).ConfigureAwait(false);
        if (worker.Ready.IsCompletedSuccessfully) Console.Out.WriteLine(ShardReadyLine); // the parent waits for this line
        await running.ConfigureAwait(false);
        return 0;
    }
}
