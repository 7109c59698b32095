using FleetLearn.Core.Model;
using FleetLearn.Core.Random;
using FleetLearn.Core.Rounds;
using FleetLearn.Core.Training;

namespace FleetLearn.Simulation.Traces;

/// <summary>
/// FedBuff with secure aggregation over a trace: each buffer is its own secure-aggregation group (docs/async.md). Eligible
/// vehicles are drawn (seeded) while fewer than the concurrency are training (Core's <see cref="SecureGroupFormation{TVehicle}"/>: a member frees its
/// slot when its masked input is uploaded or it drops, but stays in its group, and out of every other, until the group closes
/// or it drops); they join the forming group, which starts once ⌈K·(1+o)⌉ have joined (or after <see cref="FormationHours"/>
/// with at least 3 and the minimum participants). With <see cref="GroupVersion.Formed"/> (the default) members wait, holding no
/// model and training nothing (but counted against the concurrency, as the aggregator's answer to their check-in reserves them a
/// place), until the group starts, and all train on the version current then; with <see cref="GroupVersion.FirstCheckIn"/> the
/// group is fixed on the version current when its first member joined and each member trains from its own check-in. The group runs <see cref="RoundCoordinator"/>'s secure round (<see cref="TraceFleetSimulation.RunSecureGroup"/>);
/// when it completes, its mean is applied with the group's staleness s(τ) (<see cref="SecureBufferStep"/>). Groups overlap in time.
/// </summary>
internal sealed class SecureBufferGroups : TraceFleetSimulation
{
    /// <summary>Simulated hours a forming group waits for its last members before it starts with those it has (at least 3 and the minimum participants: a smaller sum would not be released).</summary>
    public const double FormationHours = 0.5;

    private readonly float[] _global;
    private readonly Dictionary<long, long> _staleness = [];
    private long _version;

    /// <summary>Creates the run (see <see cref="TraceFleetSimulation.Create"/>).</summary>
    public SecureBufferGroups(SimulationOptions options, TraceSettings settings, AvailabilityTrace trace, LabeledData train, LabeledData test, Func<ModelSpec, int, ITrainer> createTrainer)
        : base(options, settings, trace, train, test, createTrainer) => _global = [.. InitialModel];

    /// <inheritdoc/>
    public override ReadOnlySpan<float> GlobalModel => _global;

    /// <inheritdoc/>
    protected override long Version => _version;

    private enum Kind { Open, Close, Done, Stop, Free, Formation }

    private readonly record struct Event(Kind Kind, int Vehicle, long Group);

    /// <inheritdoc/>
    protected override (long Applied, long Aborted, IReadOnlyDictionary<long, long> Staleness) RunCore(Action<TracePoint>? progress, CancellationToken cancellationToken)
    {
        int n = Trace.Vehicles, concurrency = Settings.EffectiveConcurrency(Options.CohortSize);
        int size = CohortSelection.SelectionSize(Options.CohortSize, Options.OverSelection);
        var queue = new PriorityQueue<Event, (double, long)>();
        long sequence = 0;
        void Schedule(double hour, Event e) => queue.Enqueue(e, (hour, sequence++));
        for (int v = 0; v < n; v++)
            foreach (var (start, _) in Trace.Windows(v))
                if (start < Settings.Hours) Schedule(start, new Event(Kind.Open, v, 0));
        var windowEnd = new double[n];
        Array.Fill(windowEnd, double.NaN);
        // The pure part (who joins, when a group forms, on which version, who holds a slot) is Core's, shared with the aggregator's pump.
        var formation = new SecureGroupFormation<int>(new SecureGroupRules
        {
            GroupSize = size,
            MinimumMembers = Math.Max(3, Rules.MinParticipants),
            Concurrency = concurrency,
            FormationWindow = TimeSpan.FromHours(FormationHours),
            Version = Settings.GroupVersion,
        });
        var slots = new SecureGroupSlots(formation);
        var pool = new FedBuffSimulation.IndexedPool(n);
        var rng = DeterministicRandom.Derive(Options.Seed, 0xFEDB);
        var joinedAt = new double[n]; // simulated hours of each member's check-in (the group's clock runs in hours)
        var running = new Dictionary<long, (SecureGroupResult Group, long Version)>();
        float[] formingModel = [];
        long applied = 0, aborted = 0;
        bool late = Settings.GroupVersion == GroupVersion.Formed;
        double formingSince = double.NaN;

        // The cap counts every charge: a group whose noised sum was released but not applied (stale) charged its members too.
        bool MayJoin(int v) => MayContribute(v) && (Settings.MaxParticipations is not { } cap || Ledger is null || Ledger.Get(VehicleIds[v]).Participations < cap);
        bool Eligible(int v) => windowEnd[v] > Now && !formation.IsHeld(v) && MayJoin(v);

        void Launch(FormedGroup<int> formed)
        {
            // Formed: the group trains on the version current now; FirstCheckIn: on the model kept at its first member's check-in.
            if (late) formingModel = [.. _global];
            double[] joined = [.. formed.Members.Select(m => late ? Now : joinedAt[m])];
            var group = RunSecureGroup(formed.Id, [.. formed.Members], joined, Now, formingModel, formed.Version, new GroupMeanStrategy(Strategy));
            running[formed.Id] = (group, formed.Version);
            Schedule(group.Closed, new Event(Kind.Done, 0, formed.Id)); // before its members are freed at the same hour
            foreach (var m in group.Members)
            {
                Schedule(m.StoppedTraining, new Event(Kind.Stop, m.Vehicle, formed.Id)); // its training slot
                Schedule(m.LeftAt, new Event(Kind.Free, m.Vehicle, formed.Id)); // the group lets it go
            }
        }

        void Dispatch()
        {
            while (formation.HasRoom && pool.Count > 0)
            {
                int v = pool.TakeRandom(rng);
                if (!MayJoin(v)) continue;
                var answer = formation.CheckIn(v, _version, Clock.GetUtcNow());
                if (answer.Admission.Status != AckStatus.Accepted) throw new InvalidOperationException($"Vehicle {v} drawn but refused: {answer.Admission.Why}");
                joinedAt[v] = Now;
                if (formation.Forming.Count == 1 || answer.Formed?.Members.Count == 1)
                {
                    if (!late) formingModel = [.. _global];
                    formingSince = Now;
                    Schedule(Now + FormationHours, new Event(Kind.Formation, 0, answer.Group));
                }
                if (answer.Formed is { } formed) Launch(formed);
            }
        }

        while (queue.TryDequeue(out var e, out var at))
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (Done(at.Item1)) break;
            slots.Until(at.Item1);
            AdvanceTo(at.Item1);
            int v = e.Vehicle;
            switch (e.Kind)
            {
                case Kind.Open:
                    windowEnd[v] = Trace.WindowEndAt(v, Now) ?? double.NaN;
                    if (Eligible(v)) pool.Add(v);
                    Schedule(windowEnd[v], e with { Kind = Kind.Close });
                    break;
                case Kind.Close:
                    pool.Remove(v);
                    // A waiting member of the forming group held nothing: its withdrawal just takes it out. A member still
                    // training drops (its group, forming or not, counts it as dropped).
                    formation.Withdraw(v);
                    break;
                case Kind.Stop:
                    formation.StopTraining(v);
                    break;
                case Kind.Free:
                    formation.Leave(v);
                    if (Eligible(v)) pool.Add(v);
                    break;
                case Kind.Formation:
                    // The group still forming is the one this timer was set for: start it with whoever joined, if SecAgg can.
                    if (e.Group != formation.FormingGroup || formation.Forming.Count == 0 || Now < formingSince + FormationHours - 1e-9) break; // a later timer is set
                    if (formation.Tick(_version, Clock.GetUtcNow()) is { } formed) Launch(formed);
                    else Schedule(Now + FormationHours, e);
                    break;
                case Kind.Done:
                    if (Complete(e.Group)) applied++;
                    else aborted++;
                    break;
            }
            Dispatch();
        }
        AdvanceTo(Math.Min(Settings.Hours, Math.Max(Now, HoursToTarget ?? Settings.Hours)));
        slots.Until(Now);
        if (SecureStats is { } stats && Now > 0)
        {
            stats.MeanTraining = slots.TrainingHours / Now;
            stats.MeanWaiting = slots.WaitingHours / Now;
            stats.PeakHeld = formation.PeakHeld;
        }
        return (applied, aborted, _staleness);

        bool Complete(long id)
        {
            running.Remove(id, out var done);
            var (group, version) = done;
            long staleness = _version - version;
            var outcome = group.Outcome is RoundApplied mean
                ? SecureBufferStep.Apply(Rules, Strategy, _global, mean, version, _version, Settings.MaxStaleness, Clock.GetUtcNow())
                : group.Outcome;
            bool stale = group.Outcome is RoundApplied && staleness > Settings.MaxStaleness;
            var contributors = group.Outcome.Contributors.ToHashSet(StringComparer.Ordinal);
            foreach (var m in group.Members)
            {
                if (outcome is RoundApplied && contributors.Contains(VehicleIds[m.Vehicle]))
                {
                    UsedUpdates++;
                    UsedComputeHours += m.Compute;
                    Participations[m.Vehicle]++;
                }
                else if (m.Trained) Waste(stale ? WasteCause.Stale : WasteCause.Aborted, m.Compute);
                else Waste(WasteCause.Dropped, m.Spent);
            }
            if (outcome is RoundApplied step)
            {
                step.Parameters.CopyTo(_global, 0);
                _version++;
                _staleness[staleness] = _staleness.GetValueOrDefault(staleness) + contributors.Count;
                Evaluate(progress);
                return true;
            }
            NoteAbort(outcome);
            return false;
        }
    }
}
