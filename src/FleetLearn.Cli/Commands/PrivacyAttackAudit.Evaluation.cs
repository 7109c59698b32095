using FleetLearn.Core.Privacy;
using FleetLearn.Core.Rounds;

namespace FleetLearn.Cli.Commands;

internal static partial class PrivacyAttackAudit
{
    /// <summary>
    /// Item 8, vehicle side: an aggregator re-delivers one round 100 times to average the noisy reports of its model away, and
    /// asks a vehicle under DP for an exact report; the vehicle's own ledger must account what does leave.
    /// </summary>
    private static AttackOutcome AveragedEvalReports(string name)
    {
        const int count = 200, correct = 150;
        const double epsilon = 0.5;
        var ledger = new PrivacyLedger(new PrivacyLedgerOptions(10, 1e-5));
        var account = new PrivacyLedgerAccount(ledger, "car-0");
        var noise = new SecureNoiseSource();
        int sent = Enumerable.Range(0, 100).Count(_ => EvaluationRelease.Decide(7, count, correct, epsilon, privateFleet: true, account, noise).Send);
        var state = ledger.Get("car-0");
        if (sent != 1) return AttackOutcome.Succeeded(name, $"{sent} reports of round 7 left the vehicle: their mean undoes the noise");
        if (!state.Rounds.SequenceEqual([PrivateCount.ReleaseId(7)]))
            return AttackOutcome.Succeeded(name, "the report left the vehicle without a charge in its own ledger under the round's release id");
        var exact = EvaluationRelease.Decide(8, count, correct, null, privateFleet: true, account, noise);
        if (exact.Send) return AttackOutcome.Succeeded(name, $"a vehicle under DP sent its exact accuracy {exact.ReportedAccuracy:R}");
        return AttackOutcome.Refused(name, $"100 deliveries of round 7: 1 report sent, charged once to the vehicle's ledger (ε {state.Epsilon:F3} at δ = 1e-5; discrete Laplace of scale n/ε = {count / epsilon} on the count, vehicle level); an exact report under DP: withheld ({exact.Withheld})");
    }
}
