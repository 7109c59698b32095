using FleetLearn.Core.Federated;

namespace FleetLearn.Core.Tests.Federated;

public sealed class RoundPlannerTests
{
    [Fact]
    public void Plan_SelectsCohortUniformlyWithoutRepeats_Deterministically()
    {
        var settings = new RoundSettings(CohortSize: 10);
        var plan = RoundPlanner.Plan(1, 100, _ => 100, settings, new FleetBehavior(), seed: 4);
        Assert.Equal(10, plan.Selected.Count);
        Assert.Equal(10, plan.Selected.Select(v => v.Vehicle).Distinct().Count());
        Assert.Equal(10, plan.AcceptedCount);
        var again = RoundPlanner.Plan(1, 100, _ => 100, settings, new FleetBehavior(), seed: 4);
        Assert.Equal(plan.Selected, again.Selected);
        var next = RoundPlanner.Plan(2, 100, _ => 100, settings, new FleetBehavior(), seed: 4);
        Assert.NotEqual(plan.Selected.Select(v => v.Vehicle), next.Selected.Select(v => v.Vehicle));
    }

    [Fact]
    public void Plan_SelectionIsUniformOverManyRounds()
    {
        var counts = new int[50];
        for (int r = 0; r < 2000; r++)
        {
            foreach (var v in RoundPlanner.Plan(r, 50, _ => 1, new RoundSettings(5), new FleetBehavior(), 1).Selected)
                counts[v.Vehicle]++;
        }
        // Expected 200 each; chi-square with 49 df, 0.999 quantile ≈ 85.4.
        double chi = counts.Sum(c => Math.Pow(c - 200, 2) / 200);
        Assert.True(chi < 85.4, $"chi-square {chi}");
    }

    [Fact]
    public void Plan_OverSelection_KeepsOnlyTheFirstKFinishers()
    {
        var behavior = new FleetBehavior(SpeedSpread: 1.0);
        var plan = RoundPlanner.Plan(3, 1000, _ => 600, new RoundSettings(CohortSize: 20, OverSelection: 0.3), behavior, 9);
        Assert.Equal(26, plan.Selected.Count);
        Assert.Equal(20, plan.AcceptedCount);
        Assert.Equal(6, plan.CountOf(VehicleOutcome.Surplus));
        double slowestAccepted = plan.Selected.Where(v => v.Outcome == VehicleOutcome.Accepted).Max(v => v.FinishSeconds);
        Assert.All(plan.Selected.Where(v => v.Outcome == VehicleOutcome.Surplus), v => Assert.True(v.FinishSeconds >= slowestAccepted));
        Assert.Equal(slowestAccepted, plan.SimulatedSeconds);
    }

    [Fact]
    public void Plan_DropoutAvailabilityDeadlineAndEligibility_AreApplied()
    {
        var behavior = new FleetBehavior(Availability: 0.5, Dropout: 0.2, SpeedSpread: 1.0, NominalSamplesPerSecond: 100);
        var settings = new RoundSettings(CohortSize: 200, DeadlineSeconds: 8);
        var plan = RoundPlanner.Plan(1, 2000, _ => 600, settings, behavior, 11, isEligible: v => v % 2 == 0);
        Assert.All(plan.Selected, v => Assert.Equal(0, v.Vehicle % 2));
        Assert.InRange(plan.Available, 400, 600);                 // ≈ 2000 · 0.5 · 0.5
        Assert.InRange(plan.CountOf(VehicleOutcome.Dropped), 20, 60); // ≈ 200 · 0.2
        Assert.True(plan.CountOf(VehicleOutcome.Straggler) > 0);
        Assert.All(plan.Selected.Where(v => v.Outcome == VehicleOutcome.Straggler), v => Assert.True(v.FinishSeconds > 8));
        Assert.Equal(8, plan.SimulatedSeconds);
    }

    [Fact]
    public void Settings_Invalid_ClearErrors()
    {
        Assert.Contains("within 1..5", Assert.Throws<ArgumentOutOfRangeException>(() => new RoundSettings(5, MinParticipants: 6).Validate()).Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentOutOfRangeException>(() => new FleetBehavior(Availability: 0).Validate());
        Assert.Throws<ArgumentOutOfRangeException>(() => new FleetBehavior(Dropout: 1).Validate());
    }

    [Fact]
    public void Forecast_OfAPlansCohort_GivesEachMemberThePlansFate()
    {
        // The MQTT simulation's agents learn their cohort from the plan and call Forecast; the in-process planner calls Plan.
        var behavior = new FleetBehavior(Availability: 0.8, Dropout: 0.2, SpeedSpread: 1.0);
        var settings = new RoundSettings(CohortSize: 20, OverSelection: 0.3);
        long Work(int v) => 100 + v;
        for (int round = 1; round <= 20; round++)
        {
            var plan = RoundPlanner.Plan(round, 200, Work, settings, behavior, 9);
            var forecast = RoundPlanner.Forecast(round, plan.Available, [.. plan.Selected.Select(p => p.Vehicle)], Work, settings, behavior, 9);

            Assert.Equal(plan.Selected, forecast.Selected);
            Assert.Equal(plan.Accepted, forecast.Accepted);
            Assert.All(forecast.Selected, p => Assert.Equal(behavior.DropsOut(9, round, p.Vehicle), p.Outcome == VehicleOutcome.Dropped));
            Assert.True(forecast.AcceptedCount <= settings.CohortSize);
        }
    }
}

