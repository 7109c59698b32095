using FleetLearn.Core.Numerics;
using FleetLearn.Core.Random;

namespace FleetLearn.Core.Training;

/// <summary>What a round asks of a vehicle's local training (from the round plan).</summary>
/// <param name="Epochs">E: passes over the vehicle's rows.</param>
/// <param name="Batch">B: rows per SGD step.</param>
/// <param name="LearningRate">Client learning rate.</param>
/// <param name="Momentum">Client momentum.</param>
/// <param name="ProximalMu">FedProx μ (0: plain FedAvg).</param>
public sealed record LocalTrainingSettings(int Epochs, int Batch, float LearningRate, float Momentum = 0, float ProximalMu = 0);

/// <summary>The one local-training function: the agent, the simulator and every runner call it.</summary>
public static class LocalTraining
{
    /// <summary>
    /// Trains from <paramref name="global"/> on <paramref name="rows"/> of <paramref name="data"/> and writes Δ = w_local − w_N
    /// into <paramref name="delta"/>; returns the last epoch's mean loss. <paramref name="rows"/> is shuffled in place with
    /// <paramref name="rng"/> (pass a copy). Cancellation is honoured between batches.
    /// </summary>
    public static double Run(ITrainer trainer, ReadOnlySpan<float> global, LabeledData data, int[] rows, LocalTrainingSettings settings,
        DeterministicRandom rng, Span<float> delta, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(trainer);
        ArgumentNullException.ThrowIfNull(settings);
        if (delta.Length != global.Length) throw new ArgumentException($"Δ has {delta.Length} values; the model has {global.Length}.", nameof(delta));
        trainer.LoadParameters(global);
        trainer.SetProximalTerm(settings.ProximalMu > 0 ? global : ReadOnlySpan<float>.Empty, settings.ProximalMu);
        var sgd = new SgdOptions(settings.LearningRate, settings.Momentum);
        var schedule = new LearningRateSchedule.Constant(settings.LearningRate);
        long step = 0;
        TrainingLoop.EpochResult last = default;
        for (int e = 0; e < settings.Epochs; e++)
            last = TrainingLoop.RunEpoch(trainer, data, rows, settings.Batch, sgd, schedule, ref step, 0, rng, cancellationToken);
        trainer.ReadParameters(delta);
        VectorMath.Subtract(delta, global, delta);
        return last.MeanLoss;
    }
}
