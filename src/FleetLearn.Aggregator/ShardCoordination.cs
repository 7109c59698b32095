using System.Buffers;
using System.Security.Cryptography;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Model;
using FleetLearn.Core.Rounds;
using FleetLearn.Storage;
using FleetLearn.Transport.Mqtt;
using Microsoft.Extensions.Logging;

namespace FleetLearn.Aggregator;

/// <summary>The services a sharded round's coordinator shares with <see cref="AggregatorWorker"/>.</summary>
internal sealed record CoordinatorParts(
    MqttConnection Mqtt, LiteDbRoundStore Store, LiteDbPrivacyLedgerStore? Ledger, FleetRoster Roster, ModelPublisher Publisher, FleetEpochs Epochs, AggregatorRandomness Random);

/// <summary>
/// The coordinator of sharded rounds (Aggregator:Shards &gt; 1): opens each round with the cohort assigned to the live shards,
/// publishes model and plan, combines the partial sums the shard processes publish on <c>shards/{i}/partial</c> until all
/// arrive or the round's deadline, charges the ledger, and stores the outcome. A shard that sent nothing is not live in later rounds.
/// </summary>
internal sealed class ShardCoordination(AggregatorOptions options, AggregatorStatus status, CoordinatorParts parts, TimeProvider time, ILogger logger)
{
    private readonly SortedSet<int> _live = [.. Enumerable.Range(0, options.Shards)];
    private readonly ChunkAssembler _chunks = new(64L << 20, 4 * options.Shards, 2);
    private readonly List<RoundEffect> _effects = [];
    private readonly HashSet<int> _heard = [];
    private OpenedShardedRound? _open;

    /// <summary>The open round's cohort (whose vehicles may ask for the round's model), or null between rounds.</summary>
    public IReadOnlyList<string>? Cohort => _open?.Plan.Cohort;

    /// <summary>Shards that take part in the next round.</summary>
    public IReadOnlyCollection<int> Live => _live;

    /// <summary>Takes a shard's partial sum (true when <paramref name="message"/> is on a partial-sum topic; a bad one throws <see cref="WireFormatException"/>).</summary>
    public bool Accept(MqttIncoming message)
    {
        if (parts.Mqtt.Topics.ParseShardPartial(message.Topic) is not { } shard) return false;
        if (!_chunks.TryAdd(FleetTopics.ShardIdentity(shard), message.Topic, message.Payload, out var whole) || _open is not { } open) return true;
        var partial = PartialSumCodec.Decode(whole.IsSingleSegment ? whole.FirstSpan : whole.ToArray(), open.Limits); // refuses a partial of another round, or sized for another
        if (partial.Shard != shard) throw new WireFormatException($"Shard {shard} published shard {partial.Shard}'s partial sum.", RejectReasons.NotInCohort);
        _heard.Add(shard);
        _effects.AddRange(open.Combiner.Receive(partial).Effects);
        return true;
    }

    /// <summary>Runs round <paramref name="round"/> over <paramref name="cohort"/>; returns the model the next round starts from.</summary>
    public async Task<Checkpoint> RunAsync(long round, string[] cohort, Checkpoint model, IFederatedStrategy strategy, ECDsa key,
        Func<DateTimeOffset, CancellationToken, Task> processNext, CancellationToken cancellationToken)
    {
        var modelBytes = model.ToBytes();
        var open = _open = RoundOpening.OpenSharded(options, parts.Random, parts.Roster, parts.Mqtt.Topics.Fleet, round, parts.Epochs.State.Epoch, cohort, model, modelBytes, strategy, key, _live, time);
        _heard.Clear();
        _effects.Clear();
        var record = new RoundRecord(round, model.Version, null, RoundStatus.Open, cohort.Length, 0, double.NaN, time.GetUtcNow(), null);
        DiskFullRetry.Run(() => parts.Store.SaveOpenRound(record, open.SignedPlan, cohort), "the new round", logger, cancellationToken);
        status.Record(record, null);
        logger.LogInformation("aggregator: round {Round} open, model {Version}, cohort of {Count} over shards {Shards}.", round, model.Version, cohort.Length,
            string.Join(", ", open.Plan.Shards!.Select(s => $"{s.Index} ({s.Members.Count})")));
        parts.Epochs.Announce(status.CurrentRound = round, open.SignedPlan);
        await parts.Publisher.PublishAsync(model, modelBytes, cancellationToken).ConfigureAwait(false);
        await parts.Mqtt.PublishReliablyAsync(parts.Mqtt.Topics.RoundCurrent, open.SignedPlan, retain: true, expiry: open.Combiner.Deadline - time.GetUtcNow(), cancellationToken: cancellationToken).ConfigureAwait(false);
        status.Sent(open.SignedPlan.Length);
        while (open.Combiner.Phase is not Closed)
        {
            status.Activity = $"round {round}: {open.Combiner.Phase}";
            if (open.Combiner.Phase is CombiningShards combining) status.ReportPhase(round, nameof(CombiningShards), combining.Received, combining.Expected);
            await processNext(open.Combiner.Deadline, cancellationToken).ConfigureAwait(false);
            if (open.Combiner.Phase is not Closed && time.GetUtcNow() >= open.Combiner.Deadline) _effects.AddRange(open.Combiner.Tick().Effects);
            Charge(cancellationToken);
        }
        Charge(cancellationToken);
        var owned = ShardedPlan.Parts(open.Plan);
        foreach (var dead in owned.Keys.Where(s => !_heard.Contains(s)))
        {
            _live.Remove(dead);
            logger.LogWarning("aggregator: shard {Shard} handed no partial sum on for round {Round}: its vehicles {Vehicles} are not in the sum and not charged; later rounds assign vehicles to shards {Live}.",
                dead, round, string.Join(", ", owned[dead]), string.Join(", ", _live));
        }
        if (_live.Count == 0) _live.UnionWith(Enumerable.Range(0, options.Shards)); // none answered: try them all again rather than stop
        var outcome = open.Combiner.Outcome!;
        parts.Roster.Forget(outcome.Silent);
        _open = null;
        return AggregatorRecords.Close(parts.Store, parts.Publisher, status, logger, record, model, outcome, cancellationToken);
    }

    /// <summary>Records the combiner's charges before the released sum is used: a crash can only over-count ε.</summary>
    private void Charge(CancellationToken cancellationToken)
    {
        foreach (var charge in _effects.OfType<ChargeEffect>())
            if (parts.Ledger is { } ledger)
                foreach (var v in charge.Vehicles) DiskFullRetry.Run(() => status.VehicleEpsilon(v, ledger.Record(v, charge.Round, charge.Charge).Epsilon), "a ledger charge", logger, cancellationToken);
        _effects.Clear();
    }
}
