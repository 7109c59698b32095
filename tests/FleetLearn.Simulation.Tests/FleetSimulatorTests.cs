using FleetLearn.Compute.Cpu;
using FleetLearn.Core.Compression;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Model;
using FleetLearn.Core.Random;
using FleetLearn.Core.Training;

namespace FleetLearn.Simulation.Tests;

public sealed class FleetSimulatorTests
{

    private static readonly LabeledData Train = SimulationTestData.Blobs(2000, 1);
    private static readonly LabeledData Test = SimulationTestData.Blobs(500, 2);

    private static SimulationOptions Options => new()
    {
        Vehicles = 40,
        Fraction = 0.25,
        Rounds = 4,
        LocalEpochs = 2,
        Batch = 10,
        ClientLearningRate = 0.05f,
        Model = ModelSpec.Parse("16-12-4"),
        Seed = 5,
        Workers = 1,
    };

    private static FleetSimulator Create(SimulationOptions options) =>
        new(options, Train, Test, (spec, batch) => new CpuTrainer(spec, batch));

    [Fact]
    public void Run_Blobs_LearnsAndReportsEveryRound()
    {
        using var sim = Create(Options);
        var before = sim.Evaluate().Accuracy;
        var reports = sim.Run().ToList();
        Assert.Equal([1, 2, 3, 4], reports.Select(r => r.Round));
        Assert.All(reports, r => Assert.Equal(10, r.Participants));
        Assert.All(reports, r => Assert.True(r.Applied));
        Assert.True(reports[^1].TestAccuracy > 0.9 && reports[^1].TestAccuracy > before + 0.2,
            $"accuracy went from {before} to {reports[^1].TestAccuracy}");
        // codec none: each upload is the update envelope's header plus float32 parameters.
        long envelopeBytes = UpdateEnvelope.HeaderBytes + 4L * Options.Model.ParameterCount;
        Assert.All(reports, r => Assert.Equal(10 * envelopeBytes, r.BytesUp));
        Assert.All(reports, r => Assert.Equal(envelopeBytes, r.BytesUpPerVehicle));
    }

    [Fact]
    public void Run_WorkerCount_DoesNotChangeTheResult()
    {
        float[] Final(int workers)
        {
            using var sim = Create(Options with { Workers = workers, Strategy = "fedprox:0.1" });
            foreach (var _ in sim.Run()) { }
            return sim.GlobalModel.ToArray();
        }
        Assert.Equal(Final(1), Final(3));
    }

    [Fact]
    public void Run_SameSeed_SameModel_DifferentSeed_Differs()
    {
        float[] Final(ulong seed)
        {
            using var sim = Create(Options with { Seed = seed, Rounds = 2 });
            foreach (var _ in sim.Run()) { }
            return sim.GlobalModel.ToArray();
        }
        Assert.Equal(Final(8), Final(8));
        Assert.NotEqual(Final(8), Final(9));
    }

    [Fact]
    public void RunRound_TooFewParticipants_LeavesTheModelUnchanged()
    {
        // Every selected vehicle drops (dropout 0.99) and at least 5 updates are required.
        using var sim = Create(Options with { Behavior = new FleetBehavior(Dropout: 0.99), MinParticipants = 5 });
        var before = sim.GlobalModel.ToArray();
        var report = sim.RunRound(1);
        Assert.False(report.Applied);
        Assert.True(report.Dropped >= 6, $"dropped {report.Dropped}");
        Assert.Equal(report.Participants * (UpdateEnvelope.HeaderBytes + 4L * Options.Model.ParameterCount), report.BytesUp);
        Assert.Equal(before, sim.GlobalModel.ToArray());
    }

    [Fact]
    public void RunRound_OverSelectionAndDropout_AcceptsAtMostTheCohort()
    {
        using var sim = Create(Options with { Behavior = new FleetBehavior(Dropout: 0.2), OverSelection = 0.5 });
        var report = sim.RunRound(1);
        Assert.Equal(15, report.Selected);
        Assert.InRange(report.Participants, 1, 10);
        Assert.Equal(report.Participants * (UpdateEnvelope.HeaderBytes + 4L * Options.Model.ParameterCount), report.BytesUp);
        Assert.Equal(15 * 4L * Options.Model.ParameterCount, report.BytesDown);
    }

    [Fact]
    public void Write_Artifacts_CsvRowsAndLoadableModel()
    {
        using var sim = Create(Options with { Rounds = 2 });
        var reports = sim.Run().ToList();
        var dir = Directory.CreateTempSubdirectory("fleetlearn-sim-");
        try
        {
            SimulationArtifacts.Write(dir.FullName, Options with { Rounds = 2 }, sim, reports, null, 1.0);
            var lines = File.ReadAllLines(Path.Combine(dir.FullName, "rounds.csv"));
            Assert.Equal(3, lines.Length);
            Assert.StartsWith("round,test_accuracy,test_loss", lines[0], StringComparison.Ordinal);
            Assert.StartsWith("2,", lines[2], StringComparison.Ordinal);
            Assert.True(File.Exists(Path.Combine(dir.FullName, "accuracy.png")));
            Assert.Contains("<svg", File.ReadAllText(Path.Combine(dir.FullName, "report.html")), StringComparison.Ordinal);
            var ckpt = Checkpoint.Load(Path.Combine(dir.FullName, "model.ckpt"));
            Assert.Equal(sim.GlobalModel.ToArray(), ckpt.Parameters);
            Assert.Equal(2, ckpt.Version);
        }
        finally
        {
            dir.Delete(true);
        }
    }

    [Fact]
    public void Run_DpWithBudget_BothLedgersAgree_NoVehicleExceedsItsBudget()
    {
        // Budget: exactly what two participations at σ = 1 cost.
        var probe = new FleetLearn.Core.Privacy.PrivacyLedger(new FleetLearn.Core.Privacy.PrivacyLedgerOptions(double.MaxValue, 1e-5));
        var charge = FleetLearn.Core.Privacy.PrivacyCharge.Participation(1.0);
        probe.Record("x", 1, charge);
        double budget = probe.Record("x", 2, charge).Epsilon + 1e-9;
        var options = Options with
        {
            Rounds = 12,
            Privacy = new PrivacySettings(FleetLearn.Core.Privacy.NoiseMode.Central, ClipNorm: 1, NoiseMultiplier: 1, EpsilonBudget: budget),
        };
        using var sim = Create(options);
        var reports = sim.Run().ToList();
        Assert.True(reports.Sum(r => r.Declined) > 0, "with ~3 expected participations each, some vehicles must decline");
        for (int i = 1; i < reports.Count; i++) Assert.True(reports[i].MaxVehicleEpsilon >= reports[i - 1].MaxVehicleEpsilon);
        Assert.All(reports, r => Assert.True(r.MaxVehicleEpsilon <= budget));
        for (int v = 0; v < options.Vehicles; v++)
        {
            string id = v.ToString(System.Globalization.CultureInfo.InvariantCulture);
            var server = sim.Ledger!.Get(id);
            var own = sim.VehicleLedgers!.Get(id);
            Assert.Equal(server.Rounds, own.Rounds);
            Assert.Equal(server.Epsilon, own.Epsilon);
            Assert.InRange(server.Participations, 0, 2);
        }
        // Fleet ε grows with every private release.
        Assert.True(reports[^1].Epsilon > reports[0].Epsilon);
    }

    [Fact]
    public void Run_DistributedDpAndTelemetry_TrainsAndEstimatesLabels()
    {
        var options = Options with
        {
            Rounds = 6,
            Privacy = new PrivacySettings(FleetLearn.Core.Privacy.NoiseMode.Distributed, ClipNorm: 1, AdaptiveClip: true, NoiseMultiplier: 0.3),
            TelemetryEpsilon = 4,
        };
        using var sim = Create(options);
        var reports = sim.Run().ToList();
        Assert.All(reports, r => Assert.True(r.Applied));
        Assert.True(reports[^1].TestAccuracy > 0.6, $"accuracy {reports[^1].TestAccuracy}");
        Assert.NotEqual(reports[0].ClipNorm, reports[^1].ClipNorm); // adaptive clipping moved C
        var (estimated, truth) = sim.TelemetryEstimate!.Value;
        Assert.Equal(1.0, truth.Sum(), 9);
        Assert.Equal(1.0, estimated.Sum(), 6);
    }

    [Fact]
    public void AggregationBenchmark_SmallRun_ReportsPositiveRatesAndBoundedMemory()
    {
        var r = AggregationBenchmark.Run(updates: 20, dimension: 100_000, repeats: 1);
        Assert.True(r.InputGigabytesPerSecond > 0 && r.MemcpyGigabytesPerSecond > 0);
        Assert.True(r.PeakManagedMegabytes > 0);
    }

    [Fact]
    public void Options_Invalid_ClearErrors()
    {
        Assert.Contains("cannot exceed the fleet", Assert.Throws<ArgumentException>(() => (Options with { Cohort = 41 }).Validate()).Message, StringComparison.Ordinal);
        Assert.Contains("--rounds", Assert.Throws<ArgumentException>(() => (Options with { Rounds = 0 }).Validate()).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Run_SecAggPlusVersusOff_SameQuantization_FinalModelsWithinOneStep()
    {
        // Same shared grid (rot+q8 on the public range from C = 5) in both runs: the integer sums are identical, so the
        // models differ only by float rounding of the decode (and, rarely, a stochastic rounding decision flipped by it).
        var common = Options with { Codec = CodecSpec.Parse("rot+q8+shared"), NormBound = 5, Rounds = 3 };
        float[] Final(SimulationOptions o)
        {
            using var sim = Create(o);
            var reports = sim.Run().ToList();
            Assert.All(reports, r => Assert.True(r.Applied, r.AbortReason));
            Assert.All(reports, r => Assert.Equal(10, r.Participants));
            return sim.GlobalModel.ToArray();
        }
        var off = Final(common);
        var plus = Final(common with { Codec = CodecSpec.Parse("rot+q8"), SecureAggregation = SecureAggregationMode.Plus, SecAggNeighbors = 4 });
        using var probe = Create(common);
        double step = probe.Pipeline.ForRound(1, 1, 5).StepFor(probe.Pipeline.ForRound(1, 1, 5).SharedRangeValue);
        double maxDiff = off.Zip(plus).Max(p => Math.Abs(p.First - p.Second));
        Assert.True(maxDiff <= step, $"max |w_plus − w_off| = {maxDiff}, one step = {step}");
        double meanDiff = off.Zip(plus).Average(p => Math.Abs(p.First - p.Second));
        Assert.True(meanDiff <= 1e-3 * step, $"mean |w_plus − w_off| = {meanDiff}");
    }

    [Fact]
    public void RunRound_SecAggFullWithDropouts_RecoversMasksAndAggregatesSurvivors()
    {
        var options = Options with
        {
            Codec = CodecSpec.Parse("sub0.5+rot+q8"), NormBound = 5, SecureAggregation = SecureAggregationMode.Full,
            Behavior = new FleetBehavior(Dropout: 0.25), OverSelection = 0.5,
        };
        using var sim = Create(options);
        var report = sim.RunRound(1);
        Assert.Null(report.AbortReason);
        Assert.True(report.Applied);
        Assert.True(report.Dropped > 0, "the seed should drop someone mid-round");
        Assert.InRange(report.Participants, 1, 10);
        // Dropped vehicles sent keys and shares too: the round's upload exceeds the participants' own bytes.
        Assert.True(report.BytesUp > report.Participants * report.BytesUpPerVehicle, $"{report.BytesUp} vs {report.Participants} × {report.BytesUpPerVehicle}");
        Assert.True(report.TestAccuracy > 0.3);
    }

    [Fact]
    public void RunRound_SecAggMaliciousServerWithDropouts_SameModelAsHonestButCuriousMode()
    {
        // Certified keys, the ConsistencyCheck round and signed downlink change who can cheat, not the sum.
        var options = Options with
        {
            Codec = CodecSpec.Parse("sub0.5+rot+q8"), NormBound = 5, SecureAggregation = SecureAggregationMode.Full,
            Behavior = new FleetBehavior(Dropout: 0.25), OverSelection = 0.5,
        };
        float[] Final(SimulationOptions o)
        {
            using var sim = Create(o);
            var report = sim.RunRound(1);
            Assert.True(report.Applied, report.AbortReason);
            Assert.True(report.Dropped > 0, "the seed should drop someone mid-round");
            return sim.GlobalModel.ToArray();
        }

        Assert.Equal(Final(options), Final(options with { SecAggMaliciousServer = true }));
    }

    [Fact]
    public void Ledger_DistributedDiscreteGaussian_ChargesTheSigmaEquivalentOfTheNoiseActuallyAdded()
    {
        // Issue 13 item 4: the discrete Gaussian on rounded integers has sensitivity Δ₂ > C and a τ term (KLS 2021); charging
        // the plan's σ under-counts. Both ledgers must charge the Gaussian z whose RDP bounds the mechanism actually run.
        const double sigma = 1.0, clip = 1.0;
        var options = Options with
        {
            Codec = CodecSpec.Parse("rot+q8"), SecureAggregation = SecureAggregationMode.Full, Rounds = 1,
            Privacy = new PrivacySettings(Core.Privacy.NoiseMode.Distributed, ClipNorm: clip, NoiseMultiplier: sigma),
        };
        using var sim = Create(options);
        var report = sim.RunRound(1);
        Assert.True(report.Applied, report.AbortReason);
        int shares = options.EffectiveMinParticipants;
        var accounting = sim.Pipeline.ForRound(1, 0, clip, sigma * clip / Math.Sqrt(shares)).DiscreteGaussianAccounting!;
        double z = accounting.EquivalentNoiseMultiplier(shares);
        Assert.True(z < sigma, $"z = {z}");
        var expected = new Core.Privacy.PrivacyLedger(sim.Ledger!.Options);
        expected.Record("x", 1, Core.Privacy.PrivacyCharge.Participation(z));

        foreach (var ledger in new[] { sim.Ledger!, sim.VehicleLedgers! })
            Assert.All(ledger.Vehicles, v => Assert.Equal(expected.EpsilonOf("x"), v.Epsilon, 9));
    }

    [Fact]
    public void Run_SecAggWithDistributedDpAndAdaptiveClip_AppliesAndAccounts()
    {
        var options = Options with
        {
            Codec = CodecSpec.Parse("rot+q8"), SecureAggregation = SecureAggregationMode.Plus, Rounds = 2,
            Privacy = new PrivacySettings(Core.Privacy.NoiseMode.Distributed, ClipNorm: 1, AdaptiveClip: true, NoiseMultiplier: 0.5),
        };
        using var sim = Create(options);
        var reports = sim.Run().ToList();
        Assert.All(reports, r => Assert.True(r.Applied, r.AbortReason));
        Assert.NotEqual(reports[0].ClipNorm, reports[1].ClipNorm); // the unclipped count came through the secure sum
        Assert.Equal(20, sim.Ledger!.Vehicles.Sum(v => v.Participations));
    }

    [Fact]
    public void Run_SecAggPlusWithOverSelection_SurplusCountsAsMissing_EveryRoundApplies()
    {
        // 26 selected for 20 needed: the 6 surplus never send a masked input, on top of 10% dropping mid-round. A graph
        // derived for 10% missing (k = 6, t = 4 here) loses a vehicle's secret when 4 of its 7 holders are among them, and
        // the round aborts; the default k must be derived for the surplus too.
        var options = Options with
        {
            Vehicles = 60, Cohort = 20, Rounds = 4, OverSelection = 0.3, Behavior = new Core.Federated.FleetBehavior(Availability: 0.9, Dropout: 0.1),
            Codec = CodecSpec.Parse("rot+q8"), SecureAggregation = SecureAggregationMode.Plus, NormBound = 1, Seed = 7,
        };
        using var sim = Create(options);
        var reports = sim.Run().ToList();
        Assert.All(reports, r => Assert.True(r.Applied, r.AbortReason));
    }

    [Fact]
    public void Run_TopKWithErrorFeedback_ResidualsOnlyForVehiclesThatParticipated()
    {
        using var sim = Create(Options with { Codec = CodecSpec.Parse("topk0.1+ef+q8"), Rounds = 3 });
        var reports = sim.Run().ToList();
        Assert.Equal(30, reports.Sum(r => r.Participants));
        Assert.InRange(sim.Residuals!.Count, 10, 30);
        Assert.Equal(4L * Options.Model.ParameterCount * sim.Residuals.Count, sim.Residuals.Bytes);
        Assert.True(reports[^1].TestAccuracy > 0.5, $"accuracy {reports[^1].TestAccuracy}"); // chance is 0.25; top-10% delays most of each update
        Assert.True(reports[0].BytesUpPerVehicle < UpdateEnvelope.HeaderBytes + Options.Model.ParameterCount / 4);
    }

    [Fact]
    public void Options_SecAggConflicts_ClearErrors()
    {
        Assert.Contains("reveals only the sum", Assert.Throws<CodecConfigurationException>(() => (Options with { Strategy = "median", NormBound = 1, SecureAggregation = SecureAggregationMode.Full }).Validate()).Message, StringComparison.Ordinal);
        Assert.Contains("top-k picks different coordinates", Assert.Throws<CodecConfigurationException>(() => (Options with { Codec = CodecSpec.Parse("topk0.1+ef+q8"), NormBound = 1, SecureAggregation = SecureAggregationMode.Plus }).Validate()).Message, StringComparison.Ordinal);
        Assert.Contains("needs a clip norm", Assert.Throws<CodecConfigurationException>(() => (Options with { SecureAggregation = SecureAggregationMode.Full }).Validate()).Message, StringComparison.Ordinal);
        Assert.Contains("too small for the cohort's sum", Assert.Throws<CodecConfigurationException>(() => (Options with { Codec = CodecSpec.Parse("q8"), NormBound = 1, SecureAggregation = SecureAggregationMode.Full, SecAggModulusBits = 8 }).Validate()).Message, StringComparison.Ordinal);
        Assert.Contains("at least 3 selected", Assert.Throws<CodecConfigurationException>(() => (Options with { Cohort = 2, NormBound = 1, SecureAggregation = SecureAggregationMode.Full }).Validate()).Message, StringComparison.Ordinal);
    }
}
