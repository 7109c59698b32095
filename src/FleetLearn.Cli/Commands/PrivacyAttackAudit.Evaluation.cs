using FleetLearn.Core.Compression;
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
    /// <summary>
    /// Item 9: under SecAgg with the distributed discrete Gaussian, the adaptive-clipping bit rides in the secure sum; the
    /// aggregator must learn the unclipped count only with the vehicles' noise shares on it, as it learns the update sum.
    /// </summary>
    private static AttackOutcome UnnoisedUnclippedBit(string name)
    {
        const int n = 20, dim = 32, rounds = 10;
        var pipeline = new UpdatePipeline(new UpdatePipelineOptions
        {
            Codec = CodecSpec.Parse("rot+q8"), Dimension = dim, ClipNorm = 100, SecureAggregation = SecureAggregationMode.Plus, CohortSize = n,
            Noise = NoiseMode.Distributed, SendUnclippedBit = true,
        });
        var adaptive = new AdaptiveClipping(100, countNoiseStdDev: 3);
        double share = adaptive.VehicleBitShare(pipeline, n);
        uint mask = (1u << pipeline.ModulusBits) - 1;
        var noise = new SecureNoiseSource();
        int exact = 0;
        for (int r = 1; r <= rounds; r++)
        {
            var round = pipeline.ForRound((ulong)r, (ulong)r, 100, 1 / Math.Sqrt(n), share);
            var sum = new uint[pipeline.SecAggDimension];
            for (int v = 0; v < n; v++)
            {
                var x = new float[dim];
                x[v % dim] = 0.5f; // ‖Δ‖ = 0.5 ≤ C: every bit is 1
                var input = round.EncodeSecure(x, 1, noise, noise, out _);
                for (int i = 0; i < sum.Length; i++) sum[i] = (sum[i] + input[i]) & mask;
            }
            if (round.DecodeSum(sum, n).UnclippedCount == n) exact++;
        }
        return exact > rounds / 2
            ? AttackOutcome.Succeeded(name, $"the aggregator read the exact unclipped count ({n}) from {exact} of {rounds} secure sums")
            : AttackOutcome.Refused(name, $"each vehicle adds a discrete Gaussian share σ_b/√m_min = {share:G3} on its bit: the count read from the secure sum was exact in {exact} of {rounds} rounds (σ_b = 3 on the sum)");
    }

    /// <summary>Item 9: the aggregator asks a vehicle for the same telemetry value 100 times to take the majority of fresh randomized reports.</summary>
    private static AttackOutcome AveragedTelemetry(string name)
    {
        var telemetry = new MemoizedRandomizedResponse(new RandomizedResponse(10, 1));
        var ledger = new PrivacyLedger(new PrivacyLedgerOptions(100, 1e-5));
        var noise = new SecureNoiseSource();
        var reports = new HashSet<int>();
        for (int i = 0; i < 100; i++)
        {
            reports.Add(telemetry.Report(3, noise, out bool first));
            if (first) ledger.Record("car-0", telemetry.ReleaseId(3), telemetry.ChargeFor());
        }
        var state = ledger.Get("car-0");
        return reports.Count == 1 && state.Rounds.Count == 1
            ? AttackOutcome.Refused(name, $"100 requests for value 3: one permanent report repeated, charged once (ε {state.Epsilon:F3} at δ = 1e-5; k = 10, ε_LDP = 1)")
            : AttackOutcome.Succeeded(name, $"100 requests gave {reports.Count} different reports and {state.Rounds.Count} charges: their majority reveals the value");
    }
}
