using FleetLearn.Compute.Cpu;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Model;
using FleetLearn.Core.Random;
using FleetLearn.Core.Training;

namespace FleetLearn.Simulation.Tests;

public sealed class FleetSimulatorTests
{
    // Four Gaussian blobs in 16 dimensions: learnable in a few rounds, fast enough for unit tests.
    private static LabeledData Blobs(int rows, ulong seed)
    {
        var rng = new DeterministicRandom(seed);
        var centers = new float[4][];
        var centerRng = new DeterministicRandom(99);
        for (int c = 0; c < 4; c++) centers[c] = Enumerable.Range(0, 16).Select(_ => (float)centerRng.NextGaussian()).ToArray();
        var x = new float[rows * 16];
        var y = new byte[rows];
        for (int r = 0; r < rows; r++)
        {
            int c = rng.NextInt(4);
            y[r] = (byte)c;
            for (int j = 0; j < 16; j++) x[r * 16 + j] = centers[c][j] + 0.7f * (float)rng.NextGaussian();
        }
        return new LabeledData(x, y, 16, 4, "blobs");
    }

    private static readonly LabeledData Train = Blobs(2000, 1);
    private static readonly LabeledData Test = Blobs(500, 2);

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
        long modelBytes = 4L * Options.Model.ParameterCount;
        Assert.All(reports, r => Assert.Equal(10 * modelBytes, r.BytesUp));
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
        Assert.Equal(report.Participants * 4L * Options.Model.ParameterCount, report.BytesUp);
        Assert.Equal(before, sim.GlobalModel.ToArray());
    }

    [Fact]
    public void RunRound_OverSelectionAndDropout_AcceptsAtMostTheCohort()
    {
        using var sim = Create(Options with { Behavior = new FleetBehavior(Dropout: 0.2), OverSelection = 0.5 });
        var report = sim.RunRound(1);
        Assert.Equal(15, report.Selected);
        Assert.InRange(report.Participants, 1, 10);
        Assert.Equal(report.Participants * 4L * Options.Model.ParameterCount, report.BytesUp);
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
}
