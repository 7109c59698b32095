using System.CommandLine;
using System.Globalization;
using FleetLearn.Core.Compression;
using FleetLearn.Core.Model;
using FleetLearn.Simulation;
using FleetLearn.Transport.Mqtt;

namespace FleetLearn.Cli.Commands;

/// <summary><c>fleetlearn bench ingest</c>: the aggregator's receive path (chunks, envelope, decode, dedupe, fold) against memcpy, same run.</summary>
internal static class BenchIngestCommand
{
    public static Command Create()
    {
        var updates = new Option<int>("--updates") { Description = "Updates (one per vehicle) received per pass.", DefaultValueFactory = _ => 200 };
        var model = new Option<string>("--model") { Description = "Model whose updates are received (the demo's 2NN by default).", DefaultValueFactory = _ => "784-200-200-10" };
        var plainCodec = new Option<string>("--codec") { Description = "Codec of the plain updates.", DefaultValueFactory = _ => "none" };
        var maskedCodec = new Option<string>("--masked-codec") { Description = "Codec under SecAgg+ (the demo's).", DefaultValueFactory = _ => "rot+q8" };
        var neighbors = new Option<int>("--neighbors") { Description = "SecAgg+ neighbours per vehicle.", DefaultValueFactory = _ => 16 };
        var paths = new Option<string>("--paths") { Description = "plain, masked, or both.", DefaultValueFactory = _ => "both" };
        var repeats = new Option<int>("--repeat") { Description = "Timed passes (after untimed warm-up passes, until the JIT has settled); the best is reported.", DefaultValueFactory = _ => 3 };
        var json = new Option<bool>("--json") { Description = "One JSON line per path on stdout." };
        var command = new Command("ingest", "The aggregator's receive path (chunk reassembly, envelope, decode, dedupe, fold; plain and masked) against same-run memcpy of the same bytes.")
        {
            updates, model, plainCodec, maskedCodec, neighbors, paths, repeats, json,
        };
        command.SetAction(parse =>
        {
            int n = parse.GetValue(updates), r = Math.Max(1, parse.GetValue(repeats));
            if (n < 3) throw new ArgumentException("--updates must be at least 3 (a secure sum needs three vehicles).");
            int d = ModelSpec.Parse(parse.GetValue(model)!).ParameterCount;
            string which = parse.GetValue(paths)!.Trim().ToLowerInvariant();
            if (which is not ("plain" or "masked" or "both")) throw new ArgumentException($"--paths '{parse.GetValue(paths)}': expected plain, masked or both.");
            int chunk = new MqttTransportOptions().MaxPacketSize; // the agent's default chunking
            var log = parse.InvocationConfiguration.Error;
            var results = new List<IngestPathResult>();
            if (which is "plain" or "both") results.Add(IngestBenchmark.Plain(n, d, CodecSpec.Parse(parse.GetValue(plainCodec)!), chunk, r, log.WriteLine));
            if (which is "masked" or "both") results.Add(IngestBenchmark.Masked(n, d, CodecSpec.Parse(parse.GetValue(maskedCodec)!), parse.GetValue(neighbors), chunk, r, log.WriteLine));
            foreach (var x in results)
            {
                parse.InvocationConfiguration.Output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"ingest {x.Path}: {x.Updates} updates × {x.Dimension:N0} parameters, {x.WireBytes / 1e6:N1} MB: {x.MegabytesPerSecond:N0} MB/s ({x.UpdatesPerSecond:N0} updates/s), memcpy {x.MemcpyMegabytesPerSecond:N0} MB/s, ratio {x.RatioToMemcpy:F3}; memcpy into fresh memory {x.MemcpyFreshMegabytesPerSecond:N0} MB/s; XXH3-128 alone {x.ChecksumMegabytesPerSecond:N0} MB/s, so at most {x.RatioBoundByChecksum:F3}; SHA-256 alone {x.Sha256MegabytesPerSecond:N0} MB/s; {x.AllocatedPerWireByte:F4} bytes allocated per byte"));
                if (parse.GetValue(json))
                {
                    CliJson.Write(parse.InvocationConfiguration.Output, new
                    {
                        path = x.Path,
                        updates = x.Updates,
                        dim = x.Dimension,
                        wire_bytes = x.WireBytes,
                        mb_per_s = x.MegabytesPerSecond,
                        updates_per_s = x.UpdatesPerSecond,
                        memcpy_mb_per_s = x.MemcpyMegabytesPerSecond,
                        memcpy_fresh_mb_per_s = x.MemcpyFreshMegabytesPerSecond,
                        ratio_to_memcpy = x.RatioToMemcpy,
                        reassembly_s = x.Stages.Reassembly,
                        decode_s = x.Stages.Decode,
                        admit_and_fold_s = x.Stages.Receive,
                        sha256_mb_per_s = x.Sha256MegabytesPerSecond,
                        ratio_bound_by_sha256 = x.RatioBoundBySha256,
                        checksum_mb_per_s = x.ChecksumMegabytesPerSecond,
                        ratio_bound_by_checksum = x.RatioBoundByChecksum,
                        allocated_bytes = x.AllocatedBytes,
                        allocated_per_wire_byte = x.AllocatedPerWireByte,
                    });
                }
            }
            return 0;
        });
        return command;
    }
}
