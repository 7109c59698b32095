using FleetLearn.Core.Rounds;

namespace FleetLearn.Simulation.Traces;

/// <summary>
/// Secure FedBuff's concurrency accounting in simulated hours (docs/async.md, "Secure aggregation on traces"): who holds a slot
/// and who is held by a group is <see cref="SecureGroupFormation{TVehicle}"/>'s (Core, shared with the aggregator); this
/// integrates its <see cref="SecureGroupFormation{TVehicle}.Training"/> and <see cref="SecureGroupFormation{TVehicle}.Held"/>
/// counts over the hours (<see cref="Until"/>, called before each event changes them).
/// </summary>
internal sealed class SecureGroupSlots(SecureGroupFormation<int> formation)
{
    private double _last;

    /// <summary>Vehicle-hours spent training, up to the last <see cref="Until"/>.</summary>
    public double TrainingHours { get; private set; }

    /// <summary>Vehicle-hours spent held by a group without training (done, waiting for its group's phases), up to the last <see cref="Until"/>.</summary>
    public double WaitingHours { get; private set; }

    /// <summary>Counts the time from the previous call to <paramref name="hour"/> at the current counts (never backwards).</summary>
    public void Until(double hour)
    {
        if (!(hour > _last)) return;
        TrainingHours += (hour - _last) * formation.Training;
        WaitingHours += (hour - _last) * (formation.Held - formation.Training);
        _last = hour;
    }
}
