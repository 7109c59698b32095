using System.Globalization;
using FleetLearn.Core.Privacy;

namespace FleetLearn.Core.Rounds;

/// <summary>
/// The vehicle's own ε budget as its agent applies it to FedBuff work — when it stops checking in, when it declines an assignment
/// — shared by the edge agent and the simulators that model each vehicle's ledger (docs/async.md, "Over MQTT").
/// </summary>
public static class VehicleBudget
{
    /// <summary>Whether a vehicle that has spent <paramref name="epsilon"/> is out of <paramref name="budget"/>: it then checks in with 0 samples ("privacy budget spent").</summary>
    public static bool Spent(double epsilon, double? budget) => budget is { } b && epsilon >= b;

    /// <summary>
    /// Why the vehicle declines a contribution on model <paramref name="version"/> under release <paramref name="release"/>
    /// charged <paramref name="charge"/> (<see cref="RoundProtection.Charge"/>: a fresh contribution, σ — the vehicle cannot know
    /// the staleness its update will have), or null: its ledger already holds a record for that release (one record per key), or
    /// the charge would exceed its budget. Without a charge (no DP) or a ledger the vehicle never declines here.
    /// </summary>
    public static string? Refusal(PrivacyCharge? charge, IVehicleLedger? ledger, long release, long version)
    {
        if (charge is not { } c || ledger is null) return null;
        if (ledger.HasRecorded(release))
            return string.Create(CultureInfo.InvariantCulture, $"this vehicle already contributed under release {release} (model {version}): its ledger holds one record per release");
        if (!ledger.CanParticipate(c)) return $"the contribution would exceed this vehicle's ε budget (spent {ledger.Epsilon:F3})";
        return null;
    }
}
