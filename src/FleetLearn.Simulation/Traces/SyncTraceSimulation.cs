using FleetLearn.Core.Model;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Rounds;
using FleetLearn.Core.Training;

namespace FleetLearn.Simulation.Traces;

/// <summary>
/// Synchronous rounds over an availability trace, each one a <see cref="RoundCoordinator"/> on the simulated clock: at the
/// round's start ⌈K·(1+o)⌉ of the vehicles eligible then are selected (<see cref="CohortSelection"/>); each uploads when its
/// task is done unless its window closes first; the round closes at its K-th update, at the deadline, or when nobody it waits
/// for is left — and every selected vehicle that did not contribute is counted as waste, by cause.
/// </summary>
internal sealed partial class SyncTraceSimulation : TraceFleetSimulation
{
    /// <summary>Hours to wait when fewer than K vehicles are eligible (a real aggregator waits for check-ins).</summary>
    private const double WaitHours = 5.0 / 60;

    private readonly float[] _global;
    private readonly PacedCheckIns _checkIns;
    private long _rounds;

    /// <summary>Creates the run (see <see cref="TraceFleetSimulation.Create"/>).</summary>
    public SyncTraceSimulation(SimulationOptions options, TraceSettings settings, AvailabilityTrace trace, LabeledData train, LabeledData test, Func<ModelSpec, int, ITrainer> createTrainer)
        : base(options, settings, trace, train, test, createTrainer)
    {
        _global = [.. InitialModel];
        _checkIns = new PacedCheckIns(Trace, Trace.Vehicles, settings.Hours, settings.Pace, options.Seed);
    }

    /// <inheritdoc/>
    protected override IReadOnlyList<long>? CheckInLoad
    {
        get
        {
            // Counted up to where the run stopped (the rounds only advance the check-ins to each round's start).
            double end = Math.Min(Now, Settings.Hours);
            _checkIns.AdvanceTo(end);
            return [.. _checkIns.PerHour.Take((int)Math.Ceiling(end))];
        }
    }

    /// <inheritdoc/>
    public override ReadOnlySpan<float> GlobalModel => _global;

    /// <inheritdoc/>
    protected override long Version => _rounds;

    /// <inheritdoc/>
    protected override (long Applied, long Aborted, IReadOnlyDictionary<long, long> Staleness) RunCore(Action<TracePoint>? progress, CancellationToken cancellationToken)
    {
        int k = Options.CohortSize, want = CohortSelection.SelectionSize(k, Options.OverSelection);
        long round = 0, aborted = 0;
        double deadlineHours = Options.DeadlineSeconds / 3600;
        while (!Done(Now))
        {
            cancellationToken.ThrowIfCancellationRequested();
            double start = Now;
            _checkIns.AdvanceTo(start);
            // With pace steering only the vehicles that checked in (at their suggested time) are candidates.
            var eligible = Enumerable.Range(0, Trace.Vehicles).Where(v => Trace.WindowEndAt(v, start) is not null && (!Settings.Pace || _checkIns.CheckedIn(v)) && MayContribute(v)).ToList();
            if (eligible.Count < k)
            {
                AdvanceTo(start + WaitHours);
                continue;
            }
            round++;
            var chosen = CohortSelection.Select(eligible, want, Options.Seed, round);
            if (Pipeline.IsSecure)
            {
                if (!RunSecureRound(round, chosen, start, progress)) aborted++;
                continue;
            }
            var fates = chosen.Select((v, i) =>
            {
                var (task, compute) = TaskHours(v);
                double end = Trace.WindowEndAt(v, start)!.Value;
                return (Vehicle: v, Index: i, Finish: start + task, WindowEnd: end, Ok: start + task <= end, Compute: compute);
            }).ToArray();
            // The round waits at most until its deadline, and no longer than until every member has uploaded or dropped.
            double closeBy = Math.Min(start + deadlineHours, fates.Max(f => f.Ok ? f.Finish : f.WindowEnd));
            var codec = CodecFor(round);
            using var coordinator = new RoundCoordinator(new RoundSetup
            {
                Round = round,
                Cohort = [.. chosen.Select(v => VehicleIds[v])],
                Global = _global,
                Strategy = Strategy,
                Codec = codec,
                Rules = Rules,
                Deadline = Trace.Origin + TimeSpan.FromHours(closeBy),
                CentralNoiseMultiplier = Options.Privacy?.NoiseMultiplier,
                CentralNoise = Rules.Privacy == NoiseMode.Central ? SimulationRandomness.CentralNoise(Options.Seed, round) : null,
            }, Clock);
            foreach (var f in fates.Where(f => f.Ok && f.Finish <= closeBy).OrderBy(f => f.Finish).ThenBy(f => f.Vehicle))
            {
                AdvanceTo(f.Finish);
                var (id, message) = TrainAndEncode(f.Vehicle, _global, codec, (ulong)f.Index);
                Apply(coordinator.Receive(VehicleIds[f.Vehicle], id, message));
                if (coordinator.Phase is Closed) break;
            }
            if (coordinator.Phase is not Closed)
            {
                AdvanceTo(closeBy);
                Apply(coordinator.Tick());
            }
            var outcome = coordinator.Outcome!;
            double closed = Now;
            bool full = outcome.Contributors.Count >= k;
            var contributors = outcome.Contributors.ToHashSet(StringComparer.Ordinal);
            foreach (var f in fates)
            {
                double spent = Math.Min(f.Compute, Math.Min(closed, f.WindowEnd) - start);
                if (contributors.Contains(VehicleIds[f.Vehicle]))
                {
                    if (outcome is RoundApplied)
                    {
                        UsedUpdates++;
                        UsedComputeHours += f.Compute;
                        Participations[f.Vehicle]++;
                    }
                    else Waste(WasteCause.Aborted, f.Compute);
                }
                else if (!f.Ok && f.WindowEnd <= closed) Waste(WasteCause.Dropped, spent);
                else Waste(full ? WasteCause.Surplus : WasteCause.Straggler, spent);
            }
            if (outcome is RoundApplied applied)
            {
                applied.Parameters.CopyTo(_global, 0);
                _rounds++;
                Evaluate(progress);
            }
            else
            {
                aborted++;
                NoteAbort(outcome);
            }
        }
        return (_rounds, aborted, new Dictionary<long, long> { [0] = UsedUpdates });
    }
}
