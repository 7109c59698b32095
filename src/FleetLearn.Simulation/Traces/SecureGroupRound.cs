using System.Security.Cryptography;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Model;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Rounds;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Simulation.Traces;

/// <summary>How one member of a secure group ended: when it stopped being held by the group, and whether it trained.</summary>
/// <param name="Vehicle">The vehicle.</param>
/// <param name="Trained">Whether it trained and sent its masked input.</param>
/// <param name="Compute">Its compute hours for one update.</param>
/// <param name="Spent">Compute hours it spent in this group (all of <paramref name="Compute"/> if it trained, else until it left).</param>
/// <param name="LeftAt">Simulated hour it left the group: when its window closed mid-protocol, else the group's close.</param>
/// <param name="DroppedIn">The protocol phase whose message it never sent (its window closed first); null if it answered every one.</param>
/// <param name="StoppedTraining">Simulated hour it stopped training: when its masked input reached the server, else when it left (at most <paramref name="LeftAt"/>).</param>
internal readonly record struct SecureMember(int Vehicle, bool Trained, double Compute, double Spent, double LeftAt, SecAggServerPhase? DroppedIn, double StoppedTraining);

/// <summary>One secure group (a synchronous round, or a FedBuff buffer) run in simulated time.</summary>
/// <param name="Outcome">The coordinator's outcome (contributors = SecAgg survivors).</param>
/// <param name="Start">Simulated hour the protocol opened (AdvertiseKeys).</param>
/// <param name="InputOpened">Hour the masked-input phase opened (the key phases' cost); NaN if it never did.</param>
/// <param name="InputClosed">Hour the masked-input phase closed; NaN if it never did.</param>
/// <param name="Closed">Hour the round closed.</param>
/// <param name="Members">Each member's fate, in cohort-index order.</param>
internal sealed record SecureGroupResult(RoundOutcome Outcome, double Start, double InputOpened, double InputClosed, double Closed, IReadOnlyList<SecureMember> Members);

/// <summary>What secure aggregation cost over a trace run: groups, phase hours, members lost per phase.</summary>
public sealed record SecureGroupStats
{
    /// <summary>Secure groups run (synchronous rounds or FedBuff buffers).</summary>
    public long Groups { get; set; }

    /// <summary>Groups whose secure sum was not released (too few survivors, threshold not met).</summary>
    public long Aborted { get; set; }

    /// <summary>Members, summed over groups.</summary>
    public long Members { get; set; }

    /// <summary>Σ hours from the group's opening to its masked-input phase (AdvertiseKeys + ShareKeys).</summary>
    public double KeyPhaseHours { get; set; }

    /// <summary>Σ hours of the masked-input phase (the wait for training).</summary>
    public double InputPhaseHours { get; set; }

    /// <summary>Σ hours from the masked-input phase's close to the group's close (Unmasking).</summary>
    public double UnmaskPhaseHours { get; set; }

    /// <summary>Members whose window closed before they sent the message of each phase.</summary>
    public Dictionary<string, long> DroppedIn { get; } = new(StringComparer.Ordinal);

    /// <summary>FedBuff: mean vehicles training at once over the run (what the concurrency limits); null for sync.</summary>
    public double? MeanTraining { get; set; }

    /// <summary>FedBuff: mean vehicles held by an unfinished group without training (their masked input sent, waiting for the group's phases); null for sync.</summary>
    public double? MeanWaiting { get; set; }

    /// <summary>FedBuff: the most vehicles held by unfinished groups at once (training or waiting); null for sync.</summary>
    public int? PeakHeld { get; set; }

    /// <summary>Members who dropped after sharing their keys and before their masked input: their masks were rebuilt from shares.</summary>
    public long MasksRebuilt => DroppedIn.GetValueOrDefault(nameof(SecAggServerPhase.MaskedInputCollection));
}

/// <summary>
/// One secure-aggregation group in simulated time: <see cref="RoundCoordinator"/>'s secure round (the real
/// <see cref="SecAggServer"/>, every member a real <see cref="VehicleRound"/> with its <see cref="SecAggVehicle"/>) driven on the
/// group's own clock. Every message costs a round trip at the member's depot bandwidth (<see cref="RoundTripSeconds"/> plus its
/// bytes each way); the masked input leaves once both the forwarded shares are in and the local update is trained (training
/// starts at check-in, beside the key phases). A member whose window closes before it sends a phase's message never sends it —
/// after ShareKeys the server rebuilds its masks from shares. A phase closes when every member it waits for has answered or has
/// left: a leaving vehicle says so (as plaintext FedBuff's withdraw does); the server has no withdraw message, so the driver
/// moves the group's clock to the phase deadline the server would reach anyway, without counting the wait in simulated hours.
/// </summary>
public abstract partial class TraceFleetSimulation
{
    /// <summary>The fixed cost of one request/answer exchange over depot Wi-Fi and the broker, in seconds (plus the bytes at the vehicle's bandwidth).</summary>
    public const double RoundTripSeconds = 0.5;

    private readonly Dictionary<int, ECDsa> _deviceKeys = [];

    /// <summary>What secure aggregation cost so far (null for plaintext runs).</summary>
    protected SecureGroupStats? SecureStats { get; private set; }

    /// <summary>
    /// Runs group <paramref name="round"/> of <paramref name="members"/> (who checked in at <paramref name="joined"/>) from
    /// <paramref name="start"/> on <paramref name="model"/> (version <paramref name="version"/>) with <paramref name="strategy"/>;
    /// the ledger is charged as the coordinator asks. The caller accounts for the members and applies the outcome.
    /// </summary>
    private protected SecureGroupResult RunSecureGroup(long round, IReadOnlyList<int> members, IReadOnlyList<double> joined, double start, float[] model, long version, IFederatedStrategy strategy)
    {
        int n = members.Count;
        var codec = CodecFor(round);
        var phaseTimeout = TimeSpan.FromHours(double.IsFinite(Options.DeadlineSeconds) ? Options.DeadlineSeconds / 3600 : 24);
        var parameters = Pipeline.CreateSecAggParameters((ulong)round, n, SimulationRandomness.SecAggSeed(Options.Seed, round), phaseTimeout, Math.Min(n, Rules.MinNoiseShares));
        var clock = new ManualTimeProvider(Trace.Origin + TimeSpan.FromHours(start));
        double now = start;
        void MoveTo(double hour)
        {
            if (!(hour > now)) return;
            clock.Advance(TimeSpan.FromHours(hour - now));
            now = hour;
        }
        var ids = members.Select(v => VehicleIds[v]).ToArray();
        var windowEnd = members.Select((v, i) => Trace.WindowEndAt(v, joined[i]) ?? joined[i]).ToArray();
        var mbps = members.Select(v => Settings.Resources.Mbps(Options.Seed, v)).ToArray();
        var compute = members.Select(v => Settings.Resources.ComputeHours(Options.Seed, v)).ToArray();
        double Transfer(int i, long bytes) => bytes * 8.0 / (mbps[i] * 1e6) / 3600;
        double RoundTrip(int i, long bytes) => RoundTripSeconds / 3600 + Transfer(i, bytes);
        // Those whose task fits their window are numbered in the order they finish, as plaintext rounds number those who upload:
        // the same seeds, the same updates. The others (they drop) get numbers outside the counter's range.
        var trainedBy = Enumerable.Range(0, n).Select(i => joined[i] + Transfer(i, ModelBytes) + compute[i]).ToArray();
        var finish = Enumerable.Range(0, n).Select(i => joined[i] + Settings.Resources.TaskHours(Options.Seed, members[i], ModelBytes, UpdateBytes)).ToArray();
        var tasks = Enumerable.Range(0, n).Select(i => (1L << 40) + round * 65536 + i).ToArray();
        foreach (int i in Enumerable.Range(0, n).Where(i => finish[i] <= windowEnd[i]).OrderBy(i => finish[i]).ThenBy(i => members[i])) tasks[i] = NextTask();
        var stats = SecureStats ??= new SecureGroupStats();
        var leftAt = new double[n];
        var droppedIn = new SecAggServerPhase?[n];
        var trained = new bool[n];
        var sentAt = new double[n];
        Array.Fill(sentAt, double.PositiveInfinity);
        var vehicles = new VehicleRound[n];
        using var vehicleRegistry = Registry(members);
        using var coordinator = new RoundCoordinator(new RoundSetup
        {
            Round = round,
            Cohort = ids,
            Global = model,
            Strategy = strategy,
            Codec = codec,
            Rules = Rules,
            Deadline = clock.GetUtcNow() + phaseTimeout * 6,
            CentralNoiseMultiplier = Options.Privacy?.NoiseMultiplier,
            CentralNoise = Rules.Privacy == NoiseMode.Central ? SimulationRandomness.CentralNoise(Options.Seed, round) : null,
            Secure = new SecureRoundSetup(parameters, Registry(members)),
        }, clock);
        var checkpoint = new Checkpoint(Options.Model, version, model);
        double inputOpened = double.NaN, inputClosed = double.NaN;
        int sequence = 0;
        try
        {
            for (int i = 0; i < n; i++)
            {
                vehicles[i] = new VehicleRound(new VehicleRoundSetup
                {
                    Round = round,
                    VehicleId = ids[i],
                    CohortIndex = i,
                    ModelVersion = version,
                    Spec = Options.Model,
                    Deadline = DateTimeOffset.MaxValue,
                    Codec = codec,
                    SecAgg = new SecAggVehicle(parameters, i, DeviceKey(members[i]), vehicleRegistry, clock),
                    Randomness = Randomness(tasks[i], members[i]),
                }, clock);
            }
            static SecAggMessage? Sent(IReadOnlyList<VehicleEffect> effects) => effects.OfType<SendSecAggEffect>().Select(e => e.Message).SingleOrDefault();
            // Phase AdvertiseKeys: every member, one round trip after the group opens (or after it checked in, if later).
            var pending = new List<(double At, int Member, SecAggMessage Message)>();
            for (int i = 0; i < n; i++)
                if (Sent(vehicles[i].Start()) is { } advert) pending.Add((Math.Max(start, joined[i]) + RoundTrip(i, SecAggCodec.EncodedLength(advert)), i, advert));
            var requests = RunPhase(SecAggServerPhase.AdvertiseKeys, pending, start);
            while (coordinator.Phase is CollectingSecure { Phase: var phase })
            {
                pending.Clear();
                if (phase == SecAggServerPhase.MaskedInputCollection && double.IsNaN(inputOpened)) inputOpened = now;
                foreach (var request in requests)
                {
                    int i = request.VehicleId;
                    long down = SecAggCodec.EncodedLength(request);
                    if (phase == SecAggServerPhase.MaskedInputCollection)
                    {
                        double ready = Math.Max(now + RoundTrip(i, down), trainedBy[i]);
                        if (ready >= windowEnd[i]) continue; // it will not send: no need to train it
                        vehicles[i].OnModel(checkpoint);
                        vehicles[i].OnSecAgg(request);
                        var (delta, loss, weight) = TrainLocally(tasks[i], members[i], model);
                        if (Sent(vehicles[i].OnTrained(delta, loss, Partitions[members[i]].Length, weight)) is { } masked)
                        {
                            trained[i] = true;
                            sentAt[i] = ready + Transfer(i, SecAggCodec.EncodedLength(masked));
                            pending.Add((sentAt[i], i, masked));
                        }
                    }
                    else if (Sent(vehicles[i].OnSecAgg(request)) is { } answer)
                        pending.Add((now + RoundTrip(i, down + SecAggCodec.EncodedLength(answer)), i, answer));
                }
                // Members the server asked who will not answer before their window closes are dropped in this phase.
                double leftBy = now;
                foreach (var request in requests.Where(r => !pending.Exists(p => p.Member == r.VehicleId)))
                {
                    Drop(request.VehicleId, phase, Math.Max(now, windowEnd[request.VehicleId]));
                    leftBy = Math.Max(leftBy, leftAt[request.VehicleId]);
                }
                requests = RunPhase(phase, pending, leftBy);
                if (phase == SecAggServerPhase.MaskedInputCollection) inputClosed = now;
            }
        }
        finally
        {
            foreach (var v in vehicles) v?.Dispose();
        }

        void Drop(int i, SecAggServerPhase phase, double hour)
        {
            droppedIn[i] ??= phase;
            leftAt[i] = hour;
        }

        // Runs one phase: answers arrive in time order unless the sender's window closed first (or the phase's deadline passed);
        // returns the server's requests for the next phase. leftBy: when the last member who will not answer left.
        List<SecAggMessage> RunPhase(SecAggServerPhase phase, List<(double At, int Member, SecAggMessage Message)> answers, double leftBy)
        {
            var next = new List<SecAggMessage>();
            double last = Math.Max(now, leftBy);
            var ordered = answers.OrderBy(a => a.At).ThenBy(a => a.Member).ToList();
            bool late = false;
            int k = 0;
            for (; k < ordered.Count; k++)
            {
                var (at, i, message) = ordered[k];
                if (at > windowEnd[i])
                {
                    Drop(i, phase, windowEnd[i]);
                    last = Math.Max(last, windowEnd[i]);
                    continue;
                }
                double deadline = now + (coordinator.NextDeadline - clock.GetUtcNow()).TotalHours;
                if (at >= deadline)
                {
                    MoveTo(deadline);
                    late = true; // this answer and the rest come after the phase's deadline: the server closed it then
                    break;
                }
                MoveTo(at);
                var step = coordinator.Receive(ids[i], MessageId(round, i, ++sequence), new SecureUpdateMessage(message));
                Apply(step);
                next.AddRange(step.Effects.OfType<RouteEffect>().Select(r => r.Message));
                if (coordinator.Phase is not CollectingSecure { Phase: var p } || p != phase) return next;
            }
            for (; k < ordered.Count; k++) Drop(ordered[k].Member, phase, Math.Min(now, windowEnd[ordered[k].Member]));
            // Everyone it waits for has answered or left: the phase closes then, or at its deadline if that comes first (the server's
            // deadline, without the wait). Past the deadline, the clock is at most a tick short of it (hours to ticks).
            if (!late) MoveTo(Math.Min(last, now + (coordinator.NextDeadline - clock.GetUtcNow()).TotalHours));
            var wait = coordinator.NextDeadline - clock.GetUtcNow();
            if (wait > TimeSpan.Zero) clock.Advance(wait);
            var tick = coordinator.Tick();
            Apply(tick);
            next.AddRange(tick.Effects.OfType<RouteEffect>().Select(r => r.Message));
            return next;
        }

        if (coordinator.Phase is not Closed) Apply(coordinator.Abort("the simulation ended the group"));
        var outcome = coordinator.Outcome!;
        stats.Groups++;
        stats.Members += n;
        if (outcome is RoundAborted) stats.Aborted++;
        if (double.IsFinite(inputOpened))
        {
            stats.KeyPhaseHours += inputOpened - start;
            if (double.IsFinite(inputClosed))
            {
                stats.InputPhaseHours += inputClosed - inputOpened;
                stats.UnmaskPhaseHours += now - inputClosed;
            }
        }
        var result = new SecureMember[n];
        for (int i = 0; i < n; i++)
        {
            if (droppedIn[i] is { } d) stats.DroppedIn[d.ToString()] = stats.DroppedIn.GetValueOrDefault(d.ToString()) + 1;
            double left = droppedIn[i] is null ? now : Math.Min(now, leftAt[i]);
            result[i] = new SecureMember(members[i], trained[i], compute[i], trained[i] ? compute[i] : Math.Clamp(left - joined[i], 0, compute[i]), left, droppedIn[i], Math.Min(sentAt[i], left));
        }
        return new SecureGroupResult(outcome, start, inputOpened, inputClosed, now, result);
    }

    /// <summary>A deterministic id for a member's SecAgg message (the coordinator dedupes by id).</summary>
    private Guid MessageId(long round, int member, int sequence)
    {
        var rng = Core.Random.DeterministicRandom.Derive(Options.Seed, 0x5EC6, ((ulong)round << 24) ^ ((ulong)member << 12) ^ (ulong)sequence);
        Span<byte> bytes = stackalloc byte[16];
        BitConverter.TryWriteBytes(bytes, rng.NextUInt64());
        BitConverter.TryWriteBytes(bytes[8..], rng.NextUInt64());
        return new Guid(bytes);
    }

    /// <summary>The device public keys of <paramref name="members"/> by cohort index (whoever holds it disposes it).</summary>
    private FleetSimulator.ArrayRegistry Registry(IReadOnlyList<int> members)
    {
        var registry = new FleetSimulator.ArrayRegistry(members.Count);
        for (int i = 0; i < members.Count; i++) registry.Add(i, DeviceKey(members[i]).ExportSubjectPublicKeyInfo());
        return registry;
    }

    /// <summary>A vehicle's long-term device key (signs its SecAgg messages), made once per run.</summary>
    private ECDsa DeviceKey(int vehicle)
    {
        if (!_deviceKeys.TryGetValue(vehicle, out var key)) _deviceKeys[vehicle] = key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        return key;
    }

    private void DisposeDeviceKeys()
    {
        foreach (var key in _deviceKeys.Values) key.Dispose();
        _deviceKeys.Clear();
    }
}
