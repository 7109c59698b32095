using System.Security.Cryptography;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Random;

namespace FleetLearn.EdgeAgent;

/// <summary>
/// The randomness a vehicle draws in round N: the order of its local data, its DP noise share and the stochastic
/// rounding of its quantizer. <see cref="ForVehicle"/> is the production choice: noise and rounding from the
/// cryptographically secure source, data order seeded per vehicle and round. A simulation that must reproduce the
/// in-process simulator bit for bit injects seeded sources instead (a simulation is an experiment, not a deployment),
/// including <see cref="SecAggHolders"/>, the draw of the vehicle's own SecAgg+ share holders (null: the CSPRNG).
/// </summary>
public sealed record AgentRandomness(Func<long, DeterministicRandom> DataOrder, Func<long, INoiseSource> Noise, Func<long, INoiseSource> Rounding,
    Func<long, INoiseSource>? SecAggHolders = null)
{
    /// <summary>Production randomness for <paramref name="vehicleId"/>.</summary>
    public static AgentRandomness ForVehicle(string vehicleId, ulong seed)
    {
        ulong vehicleHash = BitConverter.ToUInt64(SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(vehicleId)));
        return new AgentRandomness(round => DeterministicRandom.Derive(seed ^ vehicleHash, 0xC11E, (ulong)round), _ => new SecureNoiseSource(), _ => new SecureNoiseSource());
    }
}
