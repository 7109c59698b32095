using FleetLearn.Core.Compression;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Rounds;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Simulation;

/// <summary>Sharded rounds in process: S shard coordinators over their parts of the cohort, one combiner that releases.</summary>
public sealed partial class FleetSimulator
{
    private SortedSet<int>? _live;

    /// <summary>Shards alive now: a shard that died mid-round owns no part of later rounds.</summary>
    private SortedSet<int> LiveShards => _live ??= [.. Enumerable.Range(0, _options.Shards)];

    /// <summary>
    /// The rules of a sharded round. Distributed DP: a shard unmasks its own partial sum, so each part must carry σ²C² on its
    /// own; every vehicle's share is sized for the fewest shares any part is held to, m_min / (live shards), rounded down
    /// (balanced parts are at least that large). All vehicles add the same share so that the shards' sums share one grid.
    /// The sharded model therefore carries more total noise than an unsharded one: the price of shards that see their sums.
    /// </summary>
    private RoundRules ShardRules(RoundRules rules) => _options.Shards > 1 && rules.Privacy == NoiseMode.Distributed
        ? rules with { MinNoiseShares = Math.Max(1, _options.EffectiveMinParticipants / LiveShards.Count) }
        : rules;

    /// <summary>
    /// One sharded round: the cohort is assigned to the live shards (<see cref="ShardAssignment"/>), each shard runs a
    /// <see cref="RoundCoordinator"/> with a <see cref="ShardRole"/> over its part (its own SecAgg instance: seed, parameters,
    /// graph, keys), and the <see cref="ShardCombiner"/> adds their partial sums and releases. A shard in
    /// <see cref="SimulationOptions.ShardKills"/> dies after ShareKeys: its part is lost at the combiner's deadline and later
    /// rounds reassign its vehicles.
    /// </summary>
    private RoundOutcome ShardedRound(int round, int[] cohort, int[] accepted, UpdatePipelineRound codec, RoundRules rules, Tally tally, out IReadOnlyList<int> lost, CancellationToken cancellationToken)
    {
        var number = cohort.ToDictionary(VehicleId, v => v, StringComparer.Ordinal);
        var parts = ShardAssignment.Assign([.. cohort.Select(VehicleId)], LiveShards);
        var time = new ManualTimeProvider();
        var combiner = new ShardCombiner(new RoundSetup
        {
            Round = round,
            Cohort = [.. cohort.Select(VehicleId)],
            Global = _global,
            Strategy = _strategy,
            Codec = codec,
            Rules = rules,
            Deadline = time.GetUtcNow() + TimeSpan.FromDays(1),
            CentralNoiseMultiplier = UpdateNoiseMultiplier,
            CentralNoise = rules.Privacy == NoiseMode.Central ? SimulationRandomness.CentralNoise(_options.Seed, round) : null,
        }, parts, time);
        foreach (var (shard, members) in parts)
        {
            bool dies = _options.ShardKills.Contains(new ShardKill(round, shard));
            var part = members.Select(v => number[v]).ToArray();
            var inPart = part.ToHashSet();
            var partial = RunShard(round, shard, part, [.. accepted.Where(inPart.Contains)], codec, rules, tally, dies, cancellationToken);
            if (partial is not null) tally.Take(combiner.Receive(partial));
            if (dies) LiveShards.Remove(shard);
        }
        if (combiner.Phase is not Closed)
        {
            // A shard that died never hands its part on: the combiner closes at its deadline with the others.
            time.Advance(TimeSpan.FromDays(1));
            tally.Take(combiner.Tick());
        }
        lost = combiner.LostShards;
        return combiner.Outcome!;
    }

    /// <summary>One shard's part of the round: its partial sum, or null when it died before handing it on.</summary>
    private PartialSum? RunShard(int round, int shard, int[] part, int[] accepted, UpdatePipelineRound codec, RoundRules rules, Tally tally, bool dies, CancellationToken cancellationToken)
    {
        var time = new ManualTimeProvider();
        var ids = part.Select(VehicleId).ToArray();
        if (_pipeline.IsSecure && ShardTooSmall(part.Length, rules) is { } why)
            return new FailedPartialSum { Round = round, Shard = shard, Contributors = [], Silent = [], Reason = why };
        var secure = _pipeline.IsSecure ? ShardSecureSetup(round, shard, part, rules) : null;
        using var coordinator = new RoundCoordinator(new RoundSetup
        {
            Round = round,
            Cohort = ids,
            Global = _global,
            Strategy = _strategy,
            Codec = codec,
            Rules = rules,
            Deadline = time.GetUtcNow() + TimeSpan.FromDays(1),
            Secure = secure,
            Shard = new ShardRole(shard),
        }, time);
        if (secure is not null) SecureRound(coordinator, time, secure.Parameters, round, part, accepted, codec, tally, cancellationToken, diesAfterShareKeys: dies);
        else if (!dies) PlainRound(coordinator, time, round, part, accepted, codec, tally, cancellationToken);
        if (dies) return null;
        if (coordinator.Phase is not Closed)
        {
            time.Advance(TimeSpan.FromDays(1));
            coordinator.Tick();
        }
        return ((RoundHandedOn)coordinator.Outcome!).Partial;
    }

    private static string? ShardTooSmall(int size, RoundRules rules) =>
        size < 3 ? $"a part of {size} vehicles; secure aggregation needs at least 3"
        : rules.Privacy == NoiseMode.Distributed && size < rules.MinNoiseShares ? $"a part of {size} vehicles is below the {rules.MinNoiseShares} noise shares each part was sized for"
        : null;

    /// <summary>The shard's own secure aggregation: its seed, k and t from its part's size, the whole cohort's modulus, its part's device keys.</summary>
    private SecureRoundSetup ShardSecureSetup(int round, int shard, int[] part, RoundRules rules)
    {
        int selected = new RoundSettings(_options.CohortSize, _options.OverSelection).SelectionSize;
        int? neighbors = _options.SecureAggregation != SecureAggregationMode.Plus ? null
            : _options.SecAggNeighbors ?? NeighborGraph.DefaultNeighbors(part.Length, SecAggPlusParameters.MissingFraction(selected, _options.CohortSize));
        int minNoiseShares = rules.Privacy == NoiseMode.Distributed ? rules.MinNoiseShares : 1;
        var parameters = _pipeline.CreateSecAggParameters((ulong)round, part.Length, SimulationRandomness.ShardSecAggSeed(_options.Seed, round, shard), TimeSpan.FromMinutes(1), minNoiseShares, neighbors);
        var registry = new ArrayRegistry(part.Length);
        for (int i = 0; i < part.Length; i++) registry.Add(i, DeviceKey(part[i]).ExportSubjectPublicKeyInfo());
        return new SecureRoundSetup(parameters, registry, _trainers.Length);
    }
}
