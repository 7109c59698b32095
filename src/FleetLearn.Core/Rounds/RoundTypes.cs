using System.Buffers;
using FleetLearn.Core.Compression;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Core.Rounds;

/// <summary>The fleet-wide rules every round follows: what the close policy of <see cref="RoundCoordinator"/> reads.</summary>
public sealed record RoundRules
{
    /// <summary>K: updates a round wants (plaintext rounds close once they have K).</summary>
    public required int CohortSize { get; init; }

    /// <summary>Fewer contributors than this and the round is aborted: the model stays as it was.</summary>
    public int MinParticipants { get; init; } = 1;

    /// <summary>Where DP noise is added (null: no DP).</summary>
    public NoiseMode? Privacy { get; init; }

    /// <summary>σ: the noise multiplier each contributor is charged for.</summary>
    public double NoiseMultiplier { get; init; }

    /// <summary>Distributed DP: the fewest noise shares whose sum still has variance σ²C²; fewer survivors and the sum is not released.</summary>
    public int MinNoiseShares { get; init; } = 1;

    /// <summary>Every update weighs 1 (DP: the sum's sensitivity is then C).</summary>
    public bool UniformWeights { get; init; }

    /// <summary>W: the largest weight a plaintext update may claim.</summary>
    public double MaxWeight { get; init; } = double.MaxValue;

    /// <summary>
    /// Bound on a decoded plaintext update's L2 norm, checked (in double, finite values only) before it is folded, so that a
    /// hostile update is a rejected message and never an overflowed sum (null: no check).
    /// </summary>
    public double? MaxUpdateNorm { get; init; } = DefaultMaxUpdateNorm;

    /// <summary>The default plaintext norm bound (honest 2NN updates measure ~0.1–10).</summary>
    public const double DefaultMaxUpdateNorm = 1000;

    /// <summary>
    /// The Gaussian noise multiplier a participation is charged at when it differs from <see cref="NoiseMultiplier"/>: under the
    /// distributed discrete Gaussian, the σ equivalent of the noise actually added (<see cref="ChargeFor"/>); null = σ.
    /// </summary>
    public double? ChargedNoiseMultiplier { get; init; }

    /// <summary>What one participation costs a contributor's privacy budget (the full Gaussian mechanism, q = 1).</summary>
    public PrivacyCharge Charge => PrivacyCharge.Participation(ChargedNoiseMultiplier ?? NoiseMultiplier);

    /// <summary>
    /// The noise multiplier to charge for <paramref name="codec"/>'s round, or null when it is <paramref name="noiseMultiplier"/>
    /// itself. Under the distributed discrete Gaussian the released integers carry sensitivity Δ₂ &gt; C and the τ term of
    /// KLS 2021 (Eq. 17), so the Gaussian z whose RDP bounds the mechanism is below σ (<see cref="DiscreteGaussianAccounting.EquivalentNoiseMultiplier"/>
    /// at <paramref name="minNoiseShares"/>, the fewest shares any released sum carries). When the update's noise multiplier
    /// <paramref name="updateNoiseMultiplier"/> is above σ (adaptive clipping spends the rest on the unclipped count, Andrew et
    /// al. 2021), the count's part 1/σ² − 1/σ_u² is added back: 1/z² = 1/z_u² + 1/σ² − 1/σ_u².
    /// </summary>
    public static double? ChargeFor(UpdatePipelineRound codec, int minNoiseShares, double noiseMultiplier, double updateNoiseMultiplier)
    {
        ArgumentNullException.ThrowIfNull(codec);
        if (codec.DiscreteGaussianAccounting is not { } accounting) return null;
        double zu = accounting.EquivalentNoiseMultiplier(minNoiseShares);
        double count = Math.Max(0, 1 / (noiseMultiplier * noiseMultiplier) - 1 / (updateNoiseMultiplier * updateNoiseMultiplier));
        return 1 / Math.Sqrt(1 / (zu * zu) + count);
    }

    /// <summary>
    /// The minimum participants when none is configured, the same in every runner: the whole cohort under distributed DP (the
    /// noise shares are sized for it), else 1.
    /// </summary>
    public static int DefaultMinParticipants(int cohortSize, NoiseMode? privacy) => privacy == NoiseMode.Distributed ? cohortSize : 1;
}

/// <summary>Secure aggregation's part of a round: its public parameters and the cohort's device keys by cohort index.</summary>
/// <param name="Parameters">The round's SecAgg parameters (cohort size, threshold, neighbours, modulus, phase timeout).</param>
/// <param name="Registry">Device public keys by cohort index; the coordinator disposes it when the round closes.</param>
/// <param name="MaxDegreeOfParallelism">Threads the server may use to rebuild masks.</param>
/// <param name="SigningKey">The aggregator's plan-signing key; it signs every server → vehicle SecAgg message (required against a malicious server).</param>
public sealed record SecureRoundSetup(SecAggParameters Parameters, IDeviceKeyRegistry Registry, int MaxDegreeOfParallelism = 1, System.Security.Cryptography.ECDsa? SigningKey = null);

/// <summary>Everything one round of <see cref="RoundCoordinator"/> needs, fixed when the round opens.</summary>
public sealed record RoundSetup
{
    /// <summary>The round number.</summary>
    public required long Round { get; init; }

    /// <summary>The selected vehicles, in cohort-index order (index i is vehicle Cohort[i] in secure aggregation).</summary>
    public required IReadOnlyList<string> Cohort { get; init; }

    /// <summary>Parameters of the global model the round starts from (not modified).</summary>
    public required ReadOnlyMemory<float> Global { get; init; }

    /// <summary>The server strategy that turns the combined update into the next model.</summary>
    public required IFederatedStrategy Strategy { get; init; }

    /// <summary>The round's codec: decodes plaintext updates and the secure sum.</summary>
    public required UpdatePipelineRound Codec { get; init; }

    /// <summary>The fleet's rules.</summary>
    public required RoundRules Rules { get; init; }

    /// <summary>When the round closes with whatever it has.</summary>
    public required DateTimeOffset Deadline { get; init; }

    /// <summary>σ_Δ of central noise on the sum, in units of C (differs from <see cref="RoundRules.NoiseMultiplier"/> only under adaptive clipping).</summary>
    public double? CentralNoiseMultiplier { get; init; }

    /// <summary>Source of central DP noise (required when <see cref="RoundRules.Privacy"/> is central).</summary>
    public INoiseSource? CentralNoise { get; init; }

    /// <summary>Secure aggregation, or null for a plaintext round.</summary>
    public SecureRoundSetup? Secure { get; init; }

    /// <summary>Set when this coordinator is one shard of a sharded round: it closes with a <see cref="PartialSumEffect"/>, never a release.</summary>
    public ShardRole? Shard { get; init; }
}

/// <summary>A vehicle's message to the round, already unwrapped from its transport framing.</summary>
public abstract record VehicleMessage;

/// <summary>A plaintext update: the codec envelope (in the segments it arrived in) and the local training loss the vehicle reports.</summary>
public sealed record PlainUpdateMessage(ReadOnlySequence<byte> Body, double TrainLoss = double.NaN) : VehicleMessage
{
    /// <summary>A plaintext update whose envelope is one block of memory.</summary>
    public PlainUpdateMessage(ReadOnlyMemory<byte> envelope, double trainLoss = double.NaN) : this(new ReadOnlySequence<byte>(envelope), trainLoss)
    {
    }
}

/// <summary>A secure-aggregation message (round keys, shares, masked input, unmask answer).</summary>
public sealed record SecureUpdateMessage(SecAggMessage Message) : VehicleMessage;

/// <summary>The verdict on one vehicle message: the application-level ack the runner sends back.</summary>
/// <param name="Status">Accepted, duplicate (harmless resend) or rejected.</param>
/// <param name="Reason">For a rejection, one of <see cref="RejectReasons"/> (the metrics label).</param>
/// <param name="Why">A sentence for the log and the ack.</param>
public readonly record struct Admission(AckStatus Status, string? Reason = null, string Why = "")
{
    /// <summary>Accepted.</summary>
    public static Admission Accepted { get; } = new(AckStatus.Accepted);

    /// <summary>A resend of something already counted.</summary>
    public static Admission Duplicate(string why = "") => new(AckStatus.Duplicate, null, why);

    /// <summary>Refused, with its label and a sentence.</summary>
    public static Admission Rejected(string reason, string why) => new(AckStatus.Rejected, reason, why);
}

/// <summary>What the runner must do after a step of the round, in order.</summary>
public abstract record RoundEffect;

/// <summary>Send a secure-aggregation message to one cohort member.</summary>
public sealed record RouteEffect(string Vehicle, SecAggMessage Message) : RoundEffect;

/// <summary>Record a participation for each vehicle in the privacy ledger — before the round's model is used or stored.</summary>
public sealed record ChargeEffect(long Round, IReadOnlyList<string> Vehicles, PrivacyCharge Charge) : RoundEffect;

/// <summary>The round closed: store and publish <see cref="RoundOutcome"/>.</summary>
public sealed record CloseEffect(RoundOutcome Outcome) : RoundEffect;

/// <summary>The result of one step: the verdict on the message (for <see cref="RoundCoordinator.Receive"/>) and the effects.</summary>
public sealed record RoundStep(Admission Admission, IReadOnlyList<RoundEffect> Effects)
{
    /// <summary>Nothing to do.</summary>
    public static RoundStep Empty { get; } = new(Admission.Accepted, []);
}

/// <summary>How a round ended: <see cref="RoundApplied"/> or <see cref="RoundAborted"/>.</summary>
public abstract record RoundOutcome
{
    /// <summary>The round number.</summary>
    public required long Round { get; init; }

    /// <summary>Vehicles whose updates are in the sum (plaintext contributors, or secure-aggregation survivors).</summary>
    public required IReadOnlyList<string> Contributors { get; init; }

    /// <summary>Cohort members that never answered (taken off the available list until they check in again).</summary>
    public required IReadOnlyList<string> Silent { get; init; }

    /// <summary>Mean local training loss the plaintext contributors reported (NaN when none did).</summary>
    public required double TrainLoss { get; init; }

    /// <summary>Contributors whose update was above the clip norm before clipping (adaptive clipping's count).</summary>
    public int UnclippedCount { get; init; }

    /// <summary>When the round closed.</summary>
    public required DateTimeOffset ClosedAt { get; init; }
}

/// <summary>The sum was released and the strategy applied: <see cref="Parameters"/> is model N+1.</summary>
public sealed record RoundApplied : RoundOutcome
{
    /// <summary>The next global model's parameters.</summary>
    public required float[] Parameters { get; init; }
}

/// <summary>Nothing was applied; <see cref="Reason"/> says why. No ε is charged unless the sum was released.</summary>
public sealed record RoundAborted : RoundOutcome
{
    /// <summary>Why the round did not apply.</summary>
    public required string Reason { get; init; }
}

/// <summary>Where a round is: a closed set of states.</summary>
public abstract record RoundPhase
{
    private protected RoundPhase() { }
}

/// <summary>A plaintext round folding updates as they arrive.</summary>
public sealed record CollectingPlain(int Folded, int Wanted) : RoundPhase;

/// <summary>A secure round in one of the secure-aggregation phases.</summary>
public sealed record CollectingSecure(SecAggServerPhase Phase) : RoundPhase;

/// <summary>The round has closed.</summary>
public sealed record Closed(RoundOutcome Outcome) : RoundPhase;
