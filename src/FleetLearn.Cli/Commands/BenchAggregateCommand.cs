using System.CommandLine;
using System.Globalization;
using FleetLearn.Simulation;

namespace FleetLearn.Cli.Commands;

/// <summary><c>fleetlearn bench aggregate</c>: the server's streaming fold against memcpy, same run.</summary>
internal static class BenchAggregateCommand
{
    public static Command Create()
    {
        var updates = new Option<int>("--updates") { Description = "Updates folded.", DefaultValueFactory = _ => 200 };
        var dim = new Option<int>("--dim") { Description = "Parameters per update.", DefaultValueFactory = _ => 1_000_000 };
        var repeats = new Option<int>("--repeat") { Description = "Passes; the best is reported.", DefaultValueFactory = _ => 5 };
        var json = new Option<bool>("--json") { Description = "End with one JSON line on stdout." };
        var command = new Command("aggregate", "Streaming aggregation throughput against same-run memcpy bandwidth.") { updates, dim, repeats, json };
        command.SetAction(parse =>
        {
            int n = parse.GetValue(updates), d = parse.GetValue(dim);
            if (n < 1 || d < 1 || d > 500_000_000) throw new ArgumentException("--updates must be ≥ 1 and --dim within 1..500,000,000.");
            var r = AggregationBenchmark.Run(n, d, Math.Max(1, parse.GetValue(repeats)), parse.InvocationConfiguration.Error.WriteLine);
            parse.InvocationConfiguration.Output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"aggregate {n} updates × {d:N0}: {r.InputGigabytesPerSecond:F2} GB/s folded, memcpy {r.MemcpyGigabytesPerSecond:F2} GB/s ({100 * r.InputGigabytesPerSecond / r.MemcpyGigabytesPerSecond:F0}%), peak managed {r.PeakManagedMegabytes:F1} MiB = {r.PeakManagedMegabytes / r.ModelMegabytes:F2} model sizes"));
            if (parse.GetValue(json))
            {
                CliJson.Write(parse.InvocationConfiguration.Output, new
                {
                    input_gb_per_s = r.InputGigabytesPerSecond,
                    memcpy_gb_per_s = r.MemcpyGigabytesPerSecond,
                    ratio = r.InputGigabytesPerSecond / r.MemcpyGigabytesPerSecond,
                    peak_managed_mb = r.PeakManagedMegabytes,
                    model_mb = r.ModelMegabytes,
                    updates = n,
                    dim = d,
                });
            }
            return 0;
        });
        return command;
    }
}
