using System.Collections.Concurrent;
using System.Globalization;
using System.Security.Cryptography;
using FleetLearn.Aggregator;
using FleetLearn.Core.Model;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Random;
using FleetLearn.Core.Rounds;
using FleetLearn.Core.Training;
using FleetLearn.EdgeAgent;
using FleetLearn.Transport.Mqtt;
using FleetLearn.Transport.Mqtt.Broker;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using MsOptions = Microsoft.Extensions.Options.Options;

namespace FleetLearn.Simulation.Traces;

/// <summary>
/// FedBuff over a trace on real MQTT (docs/async.md, "Over MQTT"): the real <see cref="AggregatorWorker"/> in
/// Aggregator:Mode = fedbuff, one real <see cref="EdgeAgentWorker"/> per vehicle on the embedded broker, and this class as the
/// fleet's clock. It runs <see cref="FedBuffSimulation"/>'s event loop in simulated hours, but every step of it is a message:
/// a vehicle drawn to check in becomes eligible (its <see cref="VehicleStateMonitor"/>; the agent checks in on the change) and
/// the loop waits for the aggregator's answer; at its simulated finishing time its held training is released and the loop waits
/// for the aggregator's verdict on the upload; at its window's end it becomes ineligible, its agent withdraws, and the loop waits
/// for the slot to be freed. So the aggregator sees check-ins, uploads and withdrawals in the in-process run's order, the agents
/// draw the same seeded randomness (keyed by the in-process task number), and the final model is the in-process run's.
/// </summary>
public sealed class FedBuffMqttSimulation : TraceFleetSimulation
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(120);
    private static readonly VehicleState Driving = new(Parked: false, Charging: false, Unmetered: false);
    private readonly string _workDirectory;
    private readonly ILoggerFactory _logger;
    private readonly ConcurrentDictionary<(string, BufferedEventKind), TaskCompletionSource<BufferedEvent>> _expected = new();
    private readonly ConcurrentDictionary<string, byte> _seen = new(StringComparer.Ordinal);
    private readonly TaskLink _link = new();
    private float[] _global;
    private long _version;
    private IReadOnlyList<double>? _agentEpsilons;

    /// <summary>Sets up the run; agents and aggregator keep their databases under <paramref name="workDirectory"/>.</summary>
    public FedBuffMqttSimulation(SimulationOptions options, TraceSettings settings, AvailabilityTrace trace, LabeledData train, LabeledData test, Func<ModelSpec, int, ITrainer> createTrainer,
        string workDirectory, ILoggerFactory? logger = null)
        : base(options, settings, trace, train, test, createTrainer)
    {
        if (settings.Mode != RoundMode.FedBuff) throw new ArgumentException("--transport mqtt --trace runs --mode fedbuff (synchronous rounds over MQTT: simulate --transport mqtt without --trace).");
        if (options.SecureAggregation != Core.Compression.SecureAggregationMode.Off)
            throw new ArgumentException("--transport mqtt --mode fedbuff --trace runs plaintext buffers: this loop steers each plaintext update in the in-process order, and a secure group's phases (and which members drop in which phase) are timed inside the in-process group, which it does not reproduce message by message yet. The aggregator runs secure groups over MQTT (Aggregator:Mode fedbuff with Aggregator:SecureAggregation; docs/async.md, \"Secure groups over MQTT\"); on traces use --transport inproc.");
        MqttFleetSimulation.CheckSupported(options);
        _workDirectory = workDirectory;
        _logger = logger ?? NullLoggerFactory.Instance;
        _global = InitialModel.ToArray();
    }

    /// <inheritdoc/>
    public override ReadOnlySpan<float> GlobalModel => _global;

    /// <inheritdoc/>
    protected override long Version => _version;

    /// <inheritdoc/>
    protected override IReadOnlyList<double>? VehicleEpsilons => _agentEpsilons;

    /// <inheritdoc/>
    protected override (long Applied, long Aborted, IReadOnlyDictionary<long, long> Staleness) RunCore(Action<TracePoint>? progress, CancellationToken cancellationToken) =>
        RunAsync(progress, cancellationToken).GetAwaiter().GetResult();

    private async Task<(long, long, IReadOnlyDictionary<long, long>)> RunAsync(Action<TracePoint>? progress, CancellationToken cancellationToken)
    {
        Directory.CreateDirectory(_workDirectory);
        string password = Convert.ToHexString(RandomNumberGenerator.GetBytes(16));
        await using var broker = new EmbeddedBroker(new EmbeddedBrokerOptions { Port = 0, AggregatorPassword = password }, _logger.CreateLogger<EmbeddedBroker>());
        await broker.StartAsync().ConfigureAwait(false);
        var endpoint = new AgentEndpoint("mqtt", "127.0.0.1", broker.Port, null, Path.Combine(_workDirectory, "aggregator-signing.pub.pem"));
        using (SigningKeys.LoadOrCreate(Path.Combine(_workDirectory, "aggregator-signing.pem"))) { }
        int k = Options.CohortSize;
        var aggregatorOptions = MqttFleetSimulation.AggregatorOptionsFor(Options, Partitions, _workDirectory);
        (aggregatorOptions.Mode, aggregatorOptions.Buffer, aggregatorOptions.Concurrency, aggregatorOptions.MaxStaleness) = ("fedbuff", k, Settings.EffectiveConcurrency(k), Settings.MaxStaleness);
        aggregatorOptions.MaxParticipations = Settings.MaxParticipations;
        (aggregatorOptions.Rounds, aggregatorOptions.BufferedLease, aggregatorOptions.OnnxFolder) = (0, TimeSpan.FromDays(30), null); // as in process: vehicles withdraw, leases guard lost messages only
        using var status = new AggregatorStatus();
        status.BufferedHandled += Observe;
        var randomness = new AggregatorRandomness(v => SimulationRandomness.CentralNoise(Options.Seed, v), v => SimulationRandomness.SecAggSeed(Options.Seed, v));
        using var aggregator = new AggregatorWorker(MsOptions.Create(aggregatorOptions), MsOptions.Create(endpoint.Mqtt("aggregator", password)), status, TimeProvider.System,
            _logger.CreateLogger<AggregatorWorker>(), null, randomness);
        var monitors = Enumerable.Range(0, Options.Vehicles).Select(_ => new VehicleStateMonitor(new EligibilityOptions())).ToArray();
        foreach (var m in monitors) m.Update(Driving); // every vehicle starts outside its window: this loop makes it eligible
        AgentHost? agents = null;
        try
        {
            await aggregator.StartAsync(cancellationToken).ConfigureAwait(false);
            // Agents start once the aggregator listens: a check-in before its subscription would be lost.
            for (var ready = DateTime.UtcNow + Wait; !status.Running; await Task.Delay(20, cancellationToken).ConfigureAwait(false))
                if (DateTime.UtcNow > ready || aggregator.ExecuteTask is { IsCompleted: true }) throw new TimeoutException("The aggregator did not start.", aggregator.ExecuteTask?.Exception);
            agents = await AgentHost.StartAsync(Options, Train, Partitions, new AgentRange(0, Options.Vehicles, endpoint), _workDirectory, _logger, cancellationToken,
                shape: v => new AgentShape(monitors[v], Randomness(v), _link, TimeSpan.FromMinutes(10))).ConfigureAwait(false);
            // Each agent's first check-in (0 samples: not eligible) must be in before the loop starts, so that none arrives late.
            int withData = Partitions.Count(p => p.Length > 0);
            var until = DateTime.UtcNow + Wait;
            for (int tick = 1; _seen.Count < withData; tick++)
            {
                if (DateTime.UtcNow > until) throw new TimeoutException($"Only {_seen.Count} of {withData} agents checked in within {Wait.TotalSeconds:F0} s.");
                await Task.Delay(20, cancellationToken).ConfigureAwait(false);
                if (tick % 100 != 0) continue;
                // Not heard yet (its first check-in left before it was connected): a changed, still ineligible state makes it check in again.
                for (int v = 0; v < monitors.Length; v++)
                    if (Partitions[v].Length > 0 && !_seen.ContainsKey(Name(v))) monitors[v].Update(Driving with { Ignition = tick % 200 == 0 });
            }
            return await LoopAsync(monitors, status, progress, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            await aggregator.StopAsync(CancellationToken.None).ConfigureAwait(false);
            if (agents is not null)
            {
                // What the agents' own ledgers hold (read before they close): the in-process run models them (VehicleLedgers).
                var spent = agents.EpsilonByVehicle;
                _agentEpsilons = Options.Privacy is null ? null : [.. Enumerable.Range(0, Options.Vehicles).Select(v => spent.GetValueOrDefault(Name(v)))];
                await agents.DisposeAsync().ConfigureAwait(false);
            }
            foreach (var m in monitors) m.Dispose();
        }
    }

    private enum Kind { Open, Close, Arrive, Withdraw }

    private readonly record struct Event(Kind Kind, int Vehicle, long Version, ulong Slot, double Started, double Compute);

    /// <summary><see cref="FedBuffSimulation"/>'s event loop, each coordinator call replaced by the vehicle's message and the aggregator's answer.</summary>
    private async Task<(long, long, IReadOnlyDictionary<long, long>)> LoopAsync(VehicleStateMonitor[] monitors, AggregatorStatus status, Action<TracePoint>? progress, CancellationToken cancellationToken)
    {
        int n = Trace.Vehicles, concurrency = Settings.EffectiveConcurrency(Options.CohortSize);
        var queue = new PriorityQueue<Event, (double, long)>();
        long sequence = 0, applied = 0, aborted = 0, tasks = 0;
        void Schedule(double hour, Event e) => queue.Enqueue(e, (hour, sequence++));
        for (int v = 0; v < n; v++)
            foreach (var (start, _) in Trace.Windows(v))
                if (start < Settings.Hours) Schedule(start, new Event(Kind.Open, v, 0, 0, 0, 0));
        var windowEnd = new double[n];
        Array.Fill(windowEnd, double.NaN);
        var busy = new bool[n];
        var buffered = new Dictionary<int, double>();
        var pool = new FedBuffSimulation.IndexedPool(n);
        var rng = DeterministicRandom.Derive(Options.Seed, 0xFEDB);
        int training = 0;

        bool Eligible(int v) => windowEnd[v] > Now && !busy[v] && !buffered.ContainsKey(v) && MayContribute(v);

        // The vehicle leaves its window (or its update was handled): its agent checks in with 0 samples; wait until the aggregator had it.
        async Task<BufferedEvent> LeaveAsync(int v, Task<BufferedEvent>? expected = null)
        {
            var answered = expected ?? Expect(v, BufferedEventKind.Withdrawn);
            monitors[v].Update(Driving);
            return await answered.ConfigureAwait(false);
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
                    var consumed = _link.Decide(Name(v), arrive: false, task: 0);
                    var withdrawn = await LeaveAsync(v).ConfigureAwait(false);
                    if (withdrawn.Admission.Status != AckStatus.Accepted) // as in process, where Withdraw frees the slot it holds
                        throw new InvalidOperationException(string.Create(CultureInfo.InvariantCulture, $"{Name(v)} withdrew at simulated hour {Now:F3}, but the aggregator had no check-in of it to free."));
                    training = withdrawn.Progress.Training;
                    await consumed.WaitAsync(Wait, cancellationToken).ConfigureAwait(false); // the agent left the task: it may take another
                    Waste(WasteCause.Dropped, Math.Min(e.Compute, Now - e.Started));
                    break;
                case Kind.Arrive:
                    busy[v] = false;
                    ChargeVehicle(v, e.Version); // the agent charges its own ledger now: the model of it follows
                    var verdict = Expect(v, BufferedEventKind.Update);
                    _ = _link.Decide(Name(v), arrive: true, task: ++tasks);
                    var handled = await verdict.ConfigureAwait(false);
                    training = (await LeaveAsync(v).ConfigureAwait(false)).Progress.Training;
                    if (handled.Admission.Status != AckStatus.Accepted)
                    {
                        Waste(handled.Admission.Reason == RejectReasons.Stale ? WasteCause.Stale : WasteCause.Aborted, e.Compute);
                        if (Eligible(v)) pool.Add(v);
                        break;
                    }
                    buffered[v] = e.Compute;
                    if (handled.Step is not { } step) break;
                    Apply(new RoundStep(handled.Admission, handled.Charges)); // the aggregator's charges, in this run's ledger as in process
                    foreach (var c in step.Contributors)
                    {
                        int u = int.Parse(c.AsSpan("vehicle-".Length), CultureInfo.InvariantCulture);
                        if (step is RoundApplied)
                        {
                            UsedUpdates++;
                            UsedComputeHours += buffered[u];
                            Participations[u]++;
                        }
                        else Waste(WasteCause.Aborted, buffered[u]);
                        buffered.Remove(u);
                        if (Eligible(u)) pool.Add(u);
                    }
                    if (step is RoundApplied a)
                    {
                        applied++;
                        (_global, _version) = (a.Parameters.ToArray(), handled.Progress.Version);
                    }
                    else
                    {
                        aborted++;
                        NoteAbort(step);
                    }
                    Evaluate(progress);
                    break;
            }
            // Dispatch: while slots are free, a vehicle drawn from the eligible pool (the in-process draw) checks in.
            while (training < concurrency && pool.Count > 0)
            {
                int d = pool.TakeRandom(rng);
                _link.Arm(Name(d));
                var answer = Expect(d, BufferedEventKind.Answered);
                // An assignment is of the current version; if the vehicle's own ledger declines it (as in process), its agent withdraws at once.
                var declined = VehicleRefusal(d, _version) is null ? null : Expect(d, BufferedEventKind.Withdrawn);
                monitors[d].Update(VehicleState.Idle);
                var checkIn = await answer.ConfigureAwait(false);
                training = checkIn.Progress.Training;
                if (checkIn.Admission.Status != AckStatus.Accepted)
                {
                    training = (await LeaveAsync(d, declined).ConfigureAwait(false)).Progress.Training;
                    continue;
                }
                if (checkIn.Version != _version)
                    throw new InvalidOperationException(string.Create(CultureInfo.InvariantCulture, $"{Name(d)} was assigned version {checkIn.Version} while the run is at {_version}."));
                if (declined is not null)
                {
                    training = (await declined.ConfigureAwait(false)).Progress.Training;
                    Decline();
                    training = (await LeaveAsync(d).ConfigureAwait(false)).Progress.Training; // outside a window again, as after a refusal
                    continue;
                }
                busy[d] = true;
                var (task, compute) = TaskHours(d);
                var next = new Event(Kind.Arrive, d, checkIn.Version, checkIn.Slot, Now, compute);
                if (Now + task <= windowEnd[d]) Schedule(Now + task, next);
                else Schedule(windowEnd[d], next with { Kind = Kind.Withdraw });
            }
        }
        AdvanceTo(Math.Min(Settings.Hours, Math.Max(Now, HoursToTarget ?? Settings.Hours)));
        return (applied, aborted, status.Staleness);
    }

    private static string Name(int v) => MqttFleetSimulation.VehicleName(v);

    /// <summary>The aggregator's next <paramref name="kind"/> event for vehicle <paramref name="v"/> (registered before the vehicle acts).</summary>
    private async Task<BufferedEvent> Expect(int v, BufferedEventKind kind)
    {
        var waiting = new TaskCompletionSource<BufferedEvent>(TaskCreationOptions.RunContinuationsAsynchronously);
        _expected[(Name(v), kind)] = waiting;
        try
        {
            return await waiting.Task.WaitAsync(Wait).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            throw new TimeoutException(string.Create(CultureInfo.InvariantCulture, $"The aggregator did not report a {kind} of {Name(v)} within {Wait.TotalSeconds:F0} s (simulated hour {Now:F3})."));
        }
    }

    private void Observe(BufferedEvent e)
    {
        _seen.TryAdd(e.Vehicle, 0);
        if (_expected.TryRemove((e.Vehicle, e.Kind), out var waiting)) waiting.TrySetResult(e);
    }

    /// <summary>Vehicle <paramref name="v"/>'s draws, keyed by the in-process run's task number (known when its training is released).</summary>
    private AgentRandomness Randomness(int v)
    {
        ulong seed = Options.Seed;
        return new AgentRandomness(
            _ => SimulationRandomness.DataOrder(seed, _link.TaskOf(Name(v)), v),
            _ => new DeferredNoise(() => SimulationRandomness.Noise(seed, _link.TaskOf(Name(v)), v)),
            _ => new DeferredNoise(() => SimulationRandomness.Rounding(seed, _link.TaskOf(Name(v)), v)));
    }

    /// <summary>
    /// The agents' link: a vehicle's training waits until the loop decides its task — released at its simulated finishing time
    /// (with the task number its randomness follows), or abandoned when its window closed first (the agent then drops the task).
    /// </summary>
    private sealed class TaskLink : IAgentLink
    {
        private readonly ConcurrentDictionary<string, Gate> _gates = new(StringComparer.Ordinal);
        private readonly ConcurrentDictionary<string, long> _tasks = new(StringComparer.Ordinal);

        public void Arm(string vehicle) => _gates[vehicle] = new Gate();

        public Task Decide(string vehicle, bool arrive, long task)
        {
            var gate = _gates[vehicle];
            if (arrive) _tasks[vehicle] = task;
            gate.Decision.TrySetResult(arrive);
            return gate.Consumed.Task;
        }

        public long TaskOf(string vehicle) => _tasks.GetValueOrDefault(vehicle);

        public async ValueTask<IReadOnlyList<VehicleEffect>> ShapeAsync(string vehicle, RoundPlan plan, IReadOnlyList<VehicleEffect> effects, CancellationToken cancellationToken)
        {
            if (!effects.Any(e => e is TrainEffect)) return effects;
            var gate = _gates[vehicle];
            bool arrive = await gate.Decision.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
            gate.Consumed.TrySetResult();
            return arrive ? effects : [new FinishedEffect(new Abandoned("its availability window closed before the update was done"))];
        }

        private sealed class Gate
        {
            public TaskCompletionSource<bool> Decision { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

            public TaskCompletionSource Consumed { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        }
    }

    /// <summary>A noise source made on first use (the task number that seeds it is known only when training is released).</summary>
    private sealed class DeferredNoise(Func<INoiseSource> create) : INoiseSource
    {
        private readonly Lazy<INoiseSource> _source = new(create);

        public void FillStandardNormal(Span<double> destination) => _source.Value.FillStandardNormal(destination);

        public double NextUniform() => _source.Value.NextUniform();
    }
}
