using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using FleetLearn.Compute;
using FleetLearn.Core.Model;
using FleetLearn.Core.Random;
using FleetLearn.Core.Training;
using FleetLearn.Perception.Datasets;

namespace FleetLearn.Cli.Commands;

/// <summary>
/// <c>fleetlearn bench train</c>: local-training throughput, timed exactly like
/// <c>peer_torch.py speed</c>: plain SGD (lr 0.05), a warm-up epoch over 2,000 images, then one
/// timed epoch over the first N images in a fresh random order (gather, forward, backward, update).
/// </summary>
internal static class BenchTrainCommand
{
    public static Command Create()
    {
        var batch = new Option<int>("--batch") { Description = "Mini-batch size.", DefaultValueFactory = _ => 50 };
        var threads = new Option<int>("--threads") { Description = "CPU threads.", DefaultValueFactory = _ => 1 };
        var samples = new Option<int>("--samples") { Description = "Images in the timed epoch.", DefaultValueFactory = _ => 20000 };
        var model = new Option<string>("--model") { Description = "Layer widths.", DefaultValueFactory = _ => "784-200-200-10" };
        var backend = new Option<string>("--backend") { Description = "cpu, auto, ilgpu.", DefaultValueFactory = _ => "cpu" };
        var repeat = new Option<int>("--repeat") { Description = "Timed epochs; the best is reported.", DefaultValueFactory = _ => 1 };
        var data = new Option<string?>("--data") { Description = "Fashion-MNIST folder." };
        var json = new Option<bool>("--json") { Description = "End with one JSON line on stdout." };
        var command = new Command("train", "Training throughput of one vehicle's local loop (samples/s).")
        {
            batch, threads, samples, model, backend, repeat, data, json,
        };
        command.SetAction(parse =>
        {
            var spec = ModelSpec.Parse(parse.GetValue(model)!);
            int batchSize = parse.GetValue(batch), threadCount = parse.GetValue(threads);
            var train = CliData.LoadTrain(parse.GetValue(data), parse.InvocationConfiguration.Error);
            int n = Math.Clamp(parse.GetValue(samples), 1, train.Count);
            using var trainer = TrainerFactory.Create(TrainerFactory.Parse(parse.GetValue(backend)!), spec, batchSize, threadCount, parse.InvocationConfiguration.Error.WriteLine);
            trainer.LoadParameters(ModelInitializer.Initialize(spec, 0));
            var sgd = new SgdOptions(0.05f);
            var schedule = new LearningRateSchedule.Constant(0.05f);
            var rng = new DeterministicRandom(0);
            long step = 0;
            var warm = Enumerable.Range(0, Math.Min(2000, n)).ToArray();
            TrainingLoop.RunEpoch(trainer, train, warm, batchSize, sgd, schedule, ref step, 0, rng);
            var indices = Enumerable.Range(0, n).ToArray();
            double best = 0;
            for (int r = 0; r < Math.Max(1, parse.GetValue(repeat)); r++)
            {
                var sw = Stopwatch.StartNew();
                TrainingLoop.RunEpoch(trainer, train, indices, batchSize, sgd, schedule, ref step, 0, rng);
                double rate = n / sw.Elapsed.TotalSeconds;
                best = Math.Max(best, rate);
                parse.InvocationConfiguration.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"epoch {r + 1}: {rate:N0} samples/s ({sw.Elapsed.TotalSeconds:F3} s)"));
            }
            parse.InvocationConfiguration.Output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"fleetlearn {trainer.Description} batch={batchSize} samples={n} samples_per_s={best:F0}"));
            if (parse.GetValue(json))
                CliJson.Write(parse.InvocationConfiguration.Output, new { samples_per_second = best, batch = batchSize, threads = threadCount, samples = n, backend = trainer.Description, model = spec.ToString() });
            return 0;
        });
        return command;
    }
}
