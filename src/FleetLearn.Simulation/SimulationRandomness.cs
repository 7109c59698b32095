using FleetLearn.Core.Privacy;
using FleetLearn.Core.Random;

namespace FleetLearn.Simulation;

/// <summary>
/// Every random draw of a simulated run, as a pure function of (seed, purpose, round, vehicle). The in-process simulator
/// and the MQTT simulation (whose agents and aggregator get these instead of their cryptographically secure sources)
/// call the same functions, so both transports produce the same model bit for bit. A simulation is an experiment, not a
/// deployment: outside it, DP noise always comes from <see cref="SecureNoiseSource"/>.
/// </summary>
internal static class SimulationRandomness
{
    private static ulong PerVehicle(long round, int vehicle) => ((ulong)(uint)round << 32) | (uint)vehicle;

    /// <summary>Order of vehicle <paramref name="vehicle"/>'s local data in round <paramref name="round"/>.</summary>
    public static DeterministicRandom DataOrder(ulong seed, long round, int vehicle) => DeterministicRandom.Derive(seed, 0xC11E, PerVehicle(round, vehicle));

    /// <summary>The vehicle's DP noise share.</summary>
    public static SeededNoiseSource Noise(ulong seed, long round, int vehicle) => new(DeterministicRandom.Derive(seed, 0xD157, PerVehicle(round, vehicle)).NextUInt64());

    /// <summary>The vehicle's stochastic rounding.</summary>
    public static SeededNoiseSource Rounding(ulong seed, long round, int vehicle) => new(DeterministicRandom.Derive(seed, 0x0A7D, PerVehicle(round, vehicle)).NextUInt64());

    /// <summary>The vehicle's draw of its own SecAgg+ share holders (self-chosen holders; the masks cancel whatever it draws).</summary>
    public static SeededNoiseSource SecAggHolders(ulong seed, long round, int vehicle) => new(DeterministicRandom.Derive(seed, 0x401D, PerVehicle(round, vehicle)).NextUInt64());

    /// <summary>The aggregator's central DP noise of a round.</summary>
    public static SeededNoiseSource CentralNoise(ulong seed, long round) => new(DeterministicRandom.Derive(seed, 0xCE27, (ulong)round).NextUInt64());

    /// <summary>The public SecAgg round seed (fixes the SecAgg+ graph).</summary>
    public static byte[] SecAggSeed(ulong seed, long round) => SecAggSeed(seed, round, 0x5EC5);

    /// <summary>The public SecAgg round seed of one shard's own secure aggregation.</summary>
    public static byte[] ShardSecAggSeed(ulong seed, long round, int shard) => SecAggSeed(seed, round, 0x5EC5_0000UL + 1 + (uint)shard);

    private static byte[] SecAggSeed(ulong seed, long round, ulong purpose)
    {
        var rng = DeterministicRandom.Derive(seed, purpose, (ulong)round);
        var bytes = new byte[32];
        for (int i = 0; i < 4; i++) BitConverter.TryWriteBytes(bytes.AsSpan(8 * i), rng.NextUInt64());
        return bytes;
    }
}
