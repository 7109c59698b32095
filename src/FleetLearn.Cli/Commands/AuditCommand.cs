using System.CommandLine;
using System.Globalization;
using FleetLearn.Compute;
using FleetLearn.Core.Model;
using FleetLearn.Core.Numerics;
using FleetLearn.Core.Privacy;
using FleetLearn.Perception.Datasets;
using FleetLearn.Reporting;

namespace FleetLearn.Cli.Commands;

/// <summary>
/// <c>fleetlearn audit leakage|attacks</c>: <c>leakage</c> shows that a raw update from one camera crop gives the crop
/// away (analytic inversion of the first dense layer, Phong et al. 2017), and that clipping +
/// Gaussian noise, or secure aggregation's cohort sum, defeat the same attack; <c>attacks</c> runs issue 13's attacks
/// (<see cref="PrivacyAttackAudit"/>).
/// </summary>
internal static class AuditCommand
{
    public static Command Create()
    {
        var image = new Option<int>("--image") { Description = "Index of the vehicle's training image in Fashion-MNIST's training set.", DefaultValueFactory = _ => 0 };
        var clip = new Option<double>("--dp-clip") { Description = "L2 clip norm C of the protected update.", DefaultValueFactory = _ => 1.0 };
        var sigma = new Option<double>("--noise-multiplier") { Description = "Noise multiplier σ: noise N(0, σ²C²) per coordinate.", DefaultValueFactory = _ => 1.0 };
        var cohort = new Option<int>("--secagg-cohort") { Description = "Vehicles whose updates are summed (what secure aggregation reveals).", DefaultValueFactory = _ => 10 };
        var lr = new Option<float>("--lr") { Description = "Learning rate of the vehicle's one local step.", DefaultValueFactory = _ => 0.1f };
        var model = new Option<string>("--model") { Description = "Layer widths.", DefaultValueFactory = _ => "784-200-200-10" };
        var seed = new Option<ulong>("--seed") { Description = "Model initialization seed.", DefaultValueFactory = _ => 1UL };
        var data = new Option<string?>("--data") { Description = "Fashion-MNIST folder." };
        var output = new Option<string?>("--out") { Description = "Folder for original.png and the reconstructions." };
        var json = new Option<bool>("--json") { Description = "End with one JSON line on stdout." };
        var leakage = new Command("leakage", "Gradient-leakage audit: rebuild a vehicle's image from its raw, protected and aggregated update.")
        {
            image, clip, sigma, cohort, lr, model, seed, data, output, json,
        };
        leakage.SetAction(parse =>
        {
            var spec = ModelSpec.Parse(parse.GetValue(model)!);
            double clipNorm = parse.GetValue(clip), noiseMultiplier = parse.GetValue(sigma);
            int cohortSize = parse.GetValue(cohort), index = parse.GetValue(image);
            float stepSize = parse.GetValue(lr);
            if (!(clipNorm > 0)) throw new ArgumentException("--dp-clip must be positive.");
            if (!(noiseMultiplier >= 0)) throw new ArgumentException("--noise-multiplier must be ≥ 0.");
            if (cohortSize < 2) throw new ArgumentException("--secagg-cohort must be at least 2.");
            var train = CliData.LoadTrain(parse.GetValue(data), parse.InvocationConfiguration.Error);
            if (index < 0 || index + cohortSize > train.Count) throw new ArgumentException($"--image must be within 0..{train.Count - cohortSize}.");
            if (spec.InputSize != train.FeatureSize) throw new ArgumentException($"Model {spec} needs {train.FeatureSize} inputs.");

            using var trainer = TrainerFactory.Create(BackendChoice.Cpu, spec, 1);
            trainer.LoadParameters(ModelInitializer.Initialize(spec, parse.GetValue(seed)));
            // The vehicle's update after one SGD step on its one image: Δ = −η·∇L.
            float[] UpdateFor(int row)
            {
                var g = new float[spec.ParameterCount];
                trainer.ComputeGradient(train, [row], g);
                VectorMath.Scale(g, -stepSize);
                return g;
            }
            var truth = train.Row(index).ToArray();
            var raw = UpdateFor(index);
            var rawImage = LeakageAudit.ReconstructInput(raw, spec);

            var protectedUpdate = raw.ToArray();
            double preClipNorm = L2Clipping.Clip(protectedUpdate, clipNorm);
            GaussianNoise.Add(protectedUpdate, noiseMultiplier * clipNorm);
            var protectedImage = LeakageAudit.ReconstructInput(protectedUpdate, spec);

            var sum = raw.ToArray();
            for (int k = 1; k < cohortSize; k++) VectorMath.Axpy(1f, UpdateFor(index + k), sum);
            var cohortImage = LeakageAudit.ReconstructInput(sum, spec);

            double rawCos = LeakageAudit.CosineSimilarity(truth, rawImage), rawPsnr = LeakageAudit.Psnr(truth, rawImage);
            double protCos = LeakageAudit.CosineSimilarity(truth, protectedImage), protPsnr = LeakageAudit.Psnr(truth, protectedImage);
            double sumCos = LeakageAudit.CosineSimilarity(truth, cohortImage), sumPsnr = LeakageAudit.Psnr(truth, cohortImage);
            // Baseline: how close the cohort's plain average image is to the target. Fashion-MNIST
            // images share a lot (non-negative, centred), so an attack on the sum only leaks this
            // vehicle's image if it beats the baseline clearly.
            var mean = new float[truth.Length];
            for (int k = 0; k < cohortSize; k++) VectorMath.Axpy(1f / cohortSize, train.Row(index + k), mean);
            double baselineCos = LeakageAudit.CosineSimilarity(truth, mean);
            var o = parse.InvocationConfiguration.Output;
            o.WriteLine($"audit: vehicle holds Fashion-MNIST training image {index} ({FashionMnist.ClassNames[train.Labels[index]]}); model {spec}; one SGD step, lr {stepSize.ToString(CultureInfo.InvariantCulture)}; update norm {preClipNorm.ToString("G4", CultureInfo.InvariantCulture)}");
            o.WriteLine(string.Create(CultureInfo.InvariantCulture, $"raw update:                 cosine {rawCos:F4}  PSNR {Psnr(rawPsnr)}  → the image is rebuilt"));
            o.WriteLine(string.Create(CultureInfo.InvariantCulture, $"clipped C={clipNorm} + noise σ={noiseMultiplier}: cosine {protCos:F4}  PSNR {Psnr(protPsnr)}"));
            o.WriteLine(string.Create(CultureInfo.InvariantCulture, $"sum of {cohortSize} vehicles (what secure aggregation reveals): cosine {sumCos:F4}  PSNR {Psnr(sumPsnr)}; the cohort's mean image alone scores cosine {baselineCos:F4}"));
            if (parse.GetValue(output) is { } folder)
            {
                Directory.CreateDirectory(folder);
                File.WriteAllBytes(Path.Combine(folder, "original.png"), GrayImage.ToPng(truth, FashionMnist.Side));
                File.WriteAllBytes(Path.Combine(folder, "raw-reconstruction.png"), GrayImage.ToPng(rawImage, FashionMnist.Side));
                File.WriteAllBytes(Path.Combine(folder, "protected-reconstruction.png"), GrayImage.ToPng(protectedImage, FashionMnist.Side, normalize: true));
                File.WriteAllBytes(Path.Combine(folder, "cohort-reconstruction.png"), GrayImage.ToPng(cohortImage, FashionMnist.Side, normalize: true));
                o.WriteLine($"wrote original.png, raw-reconstruction.png, protected-reconstruction.png, cohort-reconstruction.png to {folder}");
            }
            if (parse.GetValue(json))
            {
                CliJson.Write(o, new
                {
                    raw_cosine = rawCos,
                    protected_cosine = protCos,
                    raw_psnr = Finite(rawPsnr),
                    protected_psnr = Finite(protPsnr),
                    cohort_cosine = sumCos,
                    cohort_psnr = Finite(sumPsnr),
                    cohort_mean_image_cosine = baselineCos,
                    clip = clipNorm,
                    noise_multiplier = noiseMultiplier,
                    cohort = cohortSize,
                });
            }
            return 0;
        });
        var attacksJson = new Option<bool>("--json") { Description = "Print one JSON object per attack ({\"attack\",\"outcome\",\"detail\"}), one per line." };
        var attacks = new Command("attacks", "Run each attack of docs/threat-model.md against the real state machines; exit code 1 if any succeeds.") { attacksJson };
        attacks.SetAction(parse =>
        {
            var o = parse.InvocationConfiguration.Output;
            var results = PrivacyAttackAudit.RunAll();
            foreach (var r in results)
            {
                if (parse.GetValue(attacksJson))
                    o.WriteLine(System.Text.Json.JsonSerializer.Serialize(new Dictionary<string, string> { ["attack"] = r.Attack, ["outcome"] = r.Outcome, ["detail"] = r.Detail }, RelaxedJson));
                else o.WriteLine($"{r.Attack}: {r.Outcome} — {r.Detail}");
            }
            return results.All(r => r.Outcome == "refused") ? 0 : 1;
        });
        return new Command("audit", "Privacy and robustness audits.") { leakage, attacks, Poisoning() };
    }

    private static readonly System.Text.Json.JsonSerializerOptions RelaxedJson = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary><c>fleetlearn audit poisoning</c>: attacks × malicious fractions × defences on plaintext rounds (docs/robustness.md).</summary>
    private static Command Poisoning()
    {
        var defaults = new Simulation.PoisoningAuditOptions();
        var model = new Option<string>("--model") { Description = "Layer widths.", DefaultValueFactory = _ => defaults.Model.ToString() };
        var vehicles = new Option<int>("--vehicles") { Description = "Vehicles in the fleet.", DefaultValueFactory = _ => defaults.Vehicles };
        var rows = new Option<int>("--rows-per-vehicle") { Description = "Training rows per vehicle (IID).", DefaultValueFactory = _ => defaults.RowsPerVehicle };
        var cohort = new Option<int>("--cohort") { Description = "Vehicles per round.", DefaultValueFactory = _ => defaults.Cohort };
        var rounds = new Option<int>("--rounds") { Description = "Rounds per run.", DefaultValueFactory = _ => defaults.Rounds };
        var epochs = new Option<int>("--epochs") { Description = "Local epochs.", DefaultValueFactory = _ => defaults.LocalEpochs };
        var batch = new Option<int>("--batch") { Description = "Local batch size.", DefaultValueFactory = _ => defaults.Batch };
        var lr = new Option<float>("--lr") { Description = "Client learning rate.", DefaultValueFactory = _ => defaults.LearningRate };
        var testRows = new Option<int>("--test-rows") { Description = "Test rows scored.", DefaultValueFactory = _ => defaults.TestRows };
        var seed = new Option<ulong>("--seed") { Description = "Seed of everything.", DefaultValueFactory = _ => defaults.Seed };
        var attacks = new Option<string>("--attacks")
        {
            Description = "Comma-separated attacks: " + string.Join(", ", defaults.Attacks.Select(Simulation.PoisoningAudit.Name)) + ".",
            DefaultValueFactory = _ => string.Join(',', defaults.Attacks.Select(Simulation.PoisoningAudit.Name)),
        };
        var fractions = new Option<string>("--fractions") { Description = "Comma-separated shares of malicious vehicles.", DefaultValueFactory = _ => "0.01,0.05,0.2" };
        var defences = new Option<string>("--defences")
        {
            Description = "Comma-separated defences: " + string.Join(", ", defaults.Defences.Select(Simulation.PoisoningAudit.Name)) + ".",
            DefaultValueFactory = _ => string.Join(',', defaults.Defences.Select(Simulation.PoisoningAudit.Name)),
        };
        var bound = new Option<double?>("--norm-bound") { Description = "M of norm bounding and the DP clip (default: the median honest ‖Δ‖ of a clean first round)." };
        var noise = new Option<double>("--noise-multiplier") { Description = "z: noise N(0, (zM/K)²) on the mean under normbound+dp.", DefaultValueFactory = _ => defaults.NoiseMultiplier };
        var robust = new Option<double>("--robust-fraction") { Description = "β of the trimmed mean and multi-Krum.", DefaultValueFactory = _ => defaults.RobustFraction };
        var threads = new Option<int>("--threads") { Description = "Runs in parallel; 0 = every core.", DefaultValueFactory = _ => defaults.Threads };
        var data = new Option<string?>("--data") { Description = "Fashion-MNIST folder." };
        var output = new Option<string?>("--out") { Description = "Folder for poisoning.md (the table) and the charts poisoning-backdoor.svg, poisoning-clean.svg." };
        var json = new Option<bool>("--json") { Description = "End with one JSON line on stdout." };
        var command = new Command("poisoning", "Poisoning audit: clean accuracy and backdoor success of each attack × share of malicious vehicles × defence, on plaintext rounds.")
        {
            model, vehicles, rows, cohort, rounds, epochs, batch, lr, testRows, seed, attacks, fractions, defences, bound, noise, robust, threads, data, output, json,
        };
        command.SetAction((parse, cancellationToken) =>
        {
            static string[] List(string? text, string option) =>
                (text ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) is { Length: > 0 } items ? items : throw new ArgumentException($"{option} needs at least one value.");
            var options = new Simulation.PoisoningAuditOptions
            {
                Model = ModelSpec.Parse(parse.GetValue(model)!),
                Vehicles = parse.GetValue(vehicles),
                RowsPerVehicle = parse.GetValue(rows),
                Cohort = parse.GetValue(cohort),
                Rounds = parse.GetValue(rounds),
                LocalEpochs = parse.GetValue(epochs),
                Batch = parse.GetValue(batch),
                LearningRate = parse.GetValue(lr),
                TestRows = parse.GetValue(testRows),
                Seed = parse.GetValue(seed),
                Attacks = [.. List(parse.GetValue(attacks), "--attacks").Select(Simulation.PoisoningAudit.ParseAttack)],
                Fractions = [.. List(parse.GetValue(fractions), "--fractions").Select(f => double.TryParse(f, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) ? v : throw new ArgumentException($"--fractions: '{f}' is not a number."))],
                Defences = [.. List(parse.GetValue(defences), "--defences").Select(Simulation.PoisoningAudit.ParseDefence)],
                NormBound = parse.GetValue(bound),
                NoiseMultiplier = parse.GetValue(noise),
                RobustFraction = parse.GetValue(robust),
                Threads = parse.GetValue(threads),
            };
            options.Validate();
            var train = FashionMnist.LoadTrain(parse.GetValue(data));
            var test = FashionMnist.LoadTest(parse.GetValue(data));
            var o = parse.InvocationConfiguration.Output;
            var started = System.Diagnostics.Stopwatch.StartNew();
            var report = new Simulation.PoisoningAudit(options, train, test).Run(line =>
            {
                lock (o) o.WriteLine(line);
            }, cancellationToken);
            o.WriteLine(string.Create(CultureInfo.InvariantCulture, $"poisoning audit: {options.Model}, {options.Vehicles} vehicles × {options.RowsPerVehicle} rows, cohort {options.Cohort}, {options.Rounds} rounds, norm bound M = {report.NormBound:G4}; {report.Baselines.Count + report.Results.Count} runs in {started.Elapsed.TotalSeconds:F0} s. Cells: clean accuracy / backdoor success (%)."));
            o.Write(Simulation.PoisoningReportWriter.Markdown(report));
            if (parse.GetValue(output) is { } folder)
            {
                Directory.CreateDirectory(folder);
                File.WriteAllText(Path.Combine(folder, "poisoning.md"), Simulation.PoisoningReportWriter.Markdown(report));
                var backdoorAttack = options.Attacks.Contains(Simulation.PoisoningAttack.Boost10) ? "boost×10" : Simulation.PoisoningAudit.Name(options.Attacks[0]);
                var cleanAttack = options.Attacks.Contains(Simulation.PoisoningAttack.Boost100) ? "boost×100" : Simulation.PoisoningAudit.Name(options.Attacks[0]);
                File.WriteAllText(Path.Combine(folder, "poisoning-backdoor.svg"), Simulation.PoisoningReportWriter.Chart(report, backdoorAttack, backdoor: true));
                File.WriteAllText(Path.Combine(folder, "poisoning-clean.svg"), Simulation.PoisoningReportWriter.Chart(report, cleanAttack, backdoor: false));
                o.WriteLine($"wrote poisoning.md, poisoning-backdoor.svg ({backdoorAttack}), poisoning-clean.svg ({cleanAttack}) to {folder}");
            }
            if (parse.GetValue(json))
            {
                CliJson.Write(o, new
                {
                    model = options.Model.ToString(),
                    vehicles = options.Vehicles,
                    rows_per_vehicle = options.RowsPerVehicle,
                    cohort = options.Cohort,
                    rounds = options.Rounds,
                    seed = options.Seed,
                    norm_bound = report.NormBound,
                    noise_multiplier = options.NoiseMultiplier,
                    robust_fraction = options.RobustFraction,
                    baselines = report.Baselines.Select(Row),
                    results = report.Results.Select(Row),
                });
            }
            return Task.FromResult(0);
        });
        return command;
    }

    private static object Row(Simulation.PoisoningResult r) => new
    {
        attack = r.Attack,
        fraction = r.Fraction,
        malicious = r.MaliciousVehicles,
        defence = r.Defence,
        clean_accuracy = r.CleanAccuracy,
        backdoor_success = r.BackdoorSuccess,
        no_attack_clean_accuracy = r.NoAttackCleanAccuracy,
        accuracy_drop_points = r.AccuracyDropPoints,
    };

    private static string Psnr(double db) => double.IsPositiveInfinity(db) ? "∞ (exact: MSE 0)" : string.Create(CultureInfo.InvariantCulture, $"{db:F1} dB");

    /// <summary>PSNR is +∞ for an exact reconstruction; JSON has no ∞, so that case is written as null.</summary>
    private static double? Finite(double db) => double.IsFinite(db) ? db : null;
}
