using FleetLearn.Core.Privacy;

namespace FleetLearn.Core.Rounds;

/// <summary>What a vehicle may report about a global model's accuracy on its own hold-out data, and what that costs its own ledger.</summary>
/// <param name="Send">Whether a report leaves the vehicle.</param>
/// <param name="Count">n: the hold-out examples (sent in the clear, as a check-in's sample count is).</param>
/// <param name="ReportedCorrect">The correct count to report: noised when <paramref name="Noised"/>.</param>
/// <param name="ReportedAccuracy">ReportedCorrect / n clamped to [0, 1] (post-processing).</param>
/// <param name="Noised">Whether discrete Laplace noise was added.</param>
/// <param name="Charge">What the vehicle's ledger recorded for it (null: nothing).</param>
/// <param name="Withheld">Why no report is sent, when <paramref name="Send"/> is false.</param>
public sealed record EvaluationDecision(bool Send, int Count, long ReportedCorrect, double ReportedAccuracy, bool Noised, PrivacyCharge? Charge, string? Withheld);

/// <summary>
/// A vehicle's evaluation report as a release of its data in the unit of its ledger (the vehicle): discrete Laplace noise of
/// scale n/ε on the correct count, charged to the vehicle's own ledger before the report leaves.
/// </summary>
/// <remarks>
/// The ledger accounts add/remove of one vehicle's whole data set. The correct count c of n hold-out examples is a function
/// of that data, and changes by up to n when it changes, so c gets the two-sided geometric mechanism at ε/n (integer noise
/// only: Mironov 2012) — ε-DP at vehicle level — and ε-DP ⇒ ε²/2-zCDP is charged as the Gaussian mechanism at multiplier
/// 1/ε (<see cref="PrivateCount.LaplaceCharge"/>) under <see cref="PrivateCount.ReleaseId"/> of the round. A report that would
/// exceed the budget is not sent, nor a second one for the same round (a fresh draw under an id already charged would let
/// averaging undo the noise for free). Without ε the exact accuracy leaves only a vehicle whose rounds carry no DP.
/// </remarks>
public static class EvaluationRelease
{
    /// <summary>Decides the report of round <paramref name="round"/>'s model and records its charge in <paramref name="ledger"/> first.</summary>
    /// <param name="round">The round whose plan brought the model (one report per round).</param>
    /// <param name="count">n: hold-out examples evaluated (≥ 1).</param>
    /// <param name="correct">Examples classified correctly (stays on the vehicle).</param>
    /// <param name="epsilon">ε of the report at vehicle level, or null for no noise.</param>
    /// <param name="privateFleet">Whether the vehicle's data is under DP (the plan carries noise, or the vehicle has a budget): then an exact report is never sent.</param>
    /// <param name="ledger">The vehicle's own ledger.</param>
    /// <param name="noise">A cryptographically secure source on vehicles (<see cref="SecureNoiseSource"/>).</param>
    public static EvaluationDecision Decide(long round, int count, int correct, double? epsilon, bool privateFleet, IVehicleLedger ledger, INoiseSource noise)
    {
        ArgumentNullException.ThrowIfNull(ledger);
        ArgumentNullException.ThrowIfNull(noise);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(count);
        if (correct < 0 || correct > count) throw new ArgumentOutOfRangeException(nameof(correct), correct, $"The correct count must lie in [0, {count}].");
        if (epsilon is not { } eps)
        {
            return privateFleet
                ? Withhold(count, "the vehicle's data is under DP and Agent:EvaluationEpsilon is not set: an exact accuracy would be a release no ledger accounts")
                : new EvaluationDecision(true, count, correct, correct / (double)count, false, null, null);
        }
        var charge = PrivateCount.LaplaceCharge(eps);
        ulong numerator = (ulong)Math.Floor(eps * (1UL << PrivateCount.EpsilonFractionBits));
        if (numerator == 0) throw new ArgumentOutOfRangeException(nameof(epsilon), eps, $"ε = {eps} is below 2^-{PrivateCount.EpsilonFractionBits}.");
        long id = PrivateCount.ReleaseId(round);
        if (ledger.HasRecorded(id)) return Withhold(count, $"the report of round {round} was already released (a second draw would average its noise away)");
        if (!ledger.TryRecord(id, charge)) return Withhold(count, $"its charge (ε = {eps} at vehicle level) would exceed the vehicle's budget (ε spent {ledger.Epsilon:F3})");
        // P(z) ∝ exp(−(⌊ε·2^20⌋ / (n·2^20))·|z|): ε' ≤ ε per n changed counts, never less noise than asked for.
        long noisy = checked(correct + DiscreteGaussian.SampleDiscreteLaplace(numerator, (ulong)count << PrivateCount.EpsilonFractionBits, noise));
        return new EvaluationDecision(true, count, noisy, Math.Clamp(noisy / (double)count, 0, 1), true, charge, null);
    }

    private static EvaluationDecision Withhold(int count, string why) => new(false, count, 0, double.NaN, false, null, why);
}
