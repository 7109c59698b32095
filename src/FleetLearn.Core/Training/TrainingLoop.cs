using FleetLearn.Core.Random;

namespace FleetLearn.Core.Training;

/// <summary>Mini-batch SGD epochs over a subset of a dataset, shared by <c>train</c> and the vehicles.</summary>
public static class TrainingLoop
{
    /// <summary>Statistics of one epoch.</summary>
    public readonly record struct EpochResult(double MeanLoss, int Samples, int Steps);

    /// <summary>
    /// One epoch: shuffles <paramref name="indices"/> in place with <paramref name="rng"/>, then one
    /// SGD step per batch of <paramref name="batchSize"/> rows (the last batch may be smaller).
    /// <paramref name="step"/> counts steps across epochs for the schedule. <paramref name="cancellationToken"/> is checked
    /// before every batch (<see cref="OperationCanceledException"/>).
    /// </summary>
    public static EpochResult RunEpoch(
        ITrainer trainer,
        LabeledData data,
        int[] indices,
        int batchSize,
        SgdOptions options,
        LearningRateSchedule schedule,
        ref long step,
        long totalSteps,
        DeterministicRandom rng,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(trainer);
        ArgumentNullException.ThrowIfNull(indices);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        rng.Shuffle(indices.AsSpan());
        double lossSum = 0;
        int steps = 0;
        for (int start = 0; start < indices.Length; start += batchSize)
        {
            // Between batches: a vehicle whose state forbids training (ignition on, …) stops within one batch.
            cancellationToken.ThrowIfCancellationRequested();
            int n = Math.Min(batchSize, indices.Length - start);
            var stepOptions = options with { LearningRate = schedule.At(step, totalSteps) };
            float loss = trainer.TrainBatch(data, indices.AsSpan(start, n), stepOptions);
            lossSum += loss * n;
            steps++;
            step++;
        }
        return new EpochResult(indices.Length == 0 ? 0 : lossSum / indices.Length, indices.Length, steps);
    }

    /// <summary>Number of SGD steps that <paramref name="epochs"/> epochs over <paramref name="samples"/> rows take.</summary>
    public static long StepsFor(int samples, int batchSize, int epochs) => (long)epochs * ((samples + batchSize - 1) / batchSize);
}
