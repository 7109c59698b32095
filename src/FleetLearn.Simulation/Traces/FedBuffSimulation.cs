using FleetLearn.Core.Model;
using FleetLearn.Core.Random;
using FleetLearn.Core.Rounds;
using FleetLearn.Core.Training;

namespace FleetLearn.Simulation.Traces;

/// <summary>
/// FedBuff over an availability trace: an event loop in simulated time (windows opening and closing, uploads arriving) around
/// <see cref="BufferedCoordinator"/>. Eligible vehicles wait in a pool; whenever fewer than the concurrency are training, one
/// is drawn at random (seeded) and checks in, gets the current version, and uploads when its task is done — or withdraws if
/// its window closes first (the agent stops training when the vehicle stops being eligible).
/// </summary>
internal sealed class FedBuffSimulation : TraceFleetSimulation
{
    private readonly BufferedCoordinator _coordinator;
    private readonly Dictionary<long, (float[] Model, int Holders)> _versions = [];

    /// <summary>Creates the run (see <see cref="TraceFleetSimulation.Create"/>).</summary>
    public FedBuffSimulation(SimulationOptions options, TraceSettings settings, AvailabilityTrace trace, LabeledData train, LabeledData test, Func<ModelSpec, int, ITrainer> createTrainer)
        : base(options, settings, trace, train, test, createTrainer)
    {
        _coordinator = new BufferedCoordinator(new BufferedSetup
        {
            Global = InitialModel,
            Strategy = Strategy,
            CodecFor = CodecFor,
            Rules = Rules,
            MaxStaleness = settings.MaxStaleness,
            Concurrency = settings.EffectiveConcurrency(options.CohortSize),
            // Vehicles withdraw when their window closes, so a lease only guards against a lost message.
            Lease = TimeSpan.FromDays(30),
            MaxParticipations = settings.MaxParticipations,
            Ledger = Ledger,
            CentralNoiseFor = options.Privacy is null ? null : v => SimulationRandomness.CentralNoise(options.Seed, v),
        }, Clock);
    }

    /// <inheritdoc/>
    public override ReadOnlySpan<float> GlobalModel => _coordinator.Global;

    /// <inheritdoc/>
    protected override long Version => _coordinator.Version;

    /// <inheritdoc/>
    protected override IReadOnlyList<double>? VehicleEpsilons => ModelledVehicleEpsilons();

    private enum Kind { Open, Close, Arrive, Withdraw }

    private readonly record struct Event(Kind Kind, int Vehicle, long Version, ulong Slot, double Started, double Compute);

    /// <inheritdoc/>
    protected override (long Applied, long Aborted, IReadOnlyDictionary<long, long> Staleness) RunCore(Action<TracePoint>? progress, CancellationToken cancellationToken)
    {
        int n = Trace.Vehicles, concurrency = Settings.EffectiveConcurrency(Options.CohortSize);
        var queue = new PriorityQueue<Event, (double, long)>();
        long sequence = 0;
        void Schedule(double hour, Event e) => queue.Enqueue(e, (hour, sequence++));
        for (int v = 0; v < n; v++)
            foreach (var (start, _) in Trace.Windows(v))
                if (start < Settings.Hours) Schedule(start, new Event(Kind.Open, v, 0, 0, 0, 0));
        var windowEnd = new double[n];
        Array.Fill(windowEnd, double.NaN);
        var busy = new bool[n];
        var buffered = new Dictionary<int, double>();
        var pool = new IndexedPool(n);
        var rng = DeterministicRandom.Derive(Options.Seed, 0xFEDB);
        long applied = 0, aborted = 0;

        bool Eligible(int v) => windowEnd[v] > Now && !busy[v] && !buffered.ContainsKey(v) && MayContribute(v);

        void Dispatch()
        {
            while (_coordinator.Training < concurrency && pool.Count > 0)
            {
                int v = pool.TakeRandom(rng);
                var checkIn = _coordinator.CheckIn(VehicleIds[v]);
                if (checkIn.Admission.Status != AckStatus.Accepted) continue;
                if (VehicleRefusal(v, checkIn.Version) is not null)
                {
                    // Its agent declines on its own ledger (BufferedTask.Join) and withdraws at once; drawn again at its next window.
                    _coordinator.Withdraw(VehicleIds[v]);
                    Decline();
                    continue;
                }
                busy[v] = true;
                if (!_versions.TryGetValue(checkIn.Version, out var held)) held = (_coordinator.Global.ToArray(), 0);
                _versions[checkIn.Version] = (held.Model, held.Holders + 1);
                var (task, compute) = TaskHours(v);
                double finish = Now + task;
                var e = new Event(Kind.Arrive, v, checkIn.Version, checkIn.Slot, Now, compute);
                if (finish <= windowEnd[v]) Schedule(finish, e);
                else Schedule(windowEnd[v], e with { Kind = Kind.Withdraw });
            }
        }

        float[] Release(long version)
        {
            var (model, holders) = _versions[version];
            if (holders == 1 && version != _coordinator.Version) _versions.Remove(version);
            else _versions[version] = (model, holders - 1);
            return model;
        }

        while (queue.TryDequeue(out var e, out var at))
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (Done(at.Item1)) break;
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
                    break;
                case Kind.Withdraw:
                    busy[v] = false;
                    Release(e.Version);
                    _coordinator.Withdraw(VehicleIds[v]);
                    Waste(WasteCause.Dropped, Math.Min(e.Compute, Now - e.Started));
                    break;
                case Kind.Arrive:
                    busy[v] = false;
                    var model = Release(e.Version);
                    ChargeVehicle(v, e.Version); // the agent's own ledger, before its update leaves
                    var (id, message) = TrainAndEncode(v, model, _coordinator.CodecFor(e.Version), e.Slot);
                    var step = _coordinator.Receive(VehicleIds[v], id, message);
                    if (step.Admission.Status != AckStatus.Accepted)
                    {
                        Waste(step.Admission.Reason == RejectReasons.Stale ? WasteCause.Stale : WasteCause.Aborted, e.Compute);
                        if (Eligible(v)) pool.Add(v);
                        break;
                    }
                    buffered[v] = e.Compute;
                    Apply(step);
                    if (step.Effects.OfType<CloseEffect>().SingleOrDefault() is { } close)
                    {
                        foreach (var c in close.Outcome.Contributors)
                        {
                            int u = int.Parse(c, System.Globalization.CultureInfo.InvariantCulture);
                            if (close.Outcome is RoundApplied)
                            {
                                UsedUpdates++;
                                UsedComputeHours += buffered[u];
                                Participations[u]++;
                            }
                            else Waste(WasteCause.Aborted, buffered[u]);
                            buffered.Remove(u);
                            if (Eligible(u)) pool.Add(u);
                        }
                        if (close.Outcome is RoundApplied) applied++;
                        else
                        {
                            aborted++;
                            NoteAbort(close.Outcome);
                        }
                        Evaluate(progress);
                    }
                    break;
            }
            Dispatch();
        }
        AdvanceTo(Math.Min(Settings.Hours, Math.Max(Now, HoursToTarget ?? Settings.Hours)));
        return (applied, aborted, _coordinator.StalenessCounts.ToDictionary(p => p.Key, p => p.Value));
    }

    /// <summary>A set of vehicle indices with O(1) add, remove and uniform random take.</summary>
    internal sealed class IndexedPool(int capacity)
    {
        private readonly List<int> _items = new(capacity);
        private readonly int[] _position = Enumerable.Repeat(-1, capacity).ToArray();

        public int Count => _items.Count;

        public void Add(int v)
        {
            if (_position[v] >= 0) return;
            _position[v] = _items.Count;
            _items.Add(v);
        }

        public void Remove(int v)
        {
            int p = _position[v];
            if (p < 0) return;
            int last = _items[^1];
            _items[p] = last;
            _position[last] = p;
            _items.RemoveAt(_items.Count - 1);
            _position[v] = -1;
        }

        public int TakeRandom(DeterministicRandom rng)
        {
            int v = _items[rng.NextInt(_items.Count)];
            Remove(v);
            return v;
        }
    }
}
