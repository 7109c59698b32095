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
/// <c>fleetlearn audit leakage</c>: shows that a raw update from one camera crop gives the crop
/// away (analytic inversion of the first dense layer, Phong et al. 2017), and that clipping +
/// Gaussian noise, or secure aggregation's cohort sum, defeat the same attack.
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
        return new Command("audit", "Privacy audits.") { leakage };
    }

    private static string Psnr(double db) => double.IsPositiveInfinity(db) ? "∞ (exact: MSE 0)" : string.Create(CultureInfo.InvariantCulture, $"{db:F1} dB");

    /// <summary>PSNR is +∞ for an exact reconstruction; JSON has no ∞, so that case is written as null.</summary>
    private static double? Finite(double db) => double.IsFinite(db) ? db : null;
}
