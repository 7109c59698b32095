// Long (over 450 lines) because it is the vehicle's whole part of a round as one closed state machine: joining (plan checks,
// ledger, eligibility), training, the SecAgg phases with their replay and the deadline share its private state, and
// splitting them would spread one protocol's invariants over several files.
using System.Security.Cryptography;
using FleetLearn.Core.Compression;
using FleetLearn.Core.Model;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Core.Rounds;

/// <summary>The vehicle's own privacy account as a round sees it (the agent's LiteDB ledger, the simulator's in-memory one).</summary>
public interface IVehicleLedger
{
    /// <summary>Whether <paramref name="charge"/> still fits the vehicle's budget.</summary>
    bool CanParticipate(PrivacyCharge charge);

    /// <summary>Records <paramref name="charge"/> for <paramref name="round"/> durably; false (nothing recorded) when it would exceed the budget.</summary>
    bool TryRecord(long round, PrivacyCharge charge);

    /// <summary>ε spent so far (for messages).</summary>
    double Epsilon { get; }

    /// <summary>Whether a charge for <paramref name="round"/> (a round or a release id) is already recorded.</summary>
    bool HasRecorded(long round);
}

/// <summary>A <see cref="PrivacyLedger"/> account of one vehicle (in memory; the simulator's vehicles). Thread-safe.</summary>
public sealed class PrivacyLedgerAccount(PrivacyLedger ledger, string vehicleId) : IVehicleLedger
{
    /// <inheritdoc/>
    public bool CanParticipate(PrivacyCharge charge)
    {
        lock (ledger) return ledger.CanParticipate(vehicleId, charge);
    }

    /// <inheritdoc/>
    public bool TryRecord(long round, PrivacyCharge charge)
    {
        lock (ledger) return ledger.TryRecord(vehicleId, round, charge, out _);
    }

    /// <inheritdoc/>
    public double Epsilon
    {
        get
        {
            lock (ledger) return ledger.EpsilonOf(vehicleId);
        }
    }

    /// <inheritdoc/>
    public bool HasRecorded(long round)
    {
        lock (ledger) return ledger.Get(vehicleId).Rounds.Contains(round);
    }
}

/// <summary>What one vehicle brings to every round: identity, pinned architecture, device key and its own floors (never from the plan).</summary>
public sealed record VehicleProfile
{
    /// <summary>The vehicle's id (as in cohorts).</summary>
    public required string VehicleId { get; init; }

    /// <summary>The only architecture this vehicle trains.</summary>
    public required ModelSpec Pinned { get; init; }

    /// <summary>The vehicle's long-term device key (signs its SecAgg messages); its public half must be the one the plan lists.</summary>
    public ECDsa? DeviceKey { get; init; }

    /// <summary>The vehicle's privacy floors: σ, minimum cohort, SecAgg threshold, secure aggregation or distributed noise required.</summary>
    public VehiclePrivacyFloors Floors { get; init; } = new();

    /// <summary>Largest local batch the vehicle's trainer takes.</summary>
    public int MaxBatch { get; init; } = int.MaxValue;

    /// <summary>The fleet's device CA as the vehicle holds it: every key in a secure plan must be certified by it; null = the plan's keys are trusted (honest-but-curious aggregator).</summary>
    public DeviceCertificateAuthority? DeviceCa { get; init; }

    /// <summary>The aggregator's public plan key (checks the signed SecAgg downlink in malicious-aggregator mode).</summary>
    public ECDsa? AggregatorKey { get; init; }

    /// <summary>Refuse plans that do not run against a malicious aggregator (secure aggregation with certified keys, consistency round, signed downlink).</summary>
    public bool RequireMaliciousAggregator { get; init; }
}

/// <summary>Per-round randomness of the vehicle: its DP noise share, its stochastic rounding, its update id and the draw of its own SecAgg+ share holders (null: the OS CSPRNG).</summary>
public sealed record VehicleRoundRandomness(INoiseSource Noise, INoiseSource Rounding, Guid UpdateId, INoiseSource? SecAggHolders = null);

/// <summary>Everything a vehicle's round needs, decided when it joined.</summary>
public sealed record VehicleRoundSetup
{
    /// <summary>Round number.</summary>
    public required long Round { get; init; }

    /// <summary>The vehicle.</summary>
    public required string VehicleId { get; init; }

    /// <summary>The vehicle's position in the cohort (its SecAgg id and its plaintext envelope's vehicle field).</summary>
    public required int CohortIndex { get; init; }

    /// <summary>Version of the global model the round trains from.</summary>
    public required long ModelVersion { get; init; }

    /// <summary>The pinned architecture the model must have.</summary>
    public required ModelSpec Spec { get; init; }

    /// <summary>Updates after this instant are useless (the plan's deadline).</summary>
    public required DateTimeOffset Deadline { get; init; }

    /// <summary>The round's encoder (clip, noise share, rotation, quantization).</summary>
    public required UpdatePipelineRound Codec { get; init; }

    /// <summary>The charge a participation costs; null = no DP in this round.</summary>
    public PrivacyCharge? Charge { get; init; }

    /// <summary>The vehicle's own ledger; null = not accounted on the vehicle (a simulation without vehicle ledgers).</summary>
    public IVehicleLedger? Ledger { get; init; }

    /// <summary>The vehicle's SecAgg state machine for the round (owned: disposed with it); null = plaintext.</summary>
    public SecAggVehicle? SecAgg { get; init; }

    /// <summary>What else the round owns and disposes when it ends (the agent's per-round key registry); null = nothing.</summary>
    public IDisposable? Resources { get; init; }

    /// <summary>The vehicle's randomness for this round.</summary>
    public required VehicleRoundRandomness Randomness { get; init; }

    /// <summary>Error-feedback residual of the vehicle (plaintext top-k with feedback); null = none.</summary>
    public float[]? Residual { get; init; }
}

/// <summary>Where a vehicle's round stands. A closed set: each state carries what that step needs, nothing else.</summary>
public abstract record VehicleRoundState
{
    private protected VehicleRoundState()
    {
    }
}

/// <summary>Joined (SecAgg keys advertised when secure); the global model has not arrived yet. Forwarded shares that come first wait here.</summary>
public sealed record AwaitingModel(ForwardedSharesMessage? EarlyShares = null) : VehicleRoundState;

/// <summary>The model arrived and verified; the runner trains. Forwarded shares that come meanwhile wait here.</summary>
public sealed record TrainingLocally(Checkpoint Model, ForwardedSharesMessage? EarlyShares) : VehicleRoundState;

/// <summary>Secure: the input is encoded (held at m bits a value, or as is when a value does not fit); the forwarded shares have not come yet.</summary>
public sealed record AwaitingShares(PackedInput? Packed, uint[]? Unpacked) : VehicleRoundState
{
    /// <summary>The encoded input x_u, as <c>EncodeSecure</c> returned it.</summary>
    public uint[] Input() => Unpacked ?? Packed!.Unpack();
}

/// <summary>Secure: the masked input left; the unmask request has not come yet.</summary>
public sealed record AwaitingUnmask : VehicleRoundState;

/// <summary>The vehicle's part is done: a plaintext update left, or the unmask request was answered.</summary>
public sealed record VehicleDone : VehicleRoundState;

/// <summary>The vehicle left the round (training stopped, budget, protocol failure, deadline). Final.</summary>
public sealed record Abandoned(string Reason) : VehicleRoundState;

/// <summary>What the runner must do after a step of <see cref="VehicleRound"/>.</summary>
public abstract record VehicleEffect;

/// <summary>Train from <paramref name="Model"/> on the vehicle's data, then call <see cref="VehicleRound.OnTrained"/> (or <see cref="VehicleRound.OnTrainingStopped"/>).</summary>
public sealed record TrainEffect(Checkpoint Model) : VehicleEffect;

/// <summary>Send the plaintext update body (an <see cref="UpdateEnvelope"/>) through the durable outbox; it expires at the deadline.</summary>
public sealed record SendUpdateEffect(long Round, Guid UpdateId, byte[] Body, double TrainLoss, int Samples, DateTimeOffset Expires) : VehicleEffect;

/// <summary>Send a SecAgg message through the durable outbox; it expires at the deadline.</summary>
public sealed record SendSecAggEffect(long Round, SecAggMessage Message, DateTimeOffset Expires) : VehicleEffect;

/// <summary>The round reached a final state (<see cref="VehicleDone"/> or <see cref="Abandoned"/>).</summary>
public sealed record FinishedEffect(VehicleRoundState Final) : VehicleEffect;

/// <summary>How a vehicle answers a round plan.</summary>
public abstract record PlanDecision
{
    private protected PlanDecision()
    {
    }
}

/// <summary>The vehicle is not in the cohort.</summary>
public sealed record NotSelected : PlanDecision;

/// <summary>The vehicle joined or declined this round (or a later one) before: round keys are never reused.</summary>
public sealed record AlreadyDecided : PlanDecision;

/// <summary>The plan breaks the vehicle's own policy; the round is recorded as decided and not joined.</summary>
public sealed record Declined(string Reason) : PlanDecision;

/// <summary>Joined: record the round as decided durably, then run <paramref name="Effects"/>.</summary>
public sealed record Joined(VehicleRound Round, IReadOnlyList<VehicleEffect> Effects) : PlanDecision;

/// <summary>
/// The vehicle's part of one round, as a pure state machine (no I/O; time from an injected <see cref="TimeProvider"/>):
/// <c>Join</c> checks a verified plan against the vehicle's own policy and joins it (advertising SecAgg keys at once — they
/// do not depend on the model); <see cref="OnModel"/> takes the verified global model and asks for training;
/// <see cref="OnTrained"/> charges the vehicle's own ledger before anything data-dependent leaves, encodes and sends (plaintext)
/// or holds the input for the forwarded shares (secure); <see cref="OnSecAgg"/> answers the aggregator's SecAgg messages.
/// Every step returns effects the runner executes: the agent over MQTT and its outbox, the simulator over an in-memory link.
/// "What happens when a vehicle drops mid-round" on the vehicle's side is <see cref="Abandon"/>.
/// </summary>
public sealed class VehicleRound : IDisposable
{
    private readonly VehicleRoundSetup _setup;
    private readonly TimeProvider _time;
    private readonly SecAggVehicle? _secAgg;
    private readonly long _joinedAt;
    private readonly TimeSpan _timeLeftAtJoin;

    /// <summary>Starts a joined round (use <see cref="Join"/> for a plan received over the wire).</summary>
    public VehicleRound(VehicleRoundSetup setup, TimeProvider time)
    {
        _setup = setup;
        _time = time;
        _secAgg = setup.SecAgg;
        _joinedAt = time.GetTimestamp(); // from here on the deadline is a duration on the monotonic clock: a wall clock set mid-round moves nothing
        _timeLeftAtJoin = setup.Deadline - time.GetUtcNow();
    }

    /// <summary>Time left before the round's deadline, on the vehicle's monotonic clock (negative: passed).</summary>
    public TimeSpan TimeLeft => _timeLeftAtJoin - Elapsed;

    /// <summary>Time since the vehicle joined, on its monotonic clock.</summary>
    public TimeSpan Elapsed => _time.GetElapsedTime(_joinedAt);

    /// <summary>Round number.</summary>
    public long Round => _setup.Round;

    /// <summary>Version of the model the round trains from.</summary>
    public long ModelVersion => _setup.ModelVersion;

    /// <summary>Whether the round runs secure aggregation.</summary>
    public bool IsSecure => _secAgg is not null;

    /// <summary>The round's deadline on the vehicle's wall clock now (for outbox expiry): now + <see cref="TimeLeft"/>.</summary>
    public DateTimeOffset Deadline => _time.GetUtcNow() + TimeLeft;

    /// <summary>Where the round stands.</summary>
    public VehicleRoundState State { get; private set; } = new AwaitingModel();

    /// <summary>Whether the round reached a final state.</summary>
    public bool IsFinished => State is VehicleDone or Abandoned;

    /// <summary>Whether the vehicle waits for the aggregator's next SecAgg message; hearing nothing, the runner resends its last one (downlink replay, docs/reliability.md).</summary>
    public bool AwaitsServer => _secAgg is { } s && !IsFinished && s.Phase switch
    {
        SecAggVehiclePhase.AwaitingKeyDirectory or SecAggVehiclePhase.AwaitingConsistencyCheck or SecAggVehiclePhase.AwaitingUnmaskRequest => true,
        SecAggVehiclePhase.AwaitingShares => State is not (AwaitingModel { EarlyShares: not null } or TrainingLocally { EarlyShares: not null }),
        _ => false,
    };

    /// <summary>Bytes of the plaintext update or masked input this vehicle sent (0 before).</summary>
    public long UpdateBytes { get; private set; }

    /// <summary>Coordinates the codec clamped while encoding (quantization range).</summary>
    public int Clamped { get; private set; }

    /// <summary>
    /// A verified <paramref name="plan"/> (signature, fleet and pinned model checked by the caller) against this vehicle:
    /// not selected, decided before (<paramref name="lastDecidedRound"/>), declined by its own policy (floors, batch, ε budget,
    /// device key), or joined. A joined secure round advertises its keys at once; its signatures bind <paramref name="signedPlan"/>,
    /// the plan exactly as received (<see cref="SecureVehicleSetup"/>).
    /// </summary>
    /// <remarks><paramref name="remaining"/>: time left at the plan's arrival (<see cref="PlanTiming.Remaining"/>), measured on the vehicle's monotonic
    /// clock; null: the plan's absolute deadline on <paramref name="time"/> (runners sharing the aggregator's clock).</remarks>
    public static PlanDecision Join(RoundPlan plan, ReadOnlyMemory<byte> signedPlan, VehicleProfile profile, long lastDecidedRound, IVehicleLedger? ledger,
        Func<long, VehicleRoundRandomness> randomness, TimeProvider time, TimeSpan? remaining = null)
    {
        ArgumentNullException.ThrowIfNull(plan);
        ArgumentNullException.ThrowIfNull(profile);
        if (plan.Round <= lastDecidedRound) return new AlreadyDecided();
        int index = IndexOf(plan.Cohort, profile.VehicleId);
        if (index < 0) return new NotSelected();
        var protection = plan.Protection ?? new RoundProtection();
        var pipeline = protection.CreatePipeline(profile.Pinned.ParameterCount, plan.Cohort.Count);
        var charge = protection.Charge(pipeline, plan.Round); // the σ equivalent of the noise actually added
        if (Refusal(plan, protection, index, profile, ledger, charge) is { } why) return new Declined(why);
        // Certified keys, consistency round and signed downlink as the plan and the vehicle's own settings ask (SecureVehicleSetup).
        var random = randomness(plan.Round);
        var secure = pipeline.IsSecure
            ? SecureVehicleSetup.Create(plan, signedPlan.Span, profile.VehicleId, profile.DeviceKey!, profile.DeviceCa, profile.AggregatorKey ?? profile.DeviceKey!,
                profile.RequireMaliciousAggregator, time, pipeline, random.SecAggHolders)
            : null;
        var round = new VehicleRound(new VehicleRoundSetup
        {
            Round = plan.Round,
            VehicleId = profile.VehicleId,
            CohortIndex = index,
            ModelVersion = plan.ModelVersion,
            Spec = profile.Pinned,
            Deadline = remaining is { } left ? time.GetUtcNow() + left : DateTimeOffset.FromUnixTimeMilliseconds(plan.DeadlineUnixMs),
            Codec = protection.ForRound(pipeline, plan.Round),
            Charge = charge,
            Ledger = ledger,
            SecAgg = secure?.Vehicle,
            Resources = secure,
            Randomness = random,
        }, time);
        return new Joined(round, round.Start());
    }

    /// <summary>The first effects of a joined round: a secure round advertises its keys.</summary>
    public IReadOnlyList<VehicleEffect> Start() => _secAgg is null ? [] : [Send(_secAgg.Start())];

    /// <summary>
    /// The global model arrived (already verified against the plan's hash by <see cref="VerifyModel(RoundPlan, ReadOnlySpan{byte})"/> or trusted in memory):
    /// train, unless the deadline has passed.
    /// </summary>
    public IReadOnlyList<VehicleEffect> OnModel(Checkpoint model)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (State is not AwaitingModel awaiting) return [];
        if (model.Spec.ToString() != _setup.Spec.ToString() || model.Version != _setup.ModelVersion)
            throw new WireFormatException($"Model {model.Version} ({model.Spec}) is not the pinned {_setup.Spec} at version {_setup.ModelVersion}.");
        if (TimeLeft <= TimeSpan.Zero) return Abandon("the deadline passed before the model arrived");
        State = new TrainingLocally(model, awaiting.EarlyShares);
        return [new TrainEffect(model)];
    }

    /// <summary>
    /// Training finished with <paramref name="delta"/> (w_local − w_global) and the last epoch's mean <paramref name="loss"/> on
    /// <paramref name="samples"/> samples, to be weighted <paramref name="weight"/>. Plaintext: charge, encode, send. Secure:
    /// encode; the masked input leaves when the forwarded shares are here (charged then).
    /// </summary>
    public IReadOnlyList<VehicleEffect> OnTrained(Span<float> delta, double loss, int samples, double weight)
    {
        if (State is not TrainingLocally training) return [];
        var random = _setup.Randomness;
        if (_secAgg is null)
        {
            if (!Charge()) return Abandon(OverBudget());
            var body = _setup.Codec.EncodePlain(delta, weight, (ulong)_setup.CohortIndex, random.UpdateId, random.Noise, random.Rounding, _setup.Residual, out var info);
            Clamped = info.Clamped;
            UpdateBytes = body.Length;
            State = new VehicleDone();
            return [new SendUpdateEffect(Round, random.UpdateId, body, loss, samples, Deadline), new FinishedEffect(State)];
        }
        var input = _setup.Codec.EncodeSecure(delta, weight, random.Noise, random.Rounding, out var secureInfo);
        Clamped = secureInfo.Clamped;
        if (training.EarlyShares is { } shares) return SendMaskedInput(shares, input);
        State = PackedInput.TryPack(input, _secAgg.BitWidth) is { } packed ? new AwaitingShares(packed, null) : new AwaitingShares(null, input);
        return [];
    }

    /// <summary>Training stopped (the vehicle became ineligible, or training failed): the round is abandoned.</summary>
    public IReadOnlyList<VehicleEffect> OnTrainingStopped(string reason) => State is TrainingLocally ? Abandon(reason) : [];

    /// <summary>A SecAgg message from the aggregator for this round. A protocol failure abandons the round (a dropout).</summary>
    public IReadOnlyList<VehicleEffect> OnSecAgg(SecAggMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        if (_secAgg is null || IsFinished) return [];
        try
        {
            switch (message)
            {
                case KeyDirectoryMessage directory:
                    return _secAgg.Phase == SecAggVehiclePhase.AwaitingKeyDirectory ? [Send(_secAgg.HandleKeyDirectory(directory))] : []; // a copy (redelivery, replay): answered
                case ForwardedSharesMessage shares:
                    switch (State)
                    {
                        case AwaitingModel awaiting:
                            State = awaiting with { EarlyShares = shares };
                            return [];
                        case TrainingLocally training:
                            State = training with { EarlyShares = shares };
                            return [];
                        case AwaitingShares awaiting:
                            return SendMaskedInput(shares, awaiting.Input());
                        default:
                            return []; // a redelivered copy: already answered
                    }
                case ConsistencyCheckRequestMessage check:
                    // Only a vehicle whose input left signs the survivors, and only once (a copy is ignored).
                    return State is AwaitingUnmask && _secAgg.Phase == SecAggVehiclePhase.AwaitingConsistencyCheck ? [Send(_secAgg.HandleConsistencyCheck(check))] : [];
                case UnmaskRequestMessage request:
                    if (State is not AwaitingUnmask) return []; // nothing masked left this vehicle: nothing to unmask
                    var response = _secAgg.HandleUnmaskRequest(request);
                    State = new VehicleDone();
                    return [Send(response), new FinishedEffect(State)];
                default:
                    throw new WireFormatException($"{message.Type} is not a message the aggregator sends.");
            }
        }
        catch (SecAggProtocolException e)
        {
            return Abandon($"secure aggregation failed: {e.Message}");
        }
    }

    /// <summary>Leaves the round: the one place where a vehicle's dropout mid-round is decided. Idempotent.</summary>
    public IReadOnlyList<VehicleEffect> Abandon(string reason)
    {
        if (IsFinished) return [];
        State = new Abandoned(reason);
        return [new FinishedEffect(State)];
    }

    /// <summary>Checks checkpoint bytes against the plan's length and SHA-256 and parses them; throws <see cref="WireFormatException"/>.</summary>
    public static Checkpoint VerifyModel(RoundPlan plan, ReadOnlySpan<byte> bytes)
    {
        CheckModel(plan, bytes);
        return ParseModel(plan, bytes.ToArray(), null);
    }

    /// <summary>
    /// Like the overload on a span; once the bytes match the plan, <paramref name="share"/> (SHA-256, decode) may hand back a
    /// checkpoint already decoded from the same bytes (the agents of one process share it: docs/scale.md).
    /// </summary>
    public static Checkpoint VerifyModel(RoundPlan plan, byte[] bytes, Func<string, Func<Checkpoint>, Checkpoint> share)
    {
        ArgumentNullException.ThrowIfNull(share);
        CheckModel(plan, bytes);
        return ParseModel(plan, bytes, share);
    }

    private static void CheckModel(RoundPlan plan, ReadOnlySpan<byte> bytes)
    {
        ArgumentNullException.ThrowIfNull(plan);
        if (bytes.Length != plan.ModelBytes || Convert.ToHexStringLower(SHA256.HashData(bytes)) != plan.ModelSha256)
            throw new WireFormatException($"Model {plan.ModelVersion} does not match the SHA-256 in the signed plan of round {plan.Round}.", RejectReasons.Signature);
    }

    private static Checkpoint ParseModel(RoundPlan plan, byte[] bytes, Func<string, Func<Checkpoint>, Checkpoint>? share)
    {
        try
        {
            return share is null ? Checkpoint.FromBytes(bytes) : share(plan.ModelSha256, () => Checkpoint.FromBytes(bytes));
        }
        catch (CheckpointFormatException e)
        {
            throw new WireFormatException($"Model {plan.ModelVersion}: {e.Message}", e);
        }
    }

    /// <summary>Why the vehicle refuses the plan under its own policy, or null.</summary>
    private static string? Refusal(RoundPlan plan, RoundProtection protection, int index, VehicleProfile profile, IVehicleLedger? ledger, PrivacyCharge? charge)
    {
        // In a sharded round the vehicle's update is hidden among its part only: its shard unmasks the part's sum.
        var shard = PlanShards.Of(plan, profile.VehicleId);
        int hiddenAmong = shard?.Cohort.Count ?? plan.Cohort.Count;
        if (protection.PrivacyRefusal(profile.Floors, hiddenAmong, shard is null ? null : shard.Shard.Neighbors ?? hiddenAmong - 1) is { } floor) return floor;
        if (plan.Batch > profile.MaxBatch) return $"batch {plan.Batch} exceeds {profile.MaxBatch}";
        if (charge is { } c && ledger is not null && !ledger.CanParticipate(c))
            return $"the round would exceed this vehicle's ε budget (spent {ledger.Epsilon:F3})";
        if (profile.RequireMaliciousAggregator && protection.SecureMode == SecureAggregationMode.Off)
            return "the plan has no secure aggregation, and this vehicle requires it against a malicious aggregator";
        if (protection.SecureMode != SecureAggregationMode.Off)
        {
            if (profile.DeviceKey is null) return "the round needs secure aggregation and this vehicle has no device key";
            if (!Convert.FromBase64String(protection.DeviceKeys![index]).AsSpan().SequenceEqual(profile.DeviceKey.ExportSubjectPublicKeyInfo()))
                return "the plan lists another device key for this vehicle";
            if (profile.RequireMaliciousAggregator && !protection.MaliciousAggregator)
                return "the plan does not run against a malicious aggregator (certified keys, consistency round, signed downlink) and this vehicle requires it";
        }
        return null;
    }

    private static int IndexOf(IReadOnlyList<string> cohort, string vehicle)
    {
        for (int i = 0; i < cohort.Count; i++)
            if (string.Equals(cohort[i], vehicle, StringComparison.Ordinal)) return i;
        return -1;
    }

    private IReadOnlyList<VehicleEffect> SendMaskedInput(ForwardedSharesMessage shares, uint[] input)
    {
        if (!Charge()) return Abandon(OverBudget());
        var masked = _secAgg!.HandleForwardedShares(shares, input);
        State = new AwaitingUnmask();
        UpdateBytes = SecAggCodec.EncodedLength(masked);
        return [Send(masked)];
    }

    /// <summary>Records the round's charge in the vehicle's own ledger before its data-dependent message leaves.</summary>
    private bool Charge() => _setup.Charge is not { } charge || _setup.Ledger is null || _setup.Ledger.TryRecord(Round, charge);

    private string OverBudget() => $"over the ε budget (spent {_setup.Ledger?.Epsilon ?? 0:F3})";

    private SendSecAggEffect Send(SecAggMessage message) => new(Round, message, Deadline);

    /// <summary>Disposes the SecAgg state (round secrets) and, when owned, the cohort's key registry.</summary>
    public void Dispose()
    {
        if (_setup.Resources is { } resources) resources.Dispose(); // the agent's SecureVehicleRound: state machine and registry
        else _secAgg?.Dispose();
    }
}
