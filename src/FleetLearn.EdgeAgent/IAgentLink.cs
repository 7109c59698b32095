using FleetLearn.Core.Rounds;

namespace FleetLearn.EdgeAgent;

/// <summary>
/// The vehicle's link and behaviour as a simulated fleet models them (FleetLearn.Simulation); a deployed agent has none. It sees
/// each step's effects before the agent carries them out, and may hold them (a slower vehicle's upload leaves later) or withhold
/// them (a vehicle that vanishes mid-round never trains or uploads) — the round itself stays <see cref="VehicleRound"/>'s.
/// </summary>
public interface IAgentLink
{
    /// <summary>The effects of a step of <paramref name="plan"/>'s round as the link lets them happen (awaited on the agent's loop).</summary>
    ValueTask<IReadOnlyList<VehicleEffect>> ShapeAsync(string vehicle, RoundPlan plan, IReadOnlyList<VehicleEffect> effects, CancellationToken cancellationToken);

    /// <summary>The aggregator (or the vehicle's shard) acknowledged <paramref name="vehicle"/>'s plaintext update of <paramref name="round"/>, once per update.</summary>
    void UpdateAcknowledged(string vehicle, long round) { }
}
