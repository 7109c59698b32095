using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using FleetLearn.Compute;
using FleetLearn.Core.Model;
using FleetLearn.Core.Random;
using FleetLearn.Core.Training;
using FleetLearn.Perception.Datasets;

namespace FleetLearn.Cli.Commands;

/// <summary><c>fleetlearn train</c>: centralized training of the perception head on Fashion-MNIST.</summary>
internal static class TrainCommand
{
    /// <summary>Tuned defaults: SGD momentum 0.9, weight decay 5e-4, cosine schedule from lr 0.1, batch 50, 20 epochs.</summary>
    internal static class Defaults
    {
        public const string Model = "784-200-200-10";
        public const int Epochs = 20;
        public const int Batch = 50;
        public const float LearningRate = 0.1f;
        public const float Momentum = 0.9f;
        public const float WeightDecay = 5e-4f;
        public const string Schedule = "cosine";
    }

    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Layer widths, input first (e.g. 784-200-200-10).", DefaultValueFactory = _ => Defaults.Model };
        var epochs = new Option<int>("--epochs") { Description = "Passes over the training set.", DefaultValueFactory = _ => Defaults.Epochs };
        var batch = new Option<int>("--batch") { Description = "Mini-batch size.", DefaultValueFactory = _ => Defaults.Batch };
        var lr = new Option<float>("--lr") { Description = "Base learning rate.", DefaultValueFactory = _ => Defaults.LearningRate };
        var momentum = new Option<float>("--momentum") { Description = "SGD momentum (0 = plain SGD).", DefaultValueFactory = _ => Defaults.Momentum };
        var weightDecay = new Option<float>("--weight-decay") { Description = "L2 weight decay.", DefaultValueFactory = _ => Defaults.WeightDecay };
        var schedule = new Option<string>("--schedule") { Description = "Learning-rate schedule: cosine or constant.", DefaultValueFactory = _ => Defaults.Schedule };
        var backend = new Option<string>("--backend") { Description = "auto (GPU if present, else CPU), cpu, ilgpu, ilgpu-cpu.", DefaultValueFactory = _ => "auto" };
        var threads = new Option<int>("--threads") { Description = "CPU threads for the CPU backend.", DefaultValueFactory = _ => 1 };
        var seed = new Option<ulong>("--seed") { Description = "Seed of initialization and shuffling.", DefaultValueFactory = _ => 1UL };
        var limit = new Option<int>("--limit") { Description = "Use only the first N training images (0 = all 60,000).", DefaultValueFactory = _ => 0 };
        var data = new Option<string?>("--data") { Description = $"Fashion-MNIST folder (default ${FashionMnist.DataVariable} or {FashionMnist.DebianFolder})." };
        var output = new Option<string?>("--out") { Description = "Folder for model.ckpt." };
        var json = new Option<bool>("--json") { Description = "End with one JSON line on stdout." };

        var command = new Command("train", "Train the perception head on Fashion-MNIST (centralized baseline).")
        {
            model, epochs, batch, lr, momentum, weightDecay, schedule, backend, threads, seed, limit, data, output, json,
        };
        command.SetAction(parse =>
        {
            var spec = ModelSpec.Parse(parse.GetValue(model)!);
            int epochCount = parse.GetValue(epochs);
            int batchSize = parse.GetValue(batch);
            if (epochCount < 1) throw new ArgumentException("--epochs must be at least 1.");
            if (batchSize < 1 || batchSize > 65536) throw new ArgumentException("--batch must be within 1..65536.");
            var sgd = new SgdOptions(parse.GetValue(lr), parse.GetValue(momentum), parse.GetValue(weightDecay));
            sgd.Validate();
            var lrSchedule = LearningRateSchedule.Parse(parse.GetValue(schedule)!, sgd.LearningRate);
            var backendChoice = TrainerFactory.Parse(parse.GetValue(backend)!);
            ulong seedValue = parse.GetValue(seed);
            if (parse.GetValue(limit) < 0) throw new ArgumentException($"--limit {parse.GetValue(limit)}: expected 0 (all images) or a positive count.");
            CliOutput.CheckFolder(parse.GetValue(output));
            var stdout = parse.InvocationConfiguration.Output;

            var (train, test) = CliData.LoadBoth(parse.GetValue(data), parse.InvocationConfiguration.Error);
            int n = parse.GetValue(limit) is > 0 and var l ? Math.Min(l, train.Count) : train.Count;
            if (spec.InputSize != train.FeatureSize || spec.OutputSize != train.ClassCount)
                throw new ArgumentException($"Model {spec} does not fit Fashion-MNIST: it needs {train.FeatureSize} inputs and {train.ClassCount} outputs.");

            using var trainer = TrainerFactory.Create(backendChoice, spec, batchSize, parse.GetValue(threads), stdout.WriteLine);
            trainer.LoadParameters(ModelInitializer.Initialize(spec, seedValue));
            var rng = DeterministicRandom.Derive(seedValue, purpose: 0x7EA1);
            var indices = Enumerable.Range(0, n).ToArray();
            long totalSteps = TrainingLoop.StepsFor(n, batchSize, epochCount), step = 0;
            stdout.WriteLine($"train: {spec} ({spec.ParameterCount:N0} parameters) on {n:N0} images, {epochCount} epochs, batch {batchSize}, lr {sgd.LearningRate} {parse.GetValue(schedule)}, momentum {sgd.Momentum}, weight decay {sgd.WeightDecay}, seed {seedValue}");

            var total = Stopwatch.StartNew();
            double trainSeconds = 0;
            EvaluationResult eval = default;
            for (int epoch = 1; epoch <= epochCount; epoch++)
            {
                var sw = Stopwatch.StartNew();
                var result = TrainingLoop.RunEpoch(trainer, train, indices, batchSize, sgd, lrSchedule, ref step, totalSteps, rng);
                double seconds = sw.Elapsed.TotalSeconds;
                trainSeconds += seconds;
                eval = trainer.Evaluate(test);
                stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"epoch {epoch,3}/{epochCount}  train loss {result.MeanLoss:F4}  test loss {eval.Loss:F4}  test accuracy {eval.Accuracy:F4}  {n / seconds,9:N0} samples/s  {seconds:F1} s"));
            }
            double samplesPerSecond = (double)n * epochCount / trainSeconds;

            string? checkpointPath = null;
            if (parse.GetValue(output) is { } folder)
            {
                var parameters = new float[spec.ParameterCount];
                trainer.ReadParameters(parameters);
                checkpointPath = Path.Combine(folder, "model.ckpt");
                var metadata = CliJson.Line(new { source = "fleetlearn train", dataset = "fashion-mnist", test_accuracy = eval.Accuracy, epochs = epochCount, seed = seedValue });
                new Checkpoint(spec, 0, parameters, metadata).Save(checkpointPath);
                stdout.WriteLine($"saved {checkpointPath}");
            }
            stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"done: test accuracy {eval.Accuracy:F4}, {samplesPerSecond:N0} samples/s training, {total.Elapsed.TotalSeconds:F1} s in all"));
            if (parse.GetValue(json))
            {
                CliJson.Write(stdout, new
                {
                    test_accuracy = eval.Accuracy,
                    test_loss = eval.Loss,
                    samples_per_second = samplesPerSecond,
                    backend = trainer.Description,
                    model = spec.ToString(),
                    epochs = epochCount,
                    batch = batchSize,
                    seconds = total.Elapsed.TotalSeconds,
                    checkpoint = checkpointPath,
                });
            }
            return 0;
        });
        return command;
    }
}
