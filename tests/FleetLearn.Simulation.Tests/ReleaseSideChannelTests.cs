using FleetLearn.Compute.Cpu;
using FleetLearn.Core.Compression;
using FleetLearn.Core.Model;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Random;
using FleetLearn.Core.Training;

namespace FleetLearn.Simulation.Tests;

/// <summary>
/// Issue 13 item 9: the two small releases beside the update — adaptive clipping's unclipped count and randomized-response
/// telemetry — must not leak what the update's protection hides.
/// </summary>
public sealed class ReleaseSideChannelTests
{

    private static readonly LabeledData Train = SimulationTestData.Blobs(600, 1);
    private static readonly LabeledData Test = SimulationTestData.Blobs(200, 2);

    private static FleetSimulator Create(SimulationOptions options) => new(options, Train, Test, (spec, batch) => new CpuTrainer(spec, batch));

    private static SimulationOptions Options => new()
    {
        Vehicles = 20, Fraction = 0.5, Rounds = 6, LocalEpochs = 1, Batch = 10, ClientLearningRate = 0.05f,
        Model = ModelSpec.Parse("16-6-4"), Seed = 3, Workers = 1,
    };

    [Fact]
    public void UnnoisedUnclippedBit_SecureRoundWithDistributedDp_AggregatorNeverLearnsTheExactCount()
    {
        // C starts at 100, far above every update's norm: each round's true unclipped count is its participant count.
        // Under SecAgg+ with the distributed discrete Gaussian the aggregator must learn that count only with the vehicles'
        // noise shares on it (σ_b = max(K/20, σ) = 3 in all), as it learns the update sum.
        var options = Options with
        {
            Codec = CodecSpec.Parse("rot+q8"), SecureAggregation = SecureAggregationMode.Plus,
            Privacy = new PrivacySettings(NoiseMode.Distributed, ClipNorm: 100, AdaptiveClip: true, NoiseMultiplier: 3),
        };
        using var sim = Create(options);
        var reports = sim.Run().ToList();
        Assert.All(reports, r => Assert.True(r.Applied, r.AbortReason));
        int exact = reports.Count(r => r.UnclippedCount == r.Participants);
        Assert.True(exact <= 2, $"the aggregator learned the exact unclipped count in {exact} of {reports.Count} rounds: " +
            string.Join(", ", reports.Select(r => $"{r.UnclippedCount}/{r.Participants}")));
        Assert.All(reports, r => Assert.InRange(r.UnclippedCount!.Value, r.Participants - 25, r.Participants + 25)); // ≈ 8σ_b
    }

    [Fact]
    public void FreshTelemetryReports_AveragingOverRounds_EachValueIsReportedOnceAndCharged()
    {
        // Every vehicle takes part in every round; with a fresh randomized report per round the aggregator's majority vote
        // over a vehicle's reports of one value converges to that value. Memoized (permanent) reports repeat the first one.
        var options = Options with
        {
            Fraction = 1, Rounds = 8, TelemetryEpsilon = 1,
            Privacy = new PrivacySettings(NoiseMode.Central, ClipNorm: 1, NoiseMultiplier: 1),
        };
        using var sim = Create(options);
        _ = sim.Run().ToList();
        int varying = 0;
        for (int v = 0; v < options.Vehicles; v++)
        {
            var log = sim.TelemetryOf(v);
            Assert.Equal(options.Rounds, log.Count);
            varying += log.GroupBy(e => e.Value).Count(g => g.Select(e => e.Report).Distinct().Count() > 1);
            // Each first report of a value is charged once, under the value's telemetry release id, in both ledgers.
            var expected = log.Select(e => MemoizedRandomizedResponse.TelemetryReleaseBase + e.Value).Distinct().Order().ToArray();
            foreach (var ledger in new[] { sim.Ledger!, sim.VehicleLedgers! })
                Assert.Equal(expected, ledger.Get(v.ToString(System.Globalization.CultureInfo.InvariantCulture)).Rounds.Where(r => r >= MemoizedRandomizedResponse.TelemetryReleaseBase).Order().ToArray());
        }
        Assert.Equal(0, varying);
    }
}
