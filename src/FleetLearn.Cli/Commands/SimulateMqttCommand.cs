using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Training;
using FleetLearn.Simulation;
using Microsoft.Extensions.Logging;

namespace FleetLearn.Cli.Commands;

/// <summary><c>fleetlearn simulate --transport mqtt</c>: the virtual fleet over a real broker with the real agent and aggregator workers.</summary>
internal static partial class SimulateMqttCommand
{
    /// <summary>Hidden option of a child process: host vehicles FROM:TO against SCHEME://HOST:PORT with the parent's work folder.</summary>
    public const string AgentRangeOption = "--agent-range";

    /// <summary>Hidden option of a child process: aggregator shard I against SCHEME://HOST:PORT with the parent's work folder.</summary>
    public const string ShardProcessOption = "--shard-process";

    public static async Task<int> RunAsync(ParseResult parse, SimulationOptions options, LabeledData train, LabeledData test, MqttSimulationBroker brokerSettings, int processes, string? output, bool asJson, TextWriter progress, bool verbose, CancellationToken cancellationToken)
    {
        bool temporary = output is null;
        string work = temporary ? Path.Combine(Path.GetTempPath(), $"fleetlearn-mqtt-{Environment.ProcessId}") : Path.Combine(output!, "mqtt");
        if (!temporary && (Directory.Exists(Path.Combine(work, "agents")) || File.Exists(Path.Combine(work, "aggregator.db"))))
            throw new ArgumentException($"'{work}' already holds an MQTT simulation's databases; pick another --out (or add --replace-out).");
        if (!temporary) return await RunInAsync(work, parse, options, train, test, brokerSettings, processes, output, asJson, progress, verbose, cancellationToken).ConfigureAwait(false);
        // Without --out the databases and the aggregator's private signing key live in a temporary folder, removed when
        // the run ends, fails or the process is stopped.
        void Remove(object? sender, EventArgs e) => TryDelete(work);
        AppDomain.CurrentDomain.ProcessExit += Remove;
        // SIGINT/SIGTERM may end the process before this method's finally runs (the command line waits only briefly for the
        // cancelled run): remove the folder right away (open files go with it on Linux) and let the signal proceed.
        using var onInterrupt = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGINT, _ => TryDelete(work));
        using var onTerminate = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, _ => TryDelete(work));
        try
        {
            return await RunInAsync(work, parse, options, train, test, brokerSettings, processes, output, asJson, progress, verbose, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            AppDomain.CurrentDomain.ProcessExit -= Remove;
            TryDelete(work);
        }
    }

    private static void TryDelete(string folder)
    {
        try
        {
            if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            if (!Directory.Exists(folder)) return; // removed meanwhile by the signal handler's call
            Console.Error.WriteLine($"simulate: could not remove the temporary folder {folder} ({e.Message}); it holds the run's private signing key, delete it.");
        }
    }

    private static async Task<int> RunInAsync(string work, ParseResult parse, SimulationOptions options, LabeledData train, LabeledData test, MqttSimulationBroker brokerSettings, int processes, string? output, bool asJson, TextWriter progress, bool verbose, CancellationToken cancellationToken)
    {
        brokerSettings = brokerSettings.Resolve(options);
        string broker = brokerSettings.Broker;
        MqttFleetSimulation.CheckSupported(options);
        progress.WriteLine($"simulate: {options.Vehicles:N0} vehicles ({options.Partition}) over MQTT (broker {broker}{(processes > 1 ? $", agents in {processes} processes" : "")}), cohort {options.CohortSize} per round, {options.Rounds} rounds, E={options.LocalEpochs} B={options.Batch} lr={options.ClientLearningRate.ToString(CultureInfo.InvariantCulture)}, strategy {options.Strategy}, seed {options.Seed}");
        progress.WriteLine($"model {options.Model} ({options.Model.ParameterCount:N0} parameters); codec {options.Codec}, secure aggregation {options.SecureAggregation.ToString().ToLowerInvariant()}, DP {(options.Privacy is { } p ? string.Create(CultureInfo.InvariantCulture, $"{p.Mode.ToString().ToLowerInvariant()} σ={p.NoiseMultiplier} C={p.ClipNorm}") : "off")}; databases under {work}");
        // This process's agents (none with --processes above 1: they live in child processes), and one broker-side socket per vehicle when the broker runs here too.
        long mine = processes > 1 ? 0 : options.Vehicles;
        OpenFileLimit.Ensure(OpenFileLimit.ForAgents(mine, options.Vehicles, options.CohortSize) + (broker.Equals("embedded", StringComparison.OrdinalIgnoreCase) ? options.Vehicles : 0),
            $"this process ({(mine > 0 ? $"{mine:N0} agents" : "the aggregator")}{(broker.Equals("embedded", StringComparison.OrdinalIgnoreCase) ? $", and the broker's {options.Vehicles:N0} connections" : "")})", progress);
        var clock = Stopwatch.StartNew();
        int? roundsToTarget = null;
        // Worker logs (connects, rounds, acks) go to stderr with --verbose-workers.
        using var logs = CliLogging.Create(verbose ? LogLevel.Information : LogLevel.Warning, timestamps: true);
        var result = await MqttFleetSimulation.RunAsync(options, train, test, brokerSettings, work, report =>
        {
            if (roundsToTarget is null && report.TestAccuracy >= options.Target) roundsToTarget = report.Round;
            string privacy = double.IsFinite(report.Epsilon) ? string.Create(CultureInfo.InvariantCulture, $"  ε {report.Epsilon:F2} (fleet, sampled: assumes secret Poisson sampling)  ε {report.MaxVehicleEpsilon:F2} (per vehicle, q = 1)") : "";
            progress.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"round {report.Round,4}/{options.Rounds}  accuracy {report.TestAccuracy:F4}  loss {report.TestLoss:F4}  participants {report.Participants,4}/{report.Selected}  {(report.Applied ? "applied" : $"aborted ({report.AbortReason})")}  up {SimulateCommand.Bytes(report.BytesUp),9}  down {SimulateCommand.Bytes(report.BytesDown),9}{privacy}  {report.Seconds:F2} s"));
            if (asJson)
            {
                CliJson.Write(parse.InvocationConfiguration.Output, new
                {
                    round = report.Round,
                    test_accuracy = report.TestAccuracy,
                    test_loss = report.TestLoss,
                    train_loss = SimulateCommand.Finite(report.TrainLoss),
                    selected = report.Selected,
                    participants = report.Participants,
                    applied = report.Applied,
                    abort_reason = report.AbortReason,
                    bytes_up = report.BytesUp,
                    bytes_down = report.BytesDown,
                    epsilon = SimulateCommand.Finite(report.Epsilon),
                    max_vehicle_epsilon = SimulateCommand.Finite(report.MaxVehicleEpsilon),
                    seconds = report.Seconds,
                });
            }
        }, logs, processes, range => StartAgentProcess(range, work, progress), progress.WriteLine, cancellationToken,
            ShardProcesses ? (shard, endpoint, password) => StartShardProcess(shard, endpoint, password, work, progress) : null).ConfigureAwait(false);
        var reports = result.Rounds;
        var final = reports[^1];
        double seconds = clock.Elapsed.TotalSeconds;
        string? reportPath = null;
        if (output is not null)
        {
            var written = SimulationArtifacts.Write(output, options, StrategyCatalog.Parse(options.Strategy, options.ServerLearningRate).Name, "cpu (agents)", result.FinalModel, reports, roundsToTarget, seconds, $"MQTT ({broker})");
            reportPath = written.FirstOrDefault(p => p.EndsWith("report.html", StringComparison.Ordinal));
            progress.WriteLine($"wrote {string.Join(", ", written)}");
        }
        long up = reports.Sum(r => r.BytesUp), down = reports.Sum(r => r.BytesDown);
        int applied = reports.Count(r => r.Applied);
        string epsilonText = options.Privacy is { } dp
            ? string.Create(CultureInfo.InvariantCulture, $"ε spent {final.Epsilon:F2} at δ = {dp.Delta:G2} (fleet, sampled), {final.MaxVehicleEpsilon:F2} (largest per vehicle)")
            : "no differential privacy";
        progress.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"done: {applied}/{reports.Count} rounds applied over MQTT; final accuracy {final.TestAccuracy:F4}; {epsilonText}; {SimulateCommand.Bytes(up)} received and {SimulateCommand.Bytes(down)} published by the aggregator (the broker copies each {SimulateCommand.Bytes(4L * options.Model.ParameterCount)} model to every vehicle); {result.PendingInOutboxes} messages left in outboxes; {seconds:F1} s"));
        if (reportPath is not null) progress.WriteLine($"report: {reportPath}");
        if (result.AgentProcessPeakResidentBytes is { Count: > 0 } childPeaks && result.PeakResidentBytesAllProcesses is { } all)
            progress.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"peak resident memory: this process {result.PeakResidentBytes / 1e9:F2} GB, agent processes {string.Join(", ", childPeaks.Select(p => (p / 1e9).ToString("F2", CultureInfo.InvariantCulture)))} GB{(result.BrokerPeakResidentBytes is { } brokerPeak ? $", mosquitto {brokerPeak / 1e9:F2} GB" : "")}; {all / 1e9:F2} GB together at most (the sum of each one's own peak)"));
        if (asJson)
            CliJson.Write(parse.InvocationConfiguration.Output, new
            {
                summary = true,
                transport = "mqtt",
                final_accuracy = final.TestAccuracy,
                model_sha256 = Core.Model.Checkpoint.ParameterHash(result.FinalModel),
                rounds = reports.Count,
                rounds_applied = applied,
                seconds,
                rounds_to_target = roundsToTarget,
                bytes_up = up,
                bytes_down = down,
                epsilon = SimulateCommand.Finite(final.Epsilon),
                max_vehicle_epsilon = SimulateCommand.Finite(final.MaxVehicleEpsilon),
                pending_in_outboxes = result.PendingInOutboxes,
                peak_rss_bytes = result.PeakResidentBytes,
                agent_processes_peak_rss_bytes = result.AgentProcessPeakResidentBytes,
                broker_peak_rss_bytes = result.BrokerPeakResidentBytes,
                peak_rss_bytes_all_processes = result.PeakResidentBytesAllProcesses, // the sum of each process's own peak: an upper bound
                report = reportPath,
            });
        return 0;
    }

    /// <summary>Starts this executable again, with the same arguments plus <see cref="AgentRangeOption"/>, to host vehicles [from, to).</summary>
    private static AgentProcess StartAgentProcess(AgentRange range, string work, TextWriter progress)
    {
        var args = Environment.GetCommandLineArgs().Skip(1).ToList();
        string exe = Environment.ProcessPath ?? throw new InvalidOperationException("Cannot find this executable to start agent processes.");
        if (Path.GetFileNameWithoutExtension(exe) == "dotnet") args.Insert(0, typeof(SimulateMqttCommand).Assembly.Location);
        var e = range.Endpoint;
        args.AddRange([AgentRangeOption, FormattableString.Invariant($"{range.From}:{range.To}:{e.Scheme}://{e.Host}:{e.Port}"), "--agent-work", work]);
        var start = new ProcessStartInfo(exe, args) { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (e.VehiclePassword is { } vehiclePassword) start.Environment[AgentEndpoint.VehiclePasswordVariable] = vehiclePassword; // not in ps
        var process = Process.Start(start) ?? throw new InvalidOperationException("Could not start an agent process.");
        var child = new AgentProcess(process);
        process.OutputDataReceived += (_, line) => child.OnOutput(line.Data); // its report when it stops
        process.ErrorDataReceived += (_, line) =>
        {
            if (line.Data is { Length: > 0 } text) progress.WriteLine($"[agents {range.From}..{range.To - 1}] {text}");
        };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        progress.WriteLine($"started agent process {process.Id} for vehicles {range.From}..{range.To - 1}");
        return child;
    }

    /// <summary>The child side of <c>--processes</c>: hosts vehicles FROM..TO until the parent stops it.</summary>
    public static async Task<int> RunAgentsAsync(SimulationOptions options, LabeledData train, string range, string work, string? certificates, bool verbose)
    {
        // Stops on SIGTERM/SIGINT, and when the parent goes away (its end of our stdin closes): no orphaned fleets.
        using var stop = new CancellationTokenSource();
        using var term = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Cancel(); });
        using var interrupt = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGINT, c => { c.Cancel = true; stop.Cancel(); });
        _ = Task.Run(() =>
        {
            while (Console.In.ReadLine() is not null) { }
            stop.Cancel();
        });
        var cancellationToken = stop.Token;
        var parts = range.Split(':', 3);
        if (parts.Length != 3 || !int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out int from) || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int to)
            || !Uri.TryCreate(parts[2], UriKind.Absolute, out var uri))
            throw new ArgumentException($"{AgentRangeOption} '{range}': expected FROM:TO:SCHEME://HOST:PORT.");
        // Without --broker-certs an mqtts endpoint is the embedded broker of --secagg-malicious, whose CA the parent wrote into the work folder.
        certificates ??= uri.Scheme == "mqtts" ? Path.Combine(work, SimulationCertificates.FolderName) : null;
        var endpoint = new AgentEndpoint(uri.Scheme, uri.Host, uri.Port, certificates, Path.Combine(work, "aggregator-signing.pub.pem"))
        {
            VehiclePassword = Environment.GetEnvironmentVariable(AgentEndpoint.VehiclePasswordVariable),
        };
        int agents = Math.Max(0, Math.Min(to, options.Vehicles) - from);
        OpenFileLimit.Ensure(OpenFileLimit.ForAgents(agents, options.Vehicles, options.CohortSize), $"an agent process of {agents:N0} agents", Console.Error);
        using var logs = CliLogging.Create(verbose ? LogLevel.Information : LogLevel.Warning, timestamps: true);
        var partitions = Partitioner.Split(train.Labels, options.Vehicles, options.Partition, options.Seed);
        var started = Stopwatch.StartNew();
        await using var host = await AgentHost.StartAsync(options, train, partitions, new AgentRange(from, Math.Min(to, options.Vehicles), endpoint), work, logs, cancellationToken).ConfigureAwait(false);
        Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{host.Agents.Count:N0} agents started in {started.Elapsed.TotalSeconds:F1} s, {host.Agents.Count(a => a.IsConnected):N0} of them connected"));
        Console.Out.WriteLine(AgentProcess.StartedLine(host.Agents.Count)); // the parent opens round 1 once every agent process has said so
        await Console.Out.FlushAsync(CancellationToken.None).ConfigureAwait(false);
        try
        {
            await Task.Delay(Timeout.Infinite, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // stopped by the parent (signal, or its end of our stdin closed)
        }
        // What the parent counts as left in outboxes: the last acknowledgements may still be on their way.
        await host.WaitForEmptyOutboxesAsync(TimeSpan.FromSeconds(10), CancellationToken.None).ConfigureAwait(false);
        Console.Out.WriteLine(AgentProcess.PendingLine(host.PendingInOutboxes));
        await Console.Out.FlushAsync(CancellationToken.None).ConfigureAwait(false);
        return 0;
    }
}
