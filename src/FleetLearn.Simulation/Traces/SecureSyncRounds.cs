using FleetLearn.Core.Rounds;

namespace FleetLearn.Simulation.Traces;

/// <summary>Synchronous rounds with secure aggregation over a trace: each round is one secure group (<see cref="TraceFleetSimulation.RunSecureGroup"/>).</summary>
internal sealed partial class SyncTraceSimulation
{
    /// <summary>
    /// Round <paramref name="round"/> of <paramref name="chosen"/> from <paramref name="start"/>: the secure round waits for every
    /// member still in its window (SecAgg fixes the cohort at ShareKeys, so over-selection buys no early close); members whose
    /// window closed before their masked input are dropped, the rest contribute. False when the round was not applied.
    /// </summary>
    private bool RunSecureRound(long round, IReadOnlyList<int> chosen, double start, Action<TracePoint>? progress)
    {
        var group = RunSecureGroup(round, chosen, [.. chosen.Select(_ => start)], start, _global, _rounds, Strategy);
        AdvanceTo(group.Closed);
        var contributors = group.Outcome.Contributors.ToHashSet(StringComparer.Ordinal);
        foreach (var m in group.Members)
        {
            if (group.Outcome is RoundApplied && contributors.Contains(VehicleIds[m.Vehicle]))
            {
                UsedUpdates++;
                UsedComputeHours += m.Compute;
                Participations[m.Vehicle]++;
            }
            else if (m.Trained) Waste(WasteCause.Aborted, m.Compute);
            else Waste(WasteCause.Dropped, m.Spent);
        }
        if (group.Outcome is RoundApplied applied)
        {
            applied.Parameters.CopyTo(_global, 0);
            _rounds++;
            Evaluate(progress);
            return true;
        }
        NoteAbort(group.Outcome);
        return false;
    }
}
