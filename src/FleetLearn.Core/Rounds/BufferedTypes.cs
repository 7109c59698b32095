using FleetLearn.Core.Compression;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Privacy;

namespace FleetLearn.Core.Rounds;

/// <summary>FedBuff's staleness weight s(τ) = 1/√(1+τ) (Nguyen et al. 2022, §3 and Appendix: the polynomial weighting they use).</summary>
public static class Staleness
{
    /// <summary>s(τ) for an update trained on a model <paramref name="staleness"/> versions behind the one it is folded into.</summary>
    public static double Weight(long staleness)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(staleness);
        return 1 / Math.Sqrt(1 + (double)staleness);
    }

    /// <summary>
    /// What a contribution of staleness τ costs under DP: the sum carries N(0, σ²C²) but this vehicle moved it by at most
    /// s(τ)·C, so its Gaussian mechanism has noise multiplier σ/s(τ) = σ√(1+τ) (RDP α·s²/(2σ²), Mironov 2017, Prop. 7).
    /// </summary>
    public static PrivacyCharge Charge(double noiseMultiplier, long staleness) => PrivacyCharge.Participation(noiseMultiplier / Weight(staleness));
}

/// <summary>Everything a <see cref="BufferedCoordinator"/> needs, fixed for its lifetime.</summary>
public sealed record BufferedSetup
{
    /// <summary>Parameters of the model at <see cref="FirstVersion"/> (copied).</summary>
    public required ReadOnlyMemory<float> Global { get; init; }

    /// <summary>The server strategy that turns each full buffer's combined update into the next model (a weighted mean).</summary>
    public required IFederatedStrategy Strategy { get; init; }

    /// <summary>The codec of model version v: what a vehicle that trained on v encodes with, and what its update is decoded with.</summary>
    public required Func<long, UpdatePipelineRound> CodecFor { get; init; }

    /// <summary>The fleet's rules; <see cref="RoundRules.CohortSize"/> is K, the buffer size (a step is applied at every K-th update).</summary>
    public required RoundRules Rules { get; init; }

    /// <summary>Updates trained on a model more than this many versions old are refused (FedBuff's maximum staleness).</summary>
    public int MaxStaleness { get; init; } = 10;

    /// <summary>Check-ins training at once (FedBuff's concurrency); more are told to come back later.</summary>
    public required int Concurrency { get; init; }

    /// <summary>How long a check-in holds its slot; a vehicle silent for longer has dropped out and frees it.</summary>
    public TimeSpan Lease { get; init; } = TimeSpan.FromHours(1);

    /// <summary>Most contributions one vehicle may make (null: no cap). Under DP this bounds each vehicle's ε (<see cref="BufferedAccountant"/>).</summary>
    public int? MaxParticipations { get; init; }

    /// <summary>
    /// The aggregator's privacy ledger (read here to refuse vehicles at their cap or over budget; the runner records the charges).
    /// A durable one (the aggregator's LiteDB ledger) makes the cap and the budget hold across restarts.
    /// </summary>
    public IPrivacyLedgerView? Ledger { get; init; }

    /// <summary>Source of central DP noise for the step that produces version v (required under central DP).</summary>
    public Func<long, INoiseSource>? CentralNoiseFor { get; init; }

    /// <summary>The version <see cref="Global"/> is.</summary>
    public long FirstVersion { get; init; }
}

/// <summary>The answer to a check-in: the verdict, and for an accepted one the model version to train on and the slot to encode with.</summary>
/// <param name="Admission">Accepted, or rejected with <see cref="RejectReasons.Busy"/> / <see cref="RejectReasons.ParticipationCap"/>.</param>
/// <param name="Version">The model version the vehicle must train on.</param>
/// <param name="Slot">Its index among version <paramref name="Version"/>'s check-ins (the codec's vehicle field).</param>
/// <param name="LeaseUntil">When its slot is given to another vehicle if no update has come.</param>
public sealed record BufferedCheckIn(Admission Admission, long Version, ulong Slot, DateTimeOffset LeaseUntil);

/// <summary>Where a buffered coordinator is: its version, what the buffer holds, and what it has refused (for status pages and reports).</summary>
public sealed record BufferedProgress(long Version, int Buffered, int BufferSize, int Training, long Applied, long Stale, long Expired, long Withdrawn);
