using FleetLearn.Compute.Cpu;
using FleetLearn.Core.Compression;
using FleetLearn.Core.Model;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Training;

namespace FleetLearn.Simulation.Tests;

/// <summary>Sharded aggregation in process: S shard coordinators, each its own SecAgg instance, and one combiner.</summary>
public sealed class ShardedSimulationTests
{
    private static readonly LabeledData Train = SimulationTestData.Blobs(2000, 1);
    private static readonly LabeledData Test = SimulationTestData.Blobs(500, 2);

    private static SimulationOptions Options => new()
    {
        Vehicles = 40,
        Cohort = 12,
        Rounds = 2,
        LocalEpochs = 1,
        Batch = 10,
        Model = ModelSpec.Parse("16-12-4"),
        Seed = 5,
        Workers = 2,
        Codec = CodecSpec.Parse("rot+q8"),
        NormBound = 5,
        SecureAggregation = SecureAggregationMode.Plus,
    };

    private static (float[] Model, List<RoundReport> Reports) Run(SimulationOptions options)
    {
        using var sim = new FleetSimulator(options, Train, Test, (spec, batch) => new CpuTrainer(spec, batch));
        var reports = sim.Run().ToList();
        return (sim.GlobalModel.ToArray(), reports);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void SecureSums_ThreeShards_SameModelAsOne(bool centralDp)
    {
        var options = centralDp ? Options with { NormBound = null, Privacy = new PrivacySettings(NoiseMode.Central, ClipNorm: 5, NoiseMultiplier: 0.3) } : Options;
        var one = Run(options);
        var three = Run(options with { Shards = 3 });
        Assert.All(three.Reports, r => Assert.True(r.Applied, r.AbortReason));
        Assert.All(three.Reports, r => Assert.Equal((12, 3), (r.Participants, r.Shards)));
        Assert.Equal(one.Model, three.Model); // ring sums mod 2^m are exact: the shards' sums add to the one sum
        Assert.Equal(one.Reports.Select(r => r.MaxVehicleEpsilon), three.Reports.Select(r => r.MaxVehicleEpsilon));
    }

    [Fact]
    public void ShardDiesMidRound_RoundAppliesWithTheOthers_NextRoundReassignsItsVehicles()
    {
        var options = Options with { Shards = 3, MinParticipants = 6, ShardKills = [new ShardKill(1, 1)] };
        var (model, reports) = Run(options);
        Assert.True(reports[0].Applied, reports[0].AbortReason);
        Assert.Equal(8, reports[0].Participants); // 12 in parts of 4: shard 1's four were lost with it
        Assert.Equal(3, reports[0].Shards);
        Assert.Equal([1], reports[0].LostShards);
        Assert.True(reports[1].Applied, reports[1].AbortReason);
        Assert.Equal((12, 2), (reports[1].Participants, reports[1].Shards)); // two live shards own the whole cohort
        Assert.Empty(reports[1].LostShards);
        Assert.All(model, w => Assert.True(float.IsFinite(w)));
    }

    [Fact]
    public void ShardDiesMidRound_OnlyTheCombinedContributorsAreCharged_Once()
    {
        var options = Options with
        {
            NormBound = null, Privacy = new PrivacySettings(NoiseMode.Central, ClipNorm: 5, NoiseMultiplier: 0.3),
            Shards = 3, MinParticipants = 6, ShardKills = [new ShardKill(1, 2)],
        };
        using var sim = new FleetSimulator(options, Train, Test, (spec, batch) => new CpuTrainer(spec, batch));
        var report = sim.RunRound(1);
        Assert.True(report.Applied, report.AbortReason);
        Assert.Equal([2], report.LostShards);
        var charged = sim.Ledger!.Vehicles.ToList();
        Assert.Equal(8, charged.Count); // shard 2's four vehicles never sent a masked input and are in no released sum
        Assert.All(charged, v => Assert.Equal((1, report.MaxVehicleEpsilon), (v.Participations, v.Epsilon)));
        Assert.Equal(8, sim.VehicleLedgers!.Vehicles.Count());
    }

    [Fact]
    public void ShardDies_MinimumNotMet_Aborted()
    {
        var (_, reports) = Run(Options with { Shards = 3, MinParticipants = 9, ShardKills = [new ShardKill(1, 0)] });
        Assert.False(reports[0].Applied);
        Assert.Equal("8 updates < minimum 9", reports[0].AbortReason);
        Assert.True(reports[1].Applied, reports[1].AbortReason);
    }

    [Fact]
    public void DistributedDp_SharesSizedPerShard_Applies()
    {
        // Each part unmasks its own sum, so every vehicle's share is sized for m_min / S = 4 shares, not 12: more noise in all.
        var options = Options with { NormBound = null, Privacy = new PrivacySettings(NoiseMode.Distributed, ClipNorm: 5, NoiseMultiplier: 0.3), Shards = 3 };
        using var sim = new FleetSimulator(options, Train, Test, (spec, batch) => new CpuTrainer(spec, batch));
        var report = sim.RunRound(1);
        Assert.True(report.Applied, report.AbortReason);
        Assert.Equal(12, report.Participants);
    }

    [Fact]
    public void Validate_PartsTooSmallForSecureAggregation_Refused()
    {
        var e = Assert.Throws<ArgumentException>(() => (Options with { Shards = 5 }).Validate());
        Assert.Equal("--shards 5: each shard runs its own secure aggregation over at least 3 vehicles, and 12 selected vehicles give 2 per shard.", e.Message);
    }
}
