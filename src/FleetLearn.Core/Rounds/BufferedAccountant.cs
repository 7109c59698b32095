using FleetLearn.Core.Privacy;

namespace FleetLearn.Core.Rounds;

/// <summary>
/// Privacy accounting for buffered rounds. Vehicles check in when they please, so no amplification by sampling is claimed
/// (random check-ins, Balle et al. 2020): each contribution is one Gaussian mechanism on the buffer's sum, charged at
/// σ/s(τ) (<see cref="Staleness.Charge"/>), and a vehicle's ε is bounded by the composition of at most its participation cap
/// of them. The ledger holds the actual charges; these bounds say what the cap guarantees before any step runs.
/// </summary>
public static class BufferedAccountant
{
    /// <summary>
    /// The ε at δ that no vehicle can exceed with at most <paramref name="maxParticipations"/> contributions (the worst case:
    /// all fresh, τ = 0, so each is the full Gaussian mechanism with multiplier σ).
    /// </summary>
    public static PrivacySpent EpsilonBound(int maxParticipations, double noiseMultiplier, double delta)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxParticipations, 1);
        return RdpAccountant.GetEpsilon(1.0, noiseMultiplier, maxParticipations, delta);
    }

    /// <summary>The largest participation cap whose <see cref="EpsilonBound"/> stays within <paramref name="epsilonBudget"/> (0 when not even one does).</summary>
    public static int MaxParticipations(double noiseMultiplier, double delta, double epsilonBudget, int limit = 100_000)
    {
        if (!(epsilonBudget > 0)) throw new ArgumentOutOfRangeException(nameof(epsilonBudget), epsilonBudget, "The budget must be positive.");
        int lo = 0, hi = limit;
        // ε grows with the number of compositions: bisect for the last cap inside the budget.
        while (lo < hi)
        {
            int mid = lo + (hi - lo + 1) / 2;
            if (EpsilonBound(mid, noiseMultiplier, delta).Epsilon <= epsilonBudget) lo = mid;
            else hi = mid - 1;
        }
        return lo;
    }

    /// <summary>RDP at order α of one contribution of staleness τ: α·s(τ)²/(2σ²) = α/(2σ²(1+τ)).</summary>
    public static double RdpOfContribution(double order, double noiseMultiplier, long staleness) =>
        RdpAccountant.ComputeRdp(1.0, Staleness.Charge(noiseMultiplier, staleness).NoiseMultiplier, 1, order);
}
