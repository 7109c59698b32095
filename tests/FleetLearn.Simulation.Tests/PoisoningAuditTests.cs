using FleetLearn.Core.Model;
using FleetLearn.Core.Training;
using FleetLearn.Perception.Datasets;

namespace FleetLearn.Simulation.Tests;

/// <summary>The poisoning audit on a small, fast configuration (Fashion-MNIST; skipped where it is not installed).</summary>
public sealed class PoisoningAuditTests
{
    private static Lazy<(LabeledData Train, LabeledData Test)?> Data => SimulationTestData.FashionMnistSets;

    private static PoisoningAuditOptions Small => new()
    {
        Model = ModelSpec.Parse("784-16-10"),
        Vehicles = 20,
        RowsPerVehicle = 60,
        Cohort = 10,
        Rounds = 4,
        TestRows = 500,
        Seed = 3,
        Attacks = [PoisoningAttack.Boost100],
        Fractions = [0.2],
        Defences = [PoisoningDefence.FedAvg, PoisoningDefence.Median],
    };

    [SkippableFact]
    public void Run_BoostedReplacement_DestroysFedAvgButNotTheMedian()
    {
        Skip.If(Data.Value is null, "Fashion-MNIST is not installed (dataset-fashion-mnist)");
        var (train, test) = Data.Value!.Value;
        var report = new PoisoningAudit(Small, train, test).Run();
        Assert.Equal(2, report.Baselines.Count);
        Assert.Equal(2, report.Results.Count);
        var fedavg = report.Results.Single(r => r.Defence == "fedavg");
        var median = report.Results.Single(r => r.Defence == "median");
        Assert.Equal(4, fedavg.MaliciousVehicles);
        // Four vehicles sending 100× their update replace the FedAvg model; the median ignores them.
        Assert.True(fedavg.AccuracyDropPoints > 20, $"FedAvg lost only {fedavg.AccuracyDropPoints:F1} points");
        Assert.True(median.AccuracyDropPoints < 10, $"the median lost {median.AccuracyDropPoints:F1} points");
        Assert.True(report.Baselines.All(b => b.CleanAccuracy > 0.5), "the clean runs did not learn");
        Assert.Contains("| boost×100 | 20% (4) |", PoisoningReportWriter.Markdown(report), StringComparison.Ordinal);
        Assert.Contains("<svg", PoisoningReportWriter.Chart(report, "boost×100", backdoor: true), StringComparison.Ordinal);
    }

    [SkippableFact]
    public void Run_SameSeed_SameCellsWhateverElseRuns()
    {
        // Each run must depend only on its own attack, fraction and defence (found: shuffling the shared partitions in
        // place made a cell depend on the runs before it).
        Skip.If(Data.Value is null, "Fashion-MNIST is not installed (dataset-fashion-mnist)");
        var (train, test) = Data.Value!.Value;
        var alone = new PoisoningAudit(Small with { Defences = [PoisoningDefence.Median] }, train, test).Run();
        var together = new PoisoningAudit(Small with { Threads = 2 }, train, test).Run();
        Assert.Equal(alone.Results.Single(), together.Results.Single(r => r.Defence == "median"));
    }

    [Fact]
    public void Options_Invalid_SayWhich()
    {
        Assert.Contains("--fractions", Assert.Throws<ArgumentException>(() => (Small with { Fractions = [0.6] }).Validate()).Message, StringComparison.Ordinal);
        Assert.Contains("--cohort", Assert.Throws<ArgumentException>(() => (Small with { Cohort = 21 }).Validate()).Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => PoisoningAudit.ParseAttack("nonsense"));
        Assert.Equal(PoisoningDefence.NormBoundingDp, PoisoningAudit.ParseDefence("normbound+dp"));
        Assert.Equal(PoisoningAttack.Boost10, PoisoningAudit.ParseAttack("boost×10"));
    }
}
