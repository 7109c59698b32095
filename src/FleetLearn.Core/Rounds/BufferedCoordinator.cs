using System.Globalization;
using FleetLearn.Core.Compression;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Privacy;

namespace FleetLearn.Core.Rounds;

/// <summary>
/// Buffered asynchronous aggregation (FedBuff, Nguyen et al. 2022) as a pure state machine next to
/// <see cref="RoundCoordinator"/>: vehicles check in whenever they are eligible and train on the version they are handed; each
/// update is folded as it arrives, weighted by s(τ) = 1/√(1+τ) of its staleness τ; every K-th update releases a step through
/// the same admission and release policy as a synchronous round (<see cref="RoundPolicy"/>). No I/O, time injected.
/// </summary>
public sealed class BufferedCoordinator
{
    private readonly BufferedSetup _setup;
    private readonly TimeProvider _time;
    private readonly float[] _global;
    private readonly Dictionary<string, Lease> _leases = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _participations = new(StringComparer.Ordinal);
    private readonly Dictionary<long, UpdatePipelineRound> _codecs = [];
    private readonly Dictionary<long, ulong> _slots = [];
    private readonly Dictionary<Guid, long> _seen = [];
    private readonly List<(string Vehicle, long Staleness)> _buffer = [];
    private readonly Dictionary<long, long> _stalenessCounts = [];
    private IUpdateAggregator _aggregator;
    private double _weightSum, _scaledWeightSum, _lossSum;
    private int _lossCount;
    private long _stale, _expired, _withdrawn, _applied;

    /// <summary>Starts at <see cref="BufferedSetup.FirstVersion"/> with an empty buffer.</summary>
    public BufferedCoordinator(BufferedSetup setup, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(setup);
        ArgumentNullException.ThrowIfNull(time);
        if (setup.Rules.CohortSize < 1) throw new ArgumentException("The buffer size K must be at least 1.", nameof(setup));
        if (setup.Concurrency < 1) throw new ArgumentException("The concurrency must be at least 1.", nameof(setup));
        if (setup.MaxStaleness < 0) throw new ArgumentException("The maximum staleness must be ≥ 0.", nameof(setup));
        if (setup.MaxParticipations is < 1) throw new ArgumentException("The participation cap must be at least 1.", nameof(setup));
        if (setup.Rules.Privacy is NoiseMode.Distributed)
            throw new ArgumentException("Distributed DP sizes each vehicle's noise share for a fixed cohort; a buffer's members are not known when they add it: use central DP.", nameof(setup));
        if (setup.Rules.Privacy == NoiseMode.Central && setup.CentralNoiseFor is null)
            throw new ArgumentException("Central DP needs a noise source for each step.", nameof(setup));
        _setup = setup;
        _time = time;
        _global = setup.Global.ToArray();
        Version = setup.FirstVersion;
        _aggregator = NewAggregator();
    }

    /// <summary>
    /// A coordinator restarted at <see cref="BufferedSetup.FirstVersion"/> with the updates its unreleased buffer had
    /// acknowledged (<see cref="JournalEffect"/>s of step FirstVersion + 1, in order) folded again, each under the lease it was
    /// trained on. <paramref name="effects"/> are what the replay produced besides the journal — a release when the crash came
    /// after the K-th update was journaled but before its model was stored (its charges are re-recorded: one per key).
    /// Throws <see cref="InvalidDataException"/> for an entry this step refuses (it belongs to another run or mode).
    /// </summary>
    public static BufferedCoordinator Resume(BufferedSetup setup, TimeProvider time, IEnumerable<JournaledUpdate> journal, out IReadOnlyList<RoundEffect> effects)
    {
        ArgumentNullException.ThrowIfNull(journal);
        var coordinator = new BufferedCoordinator(setup, time);
        var replayed = new List<RoundEffect>();
        foreach (var update in journal)
        {
            if (coordinator.Version != setup.FirstVersion) break; // released: the rest belonged to the next step
            if (update.LeaseVersion is not { } version)
                throw new InvalidDataException($"The journal of step {setup.FirstVersion + 1} holds {update.Vehicle}'s update {update.UpdateId} without a FedBuff lease: it was written by a synchronous round.");
            coordinator._leases[update.Vehicle] = new Lease(version, update.Slot, DateTimeOffset.MaxValue);
            coordinator._slots[version] = Math.Max(coordinator._slots.GetValueOrDefault(version), update.Slot + 1);
            var step = coordinator.Receive(update.Vehicle, update.UpdateId, new PlainUpdateMessage(update.Envelope, update.TrainLoss));
            if (step.Admission.Status != AckStatus.Accepted)
                throw new InvalidDataException($"The journal of step {setup.FirstVersion + 1} holds {update.Vehicle}'s update {update.UpdateId}, which this step refuses ({step.Admission.Why}).");
            replayed.AddRange(step.Effects.Where(e => e is not JournalEffect));
        }
        effects = replayed;
        return coordinator;
    }

    /// <summary>The current model version (the number of steps applied since version 0).</summary>
    public long Version { get; private set; }

    /// <summary>The current global model.</summary>
    public ReadOnlySpan<float> Global => _global;

    /// <summary>Accepted updates by staleness τ (the staleness histogram).</summary>
    public IReadOnlyDictionary<long, long> StalenessCounts => _stalenessCounts;

    /// <summary>Contributions each vehicle has made to applied steps.</summary>
    public IReadOnlyDictionary<string, int> Participations => _participations;

    /// <summary>Vehicles holding a check-in now.</summary>
    public int Training => _leases.Count;

    /// <summary>A snapshot of the coordinator's counters.</summary>
    public BufferedProgress Progress => new(Version, _buffer.Count, _setup.Rules.CohortSize, _leases.Count, _applied, _stale, _expired, _withdrawn);

    /// <summary>When <see cref="Tick"/> must next be called: the earliest lease end (MaxValue when nobody is training).</summary>
    public DateTimeOffset NextDeadline => _leases.Count == 0 ? DateTimeOffset.MaxValue : _leases.Values.Min(l => l.Until);

    /// <summary>
    /// An eligible vehicle asks for work. Refused while all <see cref="BufferedSetup.Concurrency"/> slots are taken, while it
    /// holds a check-in or has an update in the buffer not yet released (one update per vehicle per step: the ledger records
    /// one charge per vehicle per step), or once it reached its participation cap or privacy budget.
    /// </summary>
    public BufferedCheckIn CheckIn(string vehicle)
    {
        ArgumentException.ThrowIfNullOrEmpty(vehicle);
        var now = _time.GetUtcNow();
        BufferedCheckIn Refuse(string reason, string why) => new(Admission.Rejected(reason, why), Version, 0, now);
        if (_leases.ContainsKey(vehicle)) return Refuse(RejectReasons.Busy, "already training on a check-in");
        if (_buffer.Exists(b => b.Vehicle == vehicle))
            return Refuse(RejectReasons.Busy, string.Create(CultureInfo.InvariantCulture, $"its update waits in the buffer of version {Version + 1}; check in after it is released"));
        int used = _participations.GetValueOrDefault(vehicle);
        if (_setup.Ledger is { } ledger) used = Math.Max(used, ledger.Get(vehicle).Participations);
        if (_setup.MaxParticipations is { } cap && used >= cap)
            return Refuse(RejectReasons.ParticipationCap, string.Create(CultureInfo.InvariantCulture, $"{used} participations: the cap is {cap}"));
        // Fresh contributions cost the most (τ = 0): a vehicle that could not afford one is not handed work.
        if (_setup.Ledger is { } l && _setup.Rules.Privacy is not null && !l.CanParticipate(vehicle, Staleness.Charge(_setup.Rules.NoiseMultiplier, 0)))
            return Refuse(RejectReasons.ParticipationCap, "one more participation would exceed its privacy budget");
        if (_leases.Count >= _setup.Concurrency)
            return Refuse(RejectReasons.Busy, string.Create(CultureInfo.InvariantCulture, $"all {_setup.Concurrency} training slots are taken; check in later"));
        ulong slot = _slots.GetValueOrDefault(Version);
        _slots[Version] = slot + 1;
        var lease = new Lease(Version, slot, now + _setup.Lease);
        _leases[vehicle] = lease;
        return new BufferedCheckIn(Admission.Accepted, lease.Version, slot, lease.Until);
    }

    /// <summary>The codec of version <paramref name="version"/> (what a vehicle handed that version encodes with).</summary>
    public UpdatePipelineRound CodecFor(long version)
    {
        if (!_codecs.TryGetValue(version, out var codec)) _codecs[version] = codec = _setup.CodecFor(version);
        return codec;
    }

    /// <summary>
    /// Admits the update of a checked-in vehicle: refused when it trained on a model more than the maximum staleness behind,
    /// else decoded with its version's codec, checked like a synchronous round's update, and folded with weight w·s(τ). The
    /// K-th update releases the step: the returned effects are its charges (one per staleness, before the model is used) and
    /// its close (the outcome's <see cref="RoundOutcome.Round"/> is the new version).
    /// </summary>
    public RoundStep Receive(string vehicle, Guid updateId, PlainUpdateMessage message)
    {
        ArgumentNullException.ThrowIfNull(vehicle);
        ArgumentNullException.ThrowIfNull(message);
        if (_seen.ContainsKey(updateId)) return Verdict(Admission.Duplicate());
        if (!_leases.Remove(vehicle, out var lease))
            return Verdict(Admission.Rejected(RejectReasons.NotInCohort, "no check-in outstanding (never checked in, or its lease expired)"));
        _seen[updateId] = Version;
        long staleness = Version - lease.Version;
        if (staleness > _setup.MaxStaleness)
        {
            _stale++;
            return Verdict(Admission.Rejected(RejectReasons.Stale, string.Create(CultureInfo.InvariantCulture,
                $"trained on version {lease.Version}, {staleness} behind version {Version}: the maximum staleness is {_setup.MaxStaleness}")));
        }
        if (RoundPolicy.AdmitPlain(CodecFor(lease.Version), _setup.Rules, message.Body, lease.Slot, out var decoded) is { } refused)
            return Verdict(refused);
        double weight = decoded.Header.Weight, s = Staleness.Weight(staleness);
        RoundPolicy.Fold(_aggregator, decoded, weight * s);
        _weightSum += weight;
        _scaledWeightSum += weight * s;
        _buffer.Add((vehicle, staleness));
        _stalenessCounts[staleness] = _stalenessCounts.GetValueOrDefault(staleness) + 1;
        if (double.IsFinite(message.TrainLoss))
        {
            _lossSum += message.TrainLoss;
            _lossCount++;
        }
        // Durable before the ack and before a release it completes: a restart replays it (Resume).
        var effects = new List<RoundEffect> { new JournalEffect(Version + 1, new JournaledUpdate(vehicle, updateId, message.Body, message.TrainLoss, lease.Version, lease.Slot)) };
        if (_buffer.Count >= _setup.Rules.CohortSize) Release(effects);
        return new RoundStep(Admission.Accepted, effects);
    }

    /// <summary>
    /// The vehicle gave up its check-in (it stopped being eligible — unplugged, drove off — before its update was sent): its
    /// slot is free at once. False when it held none.
    /// </summary>
    public bool Withdraw(string vehicle)
    {
        if (!_leases.Remove(vehicle)) return false;
        _withdrawn++;
        return true;
    }

    /// <summary>Frees the slots of check-ins whose lease has ended (those vehicles dropped out); returns them.</summary>
    public IReadOnlyList<string> Tick()
    {
        var now = _time.GetUtcNow();
        var expired = _leases.Where(p => p.Value.Until <= now).Select(p => p.Key).ToList();
        foreach (var v in expired) _leases.Remove(v);
        _expired += expired.Count;
        return expired;
    }

    /// <summary>
    /// The step: Σ wᵢs(τᵢ)Δᵢ / Σ wᵢ — the denominator leaves staleness out, so that stale updates shrink the step as in
    /// FedBuff's Algorithm 1 (which divides by K; the same under DP, where every wᵢ = 1) — then <see cref="RoundPolicy.Release"/>.
    /// </summary>
    private void Release(List<RoundEffect> effects)
    {
        var rules = _setup.Rules;
        long next = Version + 1;
        var mean = new float[_global.Length];
        _aggregator.Complete(mean);
        Numerics.VectorMath.Scale(mean, (float)(_scaledWeightSum / _weightSum));
        var contributors = _buffer.Select(b => b.Vehicle).ToArray();
        int n = contributors.Length;
        var charges = _buffer.GroupBy(b => b.Staleness).OrderBy(g => g.Key)
            .Select(g => new ChargeEffect(next, [.. g.Select(b => b.Vehicle)], Staleness.Charge(rules.NoiseMultiplier, g.Key)));
        double? centralStd = rules.Privacy == NoiseMode.Central ? rules.NoiseMultiplier * CodecFor(Version).ClipNorm!.Value / n : null;
        string? failure = null;
        var parameters = RoundPolicy.Release(rules, _setup.Strategy, _global, mean, n, centralStd, centralStd is null ? null : _setup.CentralNoiseFor!(next), charges, effects, ref failure);
        double loss = _lossCount == 0 ? double.NaN : _lossSum / _lossCount;
        var now = _time.GetUtcNow();
        RoundOutcome outcome;
        if (parameters is not null)
        {
            parameters.CopyTo(_global, 0);
            Version = next;
            _applied++;
            foreach (var v in contributors) _participations[v] = _participations.GetValueOrDefault(v) + 1;
            outcome = new RoundApplied { Round = next, Contributors = contributors, Silent = [], TrainLoss = loss, ClosedAt = now, Parameters = parameters };
            foreach (var old in _codecs.Keys.Where(v => v < Version - _setup.MaxStaleness).ToList()) _codecs.Remove(old);
            foreach (var old in _slots.Keys.Where(v => v < Version - _setup.MaxStaleness).ToList()) _slots.Remove(old);
            // A resend is recognised as a duplicate for as long as an update could still be admitted: the ids of bounded memory.
            foreach (var old in _seen.Where(p => p.Value < Version - _setup.MaxStaleness - 1).Select(p => p.Key).ToList()) _seen.Remove(old);
        }
        else outcome = new RoundAborted { Round = next, Contributors = contributors, Silent = [], TrainLoss = loss, ClosedAt = now, Reason = failure! };
        effects.Add(new CloseEffect(outcome));
        _buffer.Clear();
        _aggregator = NewAggregator();
        _weightSum = _scaledWeightSum = _lossSum = 0;
        _lossCount = 0;
    }

    private IUpdateAggregator NewAggregator()
    {
        var aggregator = _setup.Strategy.CreateAggregator(_global.Length);
        if (aggregator is not WeightedMeanAggregator)
            throw new ArgumentException($"Strategy '{_setup.Strategy.Name}' ignores weights; FedBuff scales each update by its staleness weight: use fedavg, fedavgm, fedprox or an adaptive server optimizer.");
        return aggregator;
    }

    private static RoundStep Verdict(Admission admission) => new(admission, []);

    private readonly record struct Lease(long Version, ulong Slot, DateTimeOffset Until);
}
