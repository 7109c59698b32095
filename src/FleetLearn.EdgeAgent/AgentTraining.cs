using FleetLearn.Core.Model;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Random;
using FleetLearn.Core.Rounds;
using FleetLearn.Core.Training;
using FleetLearn.Onnx;
using FleetLearn.Perception.Onnx;
using FleetLearn.Transport.Mqtt;
using Microsoft.Extensions.Logging;

namespace FleetLearn.EdgeAgent;

/// <summary>How a round's local training ended: Δ and the loss, or why it stopped (ineligible, failed).</summary>
internal sealed record TrainingResult(VehicleRound Round, float[]? Delta, double Loss, int Samples, string? StopReason);

/// <summary>
/// The owner of the agent's training task: one training at a time beside the message loop (the SecAgg key phases must be
/// answered while the vehicle trains), stopped between batches when the vehicle becomes ineligible, awaited before the
/// trainer is disposed, and a failure reported as a result (the round is abandoned and the error logged) instead of
/// vanishing with a fire-and-forget task.
/// </summary>
internal sealed class AgentTraining(TrainerPool trainers, ModelSpec pinned, VehicleStateMonitor? monitor, string vehicleId, ILogger logger)
{
    private Task _current = Task.CompletedTask;

    /// <summary>Trains <paramref name="round"/> from <paramref name="model"/> with the plan's settings (data order drawn on the training thread) and hands the result to <paramref name="deliver"/>.</summary>
    public void Start(VehicleRound round, Checkpoint model, LocalTrainingSettings settings, VehicleDataset data, Func<DeterministicRandom> order,
        Func<TrainingResult, Task> deliver, CancellationToken cancellationToken)
    {
        var previous = _current;
        _current = Task.Run(async () =>
        {
            await previous.ConfigureAwait(false); // never two trainings on the vehicle's one trainer
            TrainingResult result;
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, monitor?.TrainingToken ?? CancellationToken.None);
            try
            {
                var global = model.Parameters;
                var (delta, loss) = await trainers.RunAsync(pinned, trainer =>
                {
                    var d = new float[global.Length];
                    double l = LocalTraining.Run(trainer, global, data.Data, data.Rows.ToArray(), settings, order(), d, stop.Token);
                    return (d, l);
                }, stop.Token).ConfigureAwait(false);
                result = new TrainingResult(round, delta, loss, data.Rows.Length, null);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (OperationCanceledException)
            {
                string why = monitor?.Ineligibility() ?? "no longer eligible";
                logger.LogInformation("agent {Vehicle}: training of round {Round} stopped: {Reason}; the round is abandoned.", vehicleId, round.Round, why);
                result = new TrainingResult(round, null, double.NaN, 0, why);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                logger.LogError(e, "agent {Vehicle}: training of round {Round} failed; the round is abandoned.", vehicleId, round.Round);
                result = new TrainingResult(round, null, double.NaN, 0, $"training failed: {e.Message}");
            }
            await deliver(result).ConfigureAwait(false);
        }, CancellationToken.None);
    }

    /// <summary>Waits for the running training (at shutdown, before the trainer is disposed).</summary>
    public async Task DrainAsync()
    {
        try
        {
            await _current.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>
    /// Runs the global model it just received through ONNX Runtime (exported by FleetLearn's own exporter, CUDA when it
    /// loads, else CPU) on the hold-out rows and reports the accuracy on <c>vehicles/{id}/up/eval</c> as
    /// <see cref="EvaluationRelease"/> decides: with ε, discrete Laplace noise at vehicle level, charged to
    /// <paramref name="ledger"/> before it leaves; without ε, exactly, and only when the vehicle's data is not under DP
    /// (<paramref name="privateFleet"/>). A failed evaluation is logged; it never stops training.
    /// </summary>
    public static async Task<OnnxEvaluation?> EvaluateAsync(Checkpoint checkpoint, long round, bool privateFleet, VehicleDataset data, double? epsilon,
        IVehicleLedger ledger, MqttConnection mqtt, string vehicleId, ILogger logger, CancellationToken cancellationToken)
    {
        try
        {
            var evaluation = await Task.Run(() =>
            {
                using var onnx = new MemoryStream();
                OnnxExporter.ExportHead(checkpoint, onnx);
                using var model = OnnxModel.Load(onnx.ToArray(), new OnnxModelOptions { OutputName = "logits" }, $"global-v{checkpoint.Version}");
                var rows = data.HoldoutRows!;
                int width = data.Data.FeatureSize;
                var features = new float[rows.Length * width];
                var labels = new byte[rows.Length];
                for (int i = 0; i < rows.Length; i++)
                {
                    data.Data.Row(rows[i]).CopyTo(features.AsSpan(i * width, width));
                    labels[i] = data.Data.Labels[rows[i]];
                }
                return OnnxEvaluator.Evaluate(model, features, labels);
            }, cancellationToken).ConfigureAwait(false);
            var release = EvaluationRelease.Decide(round, evaluation.Count, evaluation.Correct, epsilon, privateFleet, ledger, new SecureNoiseSource());
            if (!release.Send)
            {
                logger.LogInformation("agent {Vehicle}: model {Version} is not reported: {Reason}.", vehicleId, checkpoint.Version, release.Withheld);
                return evaluation;
            }
            var report = System.Text.Encoding.UTF8.GetBytes(FormattableString.Invariant(
                $"{{\"vehicle\":\"{vehicleId}\",\"model_version\":{checkpoint.Version},\"count\":{release.Count},\"accuracy\":{release.ReportedAccuracy:R},\"noised\":{(release.Noised ? "true" : "false")}}}"));
            await mqtt.PublishReliablyAsync(mqtt.Topics.Up(vehicleId, "eval"), report, cancellationToken: cancellationToken).ConfigureAwait(false);
            logger.LogInformation("agent {Vehicle}: model {Version} scores {Accuracy:F4} on {Count} hold-out frames{Noise}.", vehicleId, checkpoint.Version, release.ReportedAccuracy, release.Count,
                release.Noised ? $" (noised at vehicle level, ε = {epsilon}, charged to its ledger)" : "");
            return evaluation with
            {
                ReportedAccuracy = release.ReportedAccuracy,
                Privacy = release.Noised ? new AccuracyPrivacy(AccuracyNoise.Laplace, epsilon!.Value) : null,
                NoiseScale = release.Noised ? 1 / epsilon!.Value : 0,
            };
        }
        catch (Exception e) when (e is OnnxModelException or InvalidOperationException or ArgumentException or IOException)
        {
            logger.LogWarning(e, "agent {Vehicle}: could not evaluate model {Version} on the hold-out frames.", vehicleId, checkpoint.Version);
            return null;
        }
    }
}
