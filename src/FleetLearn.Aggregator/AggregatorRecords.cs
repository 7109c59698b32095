using FleetLearn.Core.Model;
using FleetLearn.Core.Rounds;
using FleetLearn.Storage;
using Microsoft.Extensions.Logging;

namespace FleetLearn.Aggregator;

/// <summary>The aggregator's records: the newest model and the rounds an earlier run closed or left open, read at start; each round's outcome, stored at its close.</summary>
internal static class AggregatorRecords
{
    /// <summary>The newest stored model, or model 0 initialised from the seed (stored and exported at once).</summary>
    public static Checkpoint LoadModel(LiteDbRoundStore store, ModelSpec spec, AggregatorOptions options, ILogger logger)
    {
        var model = store.LatestModel();
        if (model is null)
        {
            model = new Checkpoint(spec, 0, ModelInitializer.Initialize(spec, options.Seed, ModelInitializer.ParseScheme(options.Init)));
            store.SaveModel(model);
            ModelPublisher.ExportOnnx(model, options.OnnxFolder, logger);
        }
        if (model.Spec.ToString() != spec.ToString())
            throw new InvalidOperationException($"The stored model is {model.Spec}, the configuration asks for {spec}: use another database or fix Aggregator:Model.");
        return model;
    }

    /// <summary>
    /// Replays the stored round records into the status and <paramref name="closed"/> (with the update ids each folded, so a
    /// resend is answered duplicate across restarts). A round left open by a crash is returned for resumption when
    /// <paramref name="whyNotResumable"/> says nothing against it, else recorded as aborted with that reason. Returns the
    /// newest round number (0 for none) and the round to resume.
    /// </summary>
    public static (long Last, RoundRecord? Resume) RestoreRounds(
        LiteDbRoundStore store, AggregatorStatus status, ClosedRounds closed, TimeProvider time, ILogger logger, Func<RoundRecord, string?> whyNotResumable)
    {
        long last = 0;
        RoundRecord? resume = null;
        foreach (var record in store.Rounds())
        {
            var final = record;
            if (record.Status == RoundStatus.Open)
            {
                if (whyNotResumable(record) is not { } reason)
                {
                    resume = record;
                    status.Record(record, null);
                    last = Math.Max(last, record.Round);
                    continue;
                }
                final = record with { Status = RoundStatus.Aborted, ClosedAt = time.GetUtcNow(), Note = reason };
                store.SaveRound(final);
                store.CompactJournal(record.Round);
                logger.LogWarning("aggregator: round {Round} was open when the previous run stopped; recorded as aborted: {Reason}.", record.Round, reason);
            }
            status.Record(final, null);
            closed.Add(record.Round, store.UpdateIdsOf(record.Round), new Dictionary<string, int>(), store.VehiclesOf(record.Round));
            last = Math.Max(last, record.Round);
        }
        return (last, resume);
    }

    /// <summary>
    /// Stores a closed round: an applied one as model N+1 and its record in one transaction (a crash never leaves model N+1
    /// under a round recorded as open or aborted), then exported as ONNX; an aborted one as its record. Returns the model
    /// the next round starts from.
    /// </summary>
    public static Checkpoint Close(LiteDbRoundStore store, ModelPublisher publisher, AggregatorStatus status, ILogger logger, RoundRecord record, Checkpoint model, RoundOutcome outcome,
        CancellationToken cancellationToken = default)
    {
        record = record with { Participants = outcome.Contributors.Count, TrainLoss = outcome.TrainLoss, ClosedAt = outcome.ClosedAt };
        if (outcome is RoundApplied applied)
        {
            var next = new Checkpoint(model.Spec, model.Version + 1, applied.Parameters);
            record = record with { ModelVersionOut = next.Version, Status = RoundStatus.Applied };
            DiskFullRetry.Run(() => store.SaveModelAndRound(next, record), "the applied round and its model", logger, cancellationToken);
            DiskFullRetry.Run(() => store.CompactJournal(record.Round), "the journal's compaction", logger, cancellationToken);
            publisher.ExportOnnx(next);
            status.ModelVersion = next.Version;
            status.Record(record, applied.Parameters);
            logger.LogInformation("aggregator: round {Round} applied {Participants}/{Cohort} updates; model {Version}.", record.Round, record.Participants, record.CohortSize, next.Version);
            return next;
        }
        var reason = outcome switch
        {
            RoundAborted aborted => aborted.Reason,
            // A shard's own coordinator hands its part on; only the combiner's outcome is a round of the fleet's record.
            RoundHandedOn => throw new InvalidOperationException($"Round {record.Round}: a shard's hand-on is not a round outcome to store; the coordinator's combiner closes the round."),
            _ => throw new InvalidOperationException($"Round {record.Round}: unknown outcome {outcome.GetType().Name}."),
        };
        record = record with { Status = RoundStatus.Aborted, Note = reason };
        DiskFullRetry.Run(() => store.SaveRound(record), "the aborted round", logger, cancellationToken);
        DiskFullRetry.Run(() => store.CompactJournal(record.Round), "the journal's compaction", logger, cancellationToken);
        status.Record(record, model.Parameters);
        logger.LogWarning("aggregator: round {Round} aborted: {Reason}.", record.Round, reason);
        return model;
    }
}
