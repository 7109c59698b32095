using FleetLearn.Compute.Cpu;
using FleetLearn.Core.Model;
using FleetLearn.Simulation.Traces;

namespace FleetLearn.Simulation.Tests;

/// <summary>Pace steering in synchronous trace runs: the check-in load with and without it, on the same trace.</summary>
public sealed class PaceTraceSimulationTests
{
    private static TraceRunResult Run(bool pace, AvailabilityTrace trace)
    {
        var options = new SimulationOptions
        {
            Vehicles = 400, Cohort = 5, LocalEpochs = 1, Batch = 10, Model = ModelSpec.Parse("16-12-4"), Seed = 3, Workers = 1, Target = 1.01,
        };
        var settings = new TraceSettings { Mode = RoundMode.Sync, Hours = 72, Pace = pace, StopAtTarget = false, EvaluateEveryHours = 24 };
        using var sim = TraceFleetSimulation.Create(options, settings, trace, TraceSimulationTests.Train, TraceSimulationTests.Test, (spec, batch) => new CpuTrainer(spec, batch));
        return sim.Run();
    }

    [Fact]
    public void Sync_Pace_SmoothsTheCheckInLoadAndStillTrains()
    {
        // Without steering every window opening is a check-in (evening plug-ins pile up); with it, from the second day on each
        // vehicle checks in once a day at the least-loaded of its usual hours, so the busiest hour of days 2–3 carries less.
        var trace = VehicleDayModel.Parse("mixed").Generate(400, 72, 5);
        var off = Run(pace: false, trace);
        var on = Run(pace: true, trace);
        Assert.Equal(72, off.CheckInsPerHour!.Count);
        Assert.Equal(72, on.CheckInsPerHour!.Count);
        long PeakAfterDayOne(TraceRunResult r) => r.CheckInsPerHour!.Skip(24).Max();
        Assert.True(PeakAfterDayOne(on) < PeakAfterDayOne(off), $"peak with pace {PeakAfterDayOne(on)}, without {PeakAfterDayOne(off)}");
        Assert.True(on.Applied > 10, $"{on.Applied} rounds with pace");
    }

    [Fact]
    public void FedBuff_Pace_Refused()
    {
        var e = Assert.Throws<ArgumentException>(() => new TraceSettings { Mode = RoundMode.FedBuff, Pace = true }.Validate());
        Assert.Equal("--pace steers the check-ins of synchronous rounds: use it with --mode sync (FedBuff paces with its concurrency limit).", e.Message);
    }
}
