using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using FleetLearn.Core.Random;
using FleetLearn.Perception.Datasets;
using FleetLearn.Perception.Onnx;

namespace FleetLearn.Cli.Commands;

/// <summary>
/// <c>fleetlearn bench extract</c>: feature-extraction throughput of a backbone through ONNX Runtime (frames/s),
/// batched against one frame per call (how a vehicle streaming frames one by one would run it), in the same run.
/// </summary>
internal static class BenchExtractCommand
{
    public static Command Create()
    {
        var backbone = new BackboneCli("--backbone", "'generated' or an ONNX file.", "generated");
        var frames = new Option<int>("--frames") { Description = "Frames in the timed pass.", DefaultValueFactory = _ => 10_000 };
        var batch = new Option<int>("--batch") { Description = "Frames per ONNX Runtime call.", DefaultValueFactory = _ => 64 };
        var repeat = new Option<int>("--repeat") { Description = "Timed passes; the best is reported.", DefaultValueFactory = _ => 3 };
        var data = new Option<string?>("--data") { Description = "Fashion-MNIST folder (frames for a 1x28x28 backbone; others get random frames)." };
        var json = new Option<bool>("--json") { Description = "End with one JSON line on stdout." };
        var command = new Command("extract", "Feature-extraction throughput of a backbone (frames/s), batched vs one frame per call.")
        {
            frames, batch, repeat, data, json,
        };
        foreach (var o in backbone.All) command.Options.Add(o);
        command.SetAction(parse =>
        {
            var stdout = parse.InvocationConfiguration.Output;
            var stderr = parse.InvocationConfiguration.Error;
            int n = Math.Max(1, parse.GetValue(frames)), batchSize = Math.Max(1, parse.GetValue(batch));
            using var model = backbone.Open(parse, stderr.WriteLine, batchSize);
            var input = Frames(model, n, parse.GetValue(data));
            var output = new float[(long)n * model.OutputSize];

            model.Run(input.AsSpan(0, Math.Min(n, batchSize) * model.RowSize), Math.Min(n, batchSize), output); // warm-up
            double best = 0;
            for (int r = 0; r < Math.Max(1, parse.GetValue(repeat)); r++)
            {
                var sw = Stopwatch.StartNew();
                model.Run(input, n, output);
                double rate = n / sw.Elapsed.TotalSeconds;
                best = Math.Max(best, rate);
                stderr.WriteLine(string.Create(CultureInfo.InvariantCulture, $"pass {r + 1}: {rate:N0} frames/s ({sw.Elapsed.TotalSeconds:F3} s)"));
            }

            // The peer in the same run: one frame per call, on the same session and frames.
            int singles = Math.Min(n, 2000);
            var one = new float[model.OutputSize];
            var watch = Stopwatch.StartNew();
            for (int i = 0; i < singles; i++) model.Run(input.AsSpan(i * model.RowSize, model.RowSize), 1, one);
            double singleRate = singles / watch.Elapsed.TotalSeconds;

            int threads = parse.GetValue(backbone.Threads);
            stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"extract {model.Name} [{string.Join("x", model.RowShape)}] → {model.OutputSize} features on {model.ExecutionProvider} ({(threads == 0 ? "default" : threads.ToString(CultureInfo.InvariantCulture))} threads): batch {model.BatchSize}: {best:N0} frames/s; batch 1: {singleRate:N0} frames/s; batched/single = {best / singleRate:F2}×"));
            if (parse.GetValue(json))
            {
                CliJson.Write(stdout, new
                {
                    frames_per_second = best,
                    single_frame_per_second = singleRate,
                    ratio = best / singleRate,
                    batch = model.BatchSize,
                    frames = n,
                    provider = model.ExecutionProvider,
                    threads,
                    feature_size = model.OutputSize,
                });
            }
            return 0;
        });
        return command;
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
