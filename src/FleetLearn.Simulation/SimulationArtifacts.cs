using System.Globalization;
using FleetLearn.Core.Model;
using FleetLearn.Reporting;

namespace FleetLearn.Simulation;

/// <summary>Writes a run's results: rounds.csv, PNG charts, a self-contained report.html and the final global model.</summary>
public static class SimulationArtifacts
{
    private static readonly string[] CsvHeader =
    [
        "round", "test_accuracy", "test_loss", "train_loss", "available", "selected", "participants", "dropped",
        "stragglers", "applied", "bytes_up", "bytes_down", "seconds", "simulated_seconds", "epsilon", "max_vehicle_epsilon", "clip_norm", "declined",
    ];

    /// <summary>Writes every artifact into <paramref name="folder"/> and returns the paths written.</summary>
    public static IReadOnlyList<string> Write(string folder, SimulationOptions options, FleetSimulator simulator, IReadOnlyList<RoundReport> reports, int? roundsToTarget, double seconds)
    {
        ArgumentNullException.ThrowIfNull(simulator);
        return Write(folder, options, simulator.Strategy.Name, simulator.Backend, simulator.GlobalModel.ToArray(), reports, roundsToTarget, seconds, "in-process");
    }

    /// <summary>Writes every artifact of a run whose final model is <paramref name="finalModel"/> (any transport).</summary>
    public static IReadOnlyList<string> Write(string folder, SimulationOptions options, string strategyName, string backend, float[] finalModel, IReadOnlyList<RoundReport> reports, int? roundsToTarget, double seconds, string transport)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(finalModel);
        ArgumentNullException.ThrowIfNull(reports);
        Directory.CreateDirectory(folder);
        var written = new List<string>();
        string Path_(string name)
        {
            var p = Path.Combine(folder, name);
            written.Add(p);
            return p;
        }

        using (var csv = new StreamWriter(Path_("rounds.csv")))
        {
            var writer = new CsvWriter(csv, CsvHeader);
            foreach (var r in reports)
            {
                writer.WriteRow(r.Round, r.TestAccuracy, r.TestLoss, r.TrainLoss, r.Available, r.Selected, r.Participants, r.Dropped,
                    r.Stragglers, r.Applied ? 1 : 0, r.BytesUp, r.BytesDown, Math.Round(r.Seconds, 4), Math.Round(r.SimulatedSeconds, 2),
                    r.Epsilon, r.MaxVehicleEpsilon, r.ClipNorm, r.Declined);
            }
        }

        var rounds = reports.Select(r => (double)r.Round).ToArray();
        var accuracy = new LineChart
        {
            Title = "Test accuracy of the global model",
            XLabel = "Round",
            YLabel = "Accuracy",
            Series = [ChartSeries.FromXY("accuracy", rounds, reports.Select(r => r.TestAccuracy))],
            Reference = new ReferenceLine(options.Target, string.Create(CultureInfo.InvariantCulture, $"target {options.Target:0.##}")),
        };
        var loss = new LineChart
        {
            Title = "Loss per round",
            XLabel = "Round",
            YLabel = "Cross-entropy",
            Series =
            [
                ChartSeries.FromXY("test loss", rounds, reports.Select(r => r.TestLoss)),
                ChartSeries.FromXY("local train loss", rounds, reports.Select(r => r.TrainLoss)),
            ],
        };
        var bytes = new LineChart
        {
            Title = "Bytes moved per round",
            XLabel = "Round",
            YLabel = "Bytes",
            Series =
            [
                ChartSeries.FromXY("up (vehicles → cloud)", rounds, reports.Select(r => (double)r.BytesUp)),
                ChartSeries.FromXY("down (cloud → vehicles)", rounds, reports.Select(r => (double)r.BytesDown)),
            ],
            YMin = 0,
        };
        LineChart? epsilon = null;
        if (options.Privacy is { } dp)
        {
            epsilon = new LineChart
            {
                Title = string.Create(CultureInfo.InvariantCulture, $"Privacy spent (δ = {dp.Delta:G2})"),
                XLabel = "Round",
                YLabel = "ε",
                Series =
                [
                    ChartSeries.FromXY("fleet ε (sampled, q = K/N)", rounds, reports.Select(r => r.Epsilon)),
                    ChartSeries.FromXY("largest per-vehicle ε (q = 1 per participation)", rounds, reports.Select(r => r.MaxVehicleEpsilon)),
                ],
                YMin = 0,
                Reference = dp.EpsilonBudget is { } b ? new ReferenceLine(b, "per-vehicle budget") : null,
            };
            File.WriteAllBytes(Path_("epsilon.png"), PngChartRenderer.Render(epsilon));
        }
        File.WriteAllBytes(Path_("accuracy.png"), PngChartRenderer.Render(accuracy));
        File.WriteAllBytes(Path_("loss.png"), PngChartRenderer.Render(loss));
        File.WriteAllBytes(Path_("bytes.png"), PngChartRenderer.Render(bytes));

        var final = reports[^1];
        var report = new HtmlReport("FleetLearn simulation")
            .AddSummary("final test accuracy", final.TestAccuracy.ToString("F4", CultureInfo.InvariantCulture))
            .AddSummary("rounds", reports.Count)
            .AddSummary(string.Create(CultureInfo.InvariantCulture, $"rounds to {options.Target:0.##}"), roundsToTarget?.ToString(CultureInfo.InvariantCulture) ?? "not reached")
            .AddSummary("wall-clock seconds", seconds.ToString("F1", CultureInfo.InvariantCulture))
            .AddSummary("bytes up / down", $"{reports.Sum(r => r.BytesUp):N0} / {reports.Sum(r => r.BytesDown):N0}")
            .AddSummary("fleet", $"{options.Vehicles:N0} vehicles, {options.Partition}, cohort {options.CohortSize}")
            .AddSummary("local training", string.Create(CultureInfo.InvariantCulture, $"E={options.LocalEpochs}, B={options.Batch}, lr={options.ClientLearningRate}"))
            .AddSummary("strategy", strategyName)
            .AddSummary("model", $"{options.Model} ({options.Model.ParameterCount:N0} parameters)")
            .AddSummary("behaviour", string.Create(CultureInfo.InvariantCulture, $"availability {options.Behavior.Availability}, dropout {options.Behavior.Dropout}, over-selection {options.OverSelection}"))
            .AddSummary("seed", options.Seed)
            .AddSummary("backend", backend)
            .AddSummary("transport", transport)
            .AddSection("Accuracy").AddChart(accuracy)
            .AddSection("Loss").AddChart(loss)
            .AddSection("Traffic").AddChart(bytes);
        if (epsilon is not null)
        {
            var privacy = options.Privacy!;
            report.AddSummary("differential privacy", string.Create(CultureInfo.InvariantCulture,
                    $"{privacy.Mode}, σ = {privacy.NoiseMultiplier}, C = {(privacy.AdaptiveClip ? "adaptive from " : "")}{privacy.ClipNorm}, final ε = {final.Epsilon:F2} at δ = {privacy.Delta:G2}"))
                .AddSection("Privacy").AddChart(epsilon);
        }
        report
            .AddSection("Rounds")
            .AddTable(CsvHeader, reports.Select(r => new object?[]
            {
                r.Round, Math.Round(r.TestAccuracy, 4), Math.Round(r.TestLoss, 4), Math.Round(r.TrainLoss, 4), r.Available, r.Selected,
                r.Participants, r.Dropped, r.Stragglers, r.Applied ? "yes" : "no", r.BytesUp, r.BytesDown, Math.Round(r.Seconds, 3), Math.Round(r.SimulatedSeconds, 1),
                Math.Round(r.Epsilon, 3), Math.Round(r.MaxVehicleEpsilon, 3), Math.Round(r.ClipNorm, 4), r.Declined,
            }));
        File.WriteAllText(Path_("report.html"), report.ToHtml());

        var model = new Checkpoint(options.Model, reports.Count, finalModel,
            string.Create(CultureInfo.InvariantCulture, $"{{\"source\":\"fleetlearn simulate\",\"strategy\":\"{strategyName}\",\"rounds\":{reports.Count},\"seed\":{options.Seed}}}"));
        model.Save(Path_("model.ckpt"));
        return written;
    }
}
