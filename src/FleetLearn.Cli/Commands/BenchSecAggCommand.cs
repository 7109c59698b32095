using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Cli.Commands;

/// <summary><c>fleetlearn bench secagg</c>: one real SecAgg / SecAgg+ round in-process, timed per side.</summary>
internal static class BenchSecAggCommand
{
    public static Command Create()
    {
        var clients = new Option<int>("--clients") { Description = "Cohort size n.", DefaultValueFactory = _ => 1000 };
        var dim = new Option<int>("--dim") { Description = "Coordinates per update.", DefaultValueFactory = _ => 100_000 };
        var dropout = new Option<double>("--dropout") { Description = "Fraction of vehicles that drop after ShareKeys.", DefaultValueFactory = _ => 0.1 };
        var neighbors = new Option<int?>("--neighbors") { Description = "SecAgg+ neighbours k (even on the ring); omit for the complete graph (classic SecAgg)." };
        var seed = new Option<int>("--seed") { Description = "Simulation seed (inputs, dropouts, public round seed).", DefaultValueFactory = _ => 1 };
        var bits = new Option<int>("--bits") { Description = "Bit width m of the modular sum.", DefaultValueFactory = _ => 32 };
        var threads = new Option<int>("--server-threads") { Description = "Server mask-removal threads.", DefaultValueFactory = _ => 1 };
        var holders = new Option<string>("--holders")
        {
            Description = "SecAgg+ share holders: ring (the Harary ring from the round seed) or self (each vehicle draws its own k; the mode against a malicious aggregator).",
            DefaultValueFactory = _ => "ring",
        };
        holders.AcceptOnlyFromAmong("ring", "self");
        var json = new Option<bool>("--json") { Description = "Print one JSON object as the last line of stdout." };
        var cmd = new Command("secagg", "Benchmark secure aggregation (Bonawitz et al. 2017 / SecAgg+): client and server time, bytes, expansion.")
        {
            clients, dim, dropout, neighbors, seed, bits, threads, holders, json,
        };
        cmd.SetAction(parseResult =>
        {
            var progress = new StderrProgress();
            SecAggBenchmarkResult r;
            try
            {
                r = SecAggBenchmark.Run(parseResult.GetValue(clients), parseResult.GetValue(dim), parseResult.GetValue(dropout),
                    parseResult.GetValue(neighbors), parseResult.GetValue(seed), progress, parseResult.GetValue(bits), parseResult.GetValue(threads),
                    parseResult.GetValue(holders) == "self" ? HolderSelection.SelfChosen : HolderSelection.SeedRing);
            }
            catch (Exception e) when (e is SecAggConfigurationException or ArgumentException)
            {
                Console.Error.WriteLine($"error: {e.Message}");
                return 2;
            }
            Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"clients {r.Clients}, dim {r.Dimension}, {(r.Neighbors is { } k ? $"SecAgg+ k = {k}{(r.Holders == HolderSelection.SelfChosen ? " (self-chosen holders)" : "")}" : "complete graph")}, t = {r.Threshold}, m = {r.BitWidth}, dropped {r.Dropped}, server threads {r.ServerThreads}"));
            Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"client {r.ClientSeconds:F4} s (max {r.ClientSecondsMax:F4} s), server {r.ServerSeconds:F3} s, {r.BytesPerClient:F0} bytes/client, expansion {r.Expansion:F4}"));
            if (parseResult.GetValue(json))
            {
                Console.Out.WriteLine(JsonSerializer.Serialize(new Dictionary<string, double>
                {
                    ["client_seconds"] = r.ClientSeconds,
                    ["server_seconds"] = r.ServerSeconds,
                    ["bytes_per_client"] = r.BytesPerClient,
                    ["expansion"] = r.Expansion,
                }));
            }
            return 0;
        });
        return cmd;
    }

    private sealed class StderrProgress : IProgress<string>
    {
        public void Report(string value) => Console.Error.WriteLine(value);
    }
}
