using System.Security.Cryptography;
using FleetLearn.Core.Privacy;

namespace FleetLearn.Aggregator;

/// <summary>
/// Randomness the aggregator draws: central DP noise and the public SecAgg round seed. Production uses
/// <see cref="Secure"/> (cryptographically secure); a simulation that must reproduce the in-process simulator bit for bit
/// passes seeded ones.
/// </summary>
/// <param name="CentralNoise">The noise source of round N's central DP noise.</param>
/// <param name="SecAggSeed">32 public random bytes for round N's SecAgg+ graph.</param>
public sealed record AggregatorRandomness(Func<long, INoiseSource> CentralNoise, Func<long, byte[]> SecAggSeed)
{
    /// <summary>Cryptographically secure noise and seeds (DESIGN.md: DP noise never from <see cref="System.Random"/>).</summary>
    public static AggregatorRandomness Secure { get; } = new(_ => new SecureNoiseSource(), _ => RandomNumberGenerator.GetBytes(32));

    /// <summary>32 public random bytes for shard S's own SecAgg+ graph in round N (sharded rounds); null: secure random.</summary>
    public Func<long, int, byte[]>? ShardSecAggSeed { get; init; }

    /// <summary>The seed of shard <paramref name="shard"/>'s session in round <paramref name="round"/>.</summary>
    public byte[] ShardSeed(long round, int shard) => ShardSecAggSeed?.Invoke(round, shard) ?? RandomNumberGenerator.GetBytes(32);
}
