using System.CommandLine;
using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using FleetLearn.Core.Random;
using FleetLearn.Perception.Datasets;
using FleetLearn.Perception.Onnx;

namespace FleetLearn.Cli.Commands;

/// <summary>
/// <c>fleetlearn bench extract</c>: feature-extraction throughput of a backbone through ONNX Runtime (frames/s) at each
/// batch size asked for (batch 1 is how a vehicle streaming frames one by one would run it), and for ResNet18 the same
/// network in PyTorch (torchvision, <c>bench/peer_resnet18.py</c>) measured in the same run at the same thread count.
/// </summary>
internal static class BenchExtractCommand
{
    public static Command Create()
    {
        var backbone = new BackboneCli("--backbone", "'generated' or an ONNX file.", "generated");
        var frames = new Option<int?>("--frames") { Description = "Frames per timed pass and batch size (default 10,000; 64 for resnet18)." };
        var batch = new Option<string?>("--batch") { Description = "Batch sizes to time, comma-separated; batch 1 is always timed too (default 64; 1,4,8,16,32 for resnet18)." };
        var repeat = new Option<int>("--repeat") { Description = "Timed passes per batch size; the best is reported.", DefaultValueFactory = _ => 3 };
        var data = new Option<string?>("--data") { Description = "Fashion-MNIST folder (frames for a 1x28x28 backbone; others get random frames)." };
        var json = new Option<bool>("--json") { Description = "End with one JSON line on stdout." };
        var peer = new Option<string>("--peer") { Description = "auto (torchvision for resnet18, none otherwise) | torchvision | none.", DefaultValueFactory = _ => "auto" };
        var python = new Option<string?>("--python") { Description = "Python with torch and torchvision for the peer (default /usr/bin/python3, Debian's python3-torchvision)." };
        var command = new Command("extract", "Feature-extraction throughput of a backbone (frames/s) per batch size, next to PyTorch's for resnet18.")
        {
            frames, batch, repeat, data, json, peer, python,
        };
        foreach (var o in backbone.All) command.Options.Add(o);
        command.SetAction(parse =>
        {
            var stdout = parse.InvocationConfiguration.Output;
            var stderr = parse.InvocationConfiguration.Error;
            bool resnet = ResNet18Backbone.Matches(parse.GetValue(backbone.Backbone)!);
            var batches = ParseBatches(parse.GetValue(batch) ?? (resnet ? "1,4,8,16,32" : "64"));
            int n = Math.Max(1, parse.GetValue(frames) ?? (resnet ? 64 : 10_000));
            int repeats = Math.Max(1, parse.GetValue(repeat));
            bool runPeer = parse.GetValue(peer)!.Trim().ToLowerInvariant() switch
            {
                "auto" => resnet,
                "torchvision" => true,
                "none" => false,
                var other => throw new ArgumentException($"--peer '{other}': expected auto, torchvision or none."),
            };
            if (runPeer && !resnet) throw new ArgumentException("--peer torchvision measures torchvision's ResNet18: use it with --backbone resnet18.");
            // The same thread count on both sides: an explicit one, else one per core (ONNX Runtime's default).
            int threads = parse.GetValue(backbone.Threads) is > 0 and var t ? t : Environment.ProcessorCount;

            using var model = backbone.Open(parse, stderr.WriteLine, batches.Max(), threads);
            int timed = (n + batches.Max() - 1) / batches.Max() * batches.Max();
            var input = Frames(model, timed, parse.GetValue(data));
            var output = new float[(long)timed * model.OutputSize];
            var rates = new SortedDictionary<int, double>();
            foreach (int b in batches)
            {
                int frameCount = (n + b - 1) / b * b;
                model.Run(input.AsSpan(0, b * model.RowSize), b, output); // warm-up at this shape
                double best = 0;
                for (int r = 0; r < repeats; r++)
                {
                    var sw = Stopwatch.StartNew();
                    for (int done = 0; done < frameCount; done += b)
                        model.Run(input.AsSpan(done * model.RowSize, b * model.RowSize), b, output.AsSpan(done * model.OutputSize, b * model.OutputSize));
                    best = Math.Max(best, frameCount / sw.Elapsed.TotalSeconds);
                }
                rates[b] = best;
                stderr.WriteLine(string.Create(CultureInfo.InvariantCulture, $"fleetlearn batch {b}: {best:N1} frames/s"));
            }
            var (bestBatch, bestRate) = rates.MaxBy(kv => kv.Value);
            double single = rates[1];

            Dictionary<int, double>? peerRates = null;
            string? peerError = null;
            if (runPeer)
            {
                try
                {
                    peerRates = RunPeer(parse.GetValue(python), batches, threads, n, repeats, stderr);
                }
                catch (Exception e) when (e is InvalidOperationException or Win32Exception or IOException or JsonException)
                {
                    peerError = e.Message;
                    stderr.WriteLine($"peer: {e.Message}");
                }
            }
            double? peerBest = peerRates?.Values.Max(), peerSingle = peerRates?.GetValueOrDefault(1);
            int? peerBestBatch = peerRates?.MaxBy(kv => kv.Value).Key;

            stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"extract {model.Name} [{string.Join("x", model.RowShape)}] → {model.OutputSize} features on {model.ExecutionProvider} ({threads} threads): best batch {bestBatch}: {bestRate:N1} frames/s; batch 1: {single:N1} frames/s; batched/single = {bestRate / single:F2}×"));
            if (peerBest is { } pb)
                stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"peer torchvision resnet18 ({threads} threads): best batch {peerBestBatch}: {pb:N1} frames/s; batch 1: {peerSingle:N1} frames/s; fleetlearn/peer = {bestRate / pb:F2}× at the best batch, {single / peerSingle:F2}× at batch 1"));
            if (parse.GetValue(json))
            {
                CliJson.Write(stdout, new
                {
                    frames_per_second = bestRate,
                    best_batch = bestBatch,
                    frames_per_second_batch1 = single,
                    single_frame_per_second = single,
                    ratio = bestRate / single,
                    batch = bestBatch,
                    by_batch = rates.ToDictionary(kv => kv.Key.ToString(CultureInfo.InvariantCulture), kv => kv.Value),
                    frames = n,
                    provider = model.ExecutionProvider,
                    threads,
                    feature_size = model.OutputSize,
                    peer = peerRates is null ? null : new
                    {
                        name = "torchvision resnet18 (bench/peer_resnet18.py)",
                        frames_per_second = peerBest,
                        best_batch = peerBestBatch,
                        frames_per_second_batch1 = peerSingle,
                        by_batch = peerRates.ToDictionary(kv => kv.Key.ToString(CultureInfo.InvariantCulture), kv => kv.Value),
                    },
                    peer_error = peerError,
                    vs_peer = peerBest is { } p ? bestRate / p : (double?)null,
                    vs_peer_batch1 = peerSingle is { } p1 && p1 > 0 ? single / p1 : (double?)null,
                });
            }
            return 0;
        });
        return command;
    }

    private static int[] ParseBatches(string text)
    {
        var list = new SortedSet<int> { 1 };
        foreach (var part in text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            if (!int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out int b) || b < 1 || b > 4096)
                throw new ArgumentException($"--batch '{text}': '{part}' is not a batch size in 1..4096.");
            list.Add(b);
        }
        return [.. list];
    }

    /// <summary>Runs bench/peer_resnet18.py (embedded in this binary, written to a temporary file) and reads its JSON lines.</summary>
    private static Dictionary<int, double> RunPeer(string? python, int[] batches, int threads, int frames, int repeats, TextWriter log)
    {
        python ??= File.Exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
        using var resource = typeof(BenchExtractCommand).Assembly.GetManifestResourceStream("peer_resnet18.py")
            ?? throw new InvalidOperationException("the peer script is not embedded in this build");
        string script = Path.Combine(Path.GetTempPath(), $"fleetlearn-peer-resnet18-{Environment.ProcessId}.py");
        using (var file = File.Create(script)) resource.CopyTo(file);
        try
        {
            var start = new ProcessStartInfo(python) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (var a in new[] { script, "--batches", string.Join(",", batches), "--threads", threads.ToString(CultureInfo.InvariantCulture),
                "--frames", frames.ToString(CultureInfo.InvariantCulture), "--repeat", repeats.ToString(CultureInfo.InvariantCulture) })
                start.ArgumentList.Add(a);
            start.Environment["OMP_NUM_THREADS"] = threads.ToString(CultureInfo.InvariantCulture);
            using var process = Process.Start(start) ?? throw new InvalidOperationException($"'{python}' did not start");
            // stderr drains on the process's own reader thread (so a full pipe cannot block the peer); WaitForExit() waits for it.
            var errors = new System.Collections.Concurrent.ConcurrentQueue<string>();
            process.ErrorDataReceived += (_, e) => { if (e.Data is { Length: > 0 } text) errors.Enqueue(text); };
            process.BeginErrorReadLine();
            var rates = new Dictionary<int, double>();
            while (process.StandardOutput.ReadLine() is { } line)
            {
                using var doc = JsonDocument.Parse(line);
                int b = doc.RootElement.GetProperty("batch").GetInt32();
                double r = doc.RootElement.GetProperty("frames_per_second").GetDouble();
                rates[b] = r;
                log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"peer batch {b}: {r:N1} frames/s"));
            }
            process.WaitForExit();
            if (process.ExitCode != 0 || rates.Count == 0)
                throw new InvalidOperationException($"the torchvision peer ('{python}') failed (exit {process.ExitCode}): {errors.LastOrDefault()} (Debian: apt-get install python3-torchvision)");
            return rates;
        }
        finally
        {
            File.Delete(script);
        }
    }

    private static float[] Frames(OnnxModel model, int n, string? dataFolder)
    {
        var frames = new float[(long)n * model.RowSize];
        if (model.RowShape.SequenceEqual([1, 28, 28]))
        {
            var test = FashionMnist.LoadTest(dataFolder);
            for (int i = 0; i < n; i++) test.Row(i % test.Count).CopyTo(frames.AsSpan(i * 784, 784));
            return frames;
        }
        var rng = new DeterministicRandom(5);
        for (int i = 0; i < frames.Length; i++) frames[i] = rng.NextSingle();
        return frames;
    }
}
