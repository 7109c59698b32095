using FleetLearn.Core.Privacy;
using FleetLearn.Core.Rounds;

namespace FleetLearn.Simulation.Traces;

/// <summary>Each vehicle's own privacy ledger, modelled as its edge agent keeps it under FedBuff (docs/async.md, "Over MQTT").</summary>
public abstract partial class TraceFleetSimulation
{
    private readonly Dictionary<long, PrivacyCharge> _vehicleCharges = [];
    private PrivacyLedger? _vehicleLedgers;

    /// <summary>
    /// The vehicles' own ledgers (null without DP): what each agent records before its update leaves — a fresh contribution's
    /// charge per update sent, whatever staleness the aggregator later finds (the aggregator's <see cref="Ledger"/> charges σ√(1+τ)
    /// per released contribution). Same budget and δ as the agents' (<c>Agent:EpsilonBudget</c>, <c>Agent:PrivacyDelta</c>).
    /// </summary>
    protected PrivacyLedger? VehicleLedgers => Options.Privacy is not { } dp ? null
        : _vehicleLedgers ??= new PrivacyLedger(new PrivacyLedgerOptions(dp.EpsilonBudget ?? double.MaxValue, dp.Delta));

    /// <summary>Assignments vehicles declined on their own ledger (a release already charged, or the budget).</summary>
    protected long VehicleDeclines { get; private set; }

    /// <summary>The ε each vehicle's own ledger holds (index = vehicle), where the run models it; null otherwise.</summary>
    protected virtual IReadOnlyList<double>? VehicleEpsilons => null;

    /// <summary>Whether the vehicle's agent still checks in with samples: not once its own ε reached its budget (<see cref="VehicleBudget.Spent"/>).</summary>
    private bool HasBudgetLeft(int vehicle) => VehicleLedgers is not { } ledgers || !VehicleBudget.Spent(ledgers.EpsilonOf(VehicleIds[vehicle]), Options.Privacy?.EpsilonBudget);

    /// <summary>
    /// Why <paramref name="vehicle"/>'s agent declines an assignment of model <paramref name="version"/> on its own ledger
    /// (<see cref="VehicleBudget.Refusal"/>, as <see cref="BufferedTask.Join"/> decides it), or null. Pure: see <see cref="Decline"/>.
    /// </summary>
    protected string? VehicleRefusal(int vehicle, long version) =>
        VehicleLedgers is not { } ledgers ? null : VehicleBudget.Refusal(VehicleCharge(version), new PrivacyLedgerAccount(ledgers, VehicleIds[vehicle]), version + 1, version);

    /// <summary>Counts a declined assignment (the vehicle withdraws its check-in at once and is not drawn again before its next window).</summary>
    protected void Decline() => VehicleDeclines++;

    /// <summary>
    /// The vehicle's charge before its update on <paramref name="version"/> leaves (<see cref="VehicleRound"/>'s charge point: its
    /// own ledger, under the plan's round, version + 1). It cannot fail after <see cref="VehicleRefusal"/> accepted the assignment:
    /// a vehicle holds one task at a time, so nothing was recorded in between.
    /// </summary>
    protected void ChargeVehicle(int vehicle, long version)
    {
        if (VehicleLedgers is not { } ledgers) return;
        if (!new PrivacyLedgerAccount(ledgers, VehicleIds[vehicle]).TryRecord(version + 1, VehicleCharge(version)))
            throw new InvalidOperationException($"Vehicle {VehicleIds[vehicle]}'s ledger refused the charge of an assignment it accepted (model {version}).");
    }

    /// <summary>The ε of each vehicle's modelled ledger (index = vehicle); null without DP.</summary>
    protected IReadOnlyList<double>? ModelledVehicleEpsilons() =>
        VehicleLedgers is not { } ledgers ? null : [.. VehicleIds.Select(ledgers.EpsilonOf)];

    /// <summary>What the vehicle charges for one contribution on <paramref name="version"/> (<see cref="RoundProtection.ChargeOf"/>, as its plan's protection does).</summary>
    private PrivacyCharge VehicleCharge(long version)
    {
        if (!_vehicleCharges.TryGetValue(version, out var charge))
            _vehicleCharges[version] = charge = RoundProtection.ChargeOf(CodecFor(version), Rules.MinNoiseShares, Options.Privacy!.NoiseMultiplier);
        return charge;
    }
}
