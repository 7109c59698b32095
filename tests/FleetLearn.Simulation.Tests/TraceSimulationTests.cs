using FleetLearn.Compute.Cpu;
using FleetLearn.Core.Model;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Random;
using FleetLearn.Core.Rounds;
using FleetLearn.Core.Training;
using FleetLearn.Simulation.Traces;

namespace FleetLearn.Simulation.Tests;

/// <summary>Sync and FedBuff over availability traces in simulated hours: hand-built traces whose every event is known, and the ledger's view.</summary>
public sealed class TraceSimulationTests
{

    internal static readonly LabeledData Train = SimulationTestData.Blobs(800, 1);
    internal static readonly LabeledData Test = SimulationTestData.Blobs(200, 2);

    /// <summary>
    /// Four vehicles: 0 and 2 eligible 0–5 h, 1 only 0–0.5 h (drops: its 1 h task cannot finish), 3 from 2–5 h. Every update takes
    /// exactly 1 h of compute (no spread) plus a negligible transfer.
    /// </summary>
    private static AvailabilityTrace HandTrace() => TraceCsv.Read(new StringReader("""
        vehicle,start,end,state
        v0,2026-01-05T00:00:00Z,2026-01-05T05:00:00Z,depot
        v1,2026-01-05T00:00:00Z,2026-01-05T00:30:00Z,depot
        v1,2026-01-05T00:30:00Z,2026-01-05T05:00:00Z,drive
        v2,2026-01-05T00:00:00Z,2026-01-05T05:00:00Z,depot
        v3,2026-01-05T00:00:00Z,2026-01-05T02:00:00Z,park
        v3,2026-01-05T02:00:00Z,2026-01-05T05:00:00Z,depot
        """));

    private static SimulationOptions Options(int k, double overSelection = 0, PrivacySettings? privacy = null) => new()
    {
        Vehicles = 4,
        Cohort = k,
        OverSelection = overSelection,
        LocalEpochs = 1,
        Batch = 10,
        Model = ModelSpec.Parse("16-12-4"),
        Seed = 3,
        Workers = 1,
        Target = 1.01,
        Privacy = privacy,
    };

    private static TraceSettings Settings(RoundMode mode, double hours, int? concurrency = null, int? cap = null) => new()
    {
        Mode = mode,
        Hours = hours,
        Concurrency = concurrency,
        MaxParticipations = cap,
        Resources = new VehicleResources(UpdateMinutes: 60, ComputeSpread: 0, MedianMbps: 1e9, BandwidthSpread: 0),
        StopAtTarget = false,
    };

    private static TraceRunResult Run(SimulationOptions options, TraceSettings settings, AvailabilityTrace? trace = null, Action<TraceFleetSimulation>? after = null)
    {
        using var sim = TraceFleetSimulation.Create(options, settings, trace ?? HandTrace(), Train, Test, (spec, batch) => new CpuTrainer(spec, batch));
        var result = sim.Run();
        after?.Invoke(sim);
        return result;
    }

    [Fact]
    public void Sync_HandTrace_DropsSurplusAndRoundsAsComputed()
    {
        // Round 1 at 0 h selects {0, 1, 2}: 1 drops at 0.5 h, 0 and 2 close it at 1 h. Round 2 at 1 h: {0, 2}, closes at 2 h.
        // Round 3 at 2 h: {0, 2, 3} all finish together; the first two by vehicle order count, 3 is surplus.
        var r = Run(Options(k: 2, overSelection: 0.5), Settings(RoundMode.Sync, hours: 3));
        Assert.Equal(3, r.Applied);
        Assert.Equal(0, r.Aborted);
        Assert.Equal(6, r.UsedUpdates);
        Assert.Equal(1, r.WastedUpdates[WasteCause.Dropped]);
        Assert.Equal(1, r.WastedUpdates[WasteCause.Surplus]);
        Assert.Equal(2 / 8.0, r.WastedUpdateFraction);
        Assert.Equal([3, 0, 3, 0], r.Participations);
        Assert.Equal(6, r.ComputeHours.Used, 9);
        Assert.Equal(0.5 + 1, r.ComputeHours.Wasted, 6); // the dropout's half hour and the surplus vehicle's hour
        Assert.Equal(3, r.Points[^1].Version);
    }

    [Fact]
    public void Sync_ParticipationCap_LedgerKnows()
    {
        // Cap 2: after rounds 1 and 2, vehicles 0 and 2 are done and vehicle 3 alone is fewer than K: no third round.
        var options = Options(k: 2, overSelection: 0.5, privacy: new PrivacySettings(NoiseMode.Central, ClipNorm: 10, NoiseMultiplier: 0.5));
        PrivacyLedger? ledger = null;
        var r = Run(options, Settings(RoundMode.Sync, hours: 4, cap: 2), after: s => ledger = s.Ledger);
        Assert.Equal(2, r.Applied);
        Assert.Equal([2, 0, 2, 0], r.Participations);
        Assert.Equal(r.Participations, Enumerable.Range(0, 4).Select(v => ledger!.Get(v.ToString(System.Globalization.CultureInfo.InvariantCulture)).Participations));
        Assert.Equal(BufferedAccountant.EpsilonBound(2, 0.5, 1e-5).Epsilon, r.MaxVehicleEpsilon, 9);
    }

    [Fact]
    public void FedBuff_HandTrace_StepsStalenessAndWaste()
    {
        // Concurrency 3: 0, 1, 2 check in at 0 h on version 0; 1 withdraws at 0.5 h. 0 and 2 arrive at 1 h: step 1; they check
        // in again on version 1 and arrive at 2 h: step 2 — but 3, eligible from 2 h, checked in first, on version 1. At 3 h,
        // 3 arrives with τ = 1, then one of 0 / 2 with τ = 0: step 3; the other arrives with τ = 1 and waits in the buffer.
        var r = Run(Options(k: 2), Settings(RoundMode.FedBuff, hours: 3.2, concurrency: 3));
        Assert.Equal(3, r.Applied);
        Assert.Equal(6, r.UsedUpdates);
        Assert.Equal(1, r.WastedUpdates[WasteCause.Dropped]);
        Assert.Equal(1 / 7.0, r.WastedUpdateFraction);
        Assert.Equal(new Dictionary<long, long> { [0] = 5, [1] = 2 }, r.Staleness);
        Assert.Equal(0, r.Participations[1]);
        Assert.Equal(1, r.Participations[3]);
        Assert.Equal(5, r.Participations[0] + r.Participations[2]);
        Assert.Equal(0.5, r.ComputeHours.Wasted, 6);
    }

    [Fact]
    public void FedBuff_SameSeedSameModel_DpCapHeldAndInTheLedger()
    {
        var trace = VehicleDayModel.Parse("mixed").Generate(60, 30, 3);
        var options = Options(k: 4, privacy: new PrivacySettings(NoiseMode.Central, ClipNorm: 10, NoiseMultiplier: 0.5)) with { Vehicles = 60 };
        var settings = Settings(RoundMode.FedBuff, hours: 30, concurrency: 8, cap: 3) with { Resources = new VehicleResources(UpdateMinutes: 20) };
        string? hashA = null, hashB = null;
        PrivacyLedger? ledger = null;
        var a = Run(options, settings, trace, s => { hashA = Checkpoint.ParameterHash(s.GlobalModel); ledger = s.Ledger; });
        var b = Run(options, settings, trace, s => hashB = Checkpoint.ParameterHash(s.GlobalModel));
        Assert.Equal(hashA, hashB);
        Assert.Equal(a.Points, b.Points);
        Assert.True(a.Applied > 5, $"only {a.Applied} steps");
        Assert.InRange(a.Participations.Max(), 1, 3);
        // The ledger counts one record per contribution to a released step (plus any pending in the last, unreleased buffer: none charged).
        for (int v = 0; v < 60; v++) Assert.Equal(a.Participations[v], ledger!.Get(v.ToString(System.Globalization.CultureInfo.InvariantCulture)).Participations);
        Assert.True(a.MaxVehicleEpsilon <= BufferedAccountant.EpsilonBound(3, 0.5, 1e-5).Epsilon + 1e-9);
    }

    [Fact]
    public void HoursPastTheTrace_Refused()
    {
        var e = Assert.Throws<ArgumentException>(() => Run(Options(k: 2), Settings(RoundMode.Sync, hours: 6)));
        Assert.Equal("--hours 6 exceeds the trace's 5 hours.", e.Message);
    }
}
