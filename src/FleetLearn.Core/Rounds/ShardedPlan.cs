using FleetLearn.Core.Compression;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Core.Rounds;

/// <summary>
/// A sharded round from its signed plan, for the runners of both sides: the coordinator writes the shard table, each shard
/// process builds its <see cref="RoundCoordinator"/> over its part from the same plan the vehicles read, and the coordinator's
/// <see cref="ShardCombiner"/> takes its parts from it. The plan is the one source, so shard, vehicle and combiner agree.
/// </summary>
public static class ShardedPlan
{
    /// <summary>
    /// The plan's shard table for <paramref name="parts"/> (<see cref="ShardAssignment.Assign"/> over <paramref name="cohort"/>):
    /// each shard's members as cohort positions, under secure aggregation its own 32-byte seed from <paramref name="seed"/> and
    /// its SecAgg+ k from <paramref name="neighbors"/> (given its part's size; null: complete graph).
    /// </summary>
    public static IReadOnlyList<PlanShard> Table(
        IReadOnlyList<string> cohort, IReadOnlyDictionary<int, IReadOnlyList<string>> parts, Func<int, byte[]>? seed, Func<int, int?>? neighbors = null)
    {
        ArgumentNullException.ThrowIfNull(cohort);
        ArgumentNullException.ThrowIfNull(parts);
        var position = new Dictionary<string, int>(cohort.Count, StringComparer.Ordinal);
        for (int i = 0; i < cohort.Count; i++) position[cohort[i]] = i;
        return [.. parts.OrderBy(p => p.Key).Where(p => p.Value.Count > 0).Select(p => new PlanShard
        {
            Index = p.Key,
            Members = [.. p.Value.Select(v => position[v]).Order()],
            SecAggRoundSeed = seed is null ? null : Convert.ToBase64String(seed(p.Key)),
            Neighbors = neighbors?.Invoke(p.Value.Count),
        })];
    }

    /// <summary>Each shard's part of <paramref name="plan"/> as vehicle ids in SecAgg index order: what the combiner expects.</summary>
    public static IReadOnlyDictionary<int, IReadOnlyList<string>> Parts(RoundPlan plan)
    {
        ArgumentNullException.ThrowIfNull(plan);
        var shards = plan.Shards ?? throw new ArgumentException($"Round plan {plan.Round} is not sharded.", nameof(plan));
        return shards.ToDictionary(s => s.Index, s => (IReadOnlyList<string>)[.. s.Members.Select(p => plan.Cohort[p])]);
    }

    /// <summary>
    /// Shard <paramref name="shard"/>'s setup for <paramref name="plan"/>, received as <paramref name="signedPlan"/>:
    /// <paramref name="round"/> (what the coordinator would run over the whole cohort, without secure aggregation) narrowed to
    /// the shard's part, with the part's own SecAgg session (its seed and k, the whole cohort's modulus, the part's device keys
    /// as <paramref name="deviceCa"/> certifies them), a <see cref="ShardRole"/>, and no central noise (that is the combiner's).
    /// Throws <see cref="WireFormatException"/> when the plan has no such shard.
    /// </summary>
    public static RoundSetup ShardSetup(RoundSetup round, RoundPlan plan, ReadOnlySpan<byte> signedPlan, int shard, DeviceCertificateAuthority? deviceCa = null, int maxDegreeOfParallelism = 1)
    {
        ArgumentNullException.ThrowIfNull(round);
        ArgumentNullException.ThrowIfNull(plan);
        var entry = PlanShards.Find(plan, shard) ?? throw new WireFormatException($"Round plan {plan.Round} has no shard {shard}.", RejectReasons.NotInCohort);
        IReadOnlyList<string> part = [.. entry.Members.Select(p => plan.Cohort[p])];
        SecureRoundSetup? secure = null;
        if (round.Codec.Pipeline.IsSecure)
        {
            var protection = plan.Protection ?? throw new WireFormatException($"Round plan {plan.Round} has no protection settings.", RejectReasons.Malformed);
            var parameters = protection.CreateSecAggParameters(round.Codec.Pipeline, plan.Round, part.Count, SecAggSession.Id(plan.Fleet, signedPlan), entry);
            secure = new SecureRoundSetup(parameters, protection.CreateDeviceKeyRegistry(part, deviceCa, entry), maxDegreeOfParallelism);
        }
        return round with { Cohort = part, Secure = secure, Shard = new ShardRole(shard) { CohortPositions = entry.Members }, CentralNoise = null };
    }
}
