using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using FleetLearn.Core.Training;
using FleetLearn.Simulation;
using Microsoft.Extensions.Logging;

namespace FleetLearn.Cli.Commands;

/// <summary><c>fleetlearn simulate --transport mqtt</c>: the virtual fleet over a real broker with the real agent and aggregator workers.</summary>
internal static class SimulateMqttCommand
{
    public static int Run(ParseResult parse, SimulationOptions options, LabeledData train, LabeledData test, string broker, int processes, string? output, bool asJson, TextWriter progress, bool verbose)
    {
        if (processes != 1) throw new ArgumentException("--processes: only 1 is implemented so far (every agent runs in this process, each with its own MQTT connection).");
        string work = output ?? Path.Combine(Path.GetTempPath(), $"fleetlearn-mqtt-{Environment.ProcessId}");
        if (Directory.Exists(Path.Combine(work, "agents")) || File.Exists(Path.Combine(work, "aggregator.db")))
            throw new ArgumentException($"'{work}' already holds an MQTT simulation's databases; pick another --out.");
        progress.WriteLine($"simulate: {options.Vehicles:N0} vehicles ({options.Partition}) over MQTT (broker {broker}), cohort {options.CohortSize} per round, {options.Rounds} rounds, E={options.LocalEpochs} B={options.Batch} lr={options.ClientLearningRate.ToString(CultureInfo.InvariantCulture)}, strategy {options.Strategy}, seed {options.Seed}");
        progress.WriteLine($"model {options.Model} ({options.Model.ParameterCount:N0} parameters); databases under {work}");
        var clock = Stopwatch.StartNew();
        int? roundsToTarget = null;
        // Worker logs (connects, rounds, acks) go to stderr with --verbose-workers.
        using var logs = Microsoft.Extensions.Logging.LoggerFactory.Create(b => b.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss.fff "; })
            .SetMinimumLevel(verbose ? Microsoft.Extensions.Logging.LogLevel.Information : Microsoft.Extensions.Logging.LogLevel.Warning));
        var reports = MqttFleetSimulation.RunAsync(options, train, test, broker, work, report =>
        {
            if (roundsToTarget is null && report.TestAccuracy >= options.Target) roundsToTarget = report.Round;
            progress.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"round {report.Round,4}/{options.Rounds}  accuracy {report.TestAccuracy:F4}  loss {report.TestLoss:F4}  participants {report.Participants,4}/{report.Selected}  {(report.Applied ? "applied" : "aborted")}  up {SimulateCommand.Bytes(report.BytesUp),9}  {report.Seconds:F2} s"));
            if (asJson)
            {
                CliJson.Write(parse.InvocationConfiguration.Output, new
                {
                    round = report.Round,
                    test_accuracy = report.TestAccuracy,
                    test_loss = report.TestLoss,
                    train_loss = report.TrainLoss,
                    selected = report.Selected,
                    participants = report.Participants,
                    applied = report.Applied,
                    bytes_up = report.BytesUp,
                    seconds = report.Seconds,
                });
            }
        }, logs).GetAwaiter().GetResult();
        var final = reports[^1];
        double seconds = clock.Elapsed.TotalSeconds;
        progress.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"done: final accuracy {final.TestAccuracy:F4} after {reports.Count} rounds over MQTT; {(roundsToTarget is { } r ? $"reached {options.Target:F2} at round {r}" : $"did not reach {options.Target:F2}")}; {seconds:F1} s"));
        if (asJson)
            CliJson.Write(parse.InvocationConfiguration.Output, new { summary = true, transport = "mqtt", final_accuracy = final.TestAccuracy, rounds = reports.Count, seconds, rounds_to_target = roundsToTarget });
        return 0;
    }
}
