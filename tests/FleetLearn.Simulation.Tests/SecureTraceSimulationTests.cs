using FleetLearn.Compute.Cpu;
using FleetLearn.Core.Compression;
using FleetLearn.Core.Model;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Rounds;
using FleetLearn.Simulation.Traces;

namespace FleetLearn.Simulation.Tests;

/// <summary>Secure aggregation over availability traces: sync rounds and FedBuff groups against plaintext runs of the same trace.</summary>
public sealed class SecureTraceSimulationTests
{
    /// <summary>Vehicles eligible 0–5 h; with <paramref name="dropper"/>, 1 only 0–0.5 h (its 1 h task cannot finish: it drops).</summary>
    internal static AvailabilityTrace Trace(int vehicles = 4, bool dropper = true) => TraceCsv.Read(new StringReader("vehicle,start,end,state\n" + string.Join("\n",
        Enumerable.Range(0, vehicles).Select(v => v == 1 && dropper
            ? "v1,2026-01-05T00:00:00Z,2026-01-05T00:30:00Z,depot\nv1,2026-01-05T00:30:00Z,2026-01-05T05:00:00Z,drive"
            : $"v{v},2026-01-05T00:00:00Z,2026-01-05T05:00:00Z,depot"))));

    internal static SimulationOptions Options(int vehicles, int k, double overSelection, CodecSpec codec, SecureAggregationMode secure, PrivacySettings? privacy = null) => new()
    {
        Vehicles = vehicles,
        Cohort = k,
        OverSelection = overSelection,
        LocalEpochs = 1,
        Batch = 10,
        Model = ModelSpec.Parse("16-12-4"),
        Seed = 3,
        Workers = 1,
        Target = 1.01,
        Codec = codec,
        NormBound = privacy is null ? 5 : null,
        SecureAggregation = secure,
        SecAggNeighbors = secure == SecureAggregationMode.Plus ? 2 : null,
        Privacy = privacy,
    };

    internal static TraceSettings Settings(RoundMode mode, double hours, int? concurrency = null) => new()
    {
        Mode = mode,
        Hours = hours,
        Concurrency = concurrency,
        Resources = new VehicleResources(UpdateMinutes: 60, ComputeSpread: 0, MedianMbps: 1e9, BandwidthSpread: 0),
        StopAtTarget = false,
    };

    internal static (TraceRunResult Result, float[] Model, double Step) Run(SimulationOptions options, TraceSettings settings, AvailabilityTrace trace)
    {
        using var sim = TraceFleetSimulation.Create(options, settings, trace, TraceSimulationTests.Train, TraceSimulationTests.Test, (spec, batch) => new CpuTrainer(spec, batch));
        var result = sim.Run();
        var codec = sim.Pipeline.ForRound(1, 1, 5);
        return (result, sim.GlobalModel.ToArray(), codec.StepFor(codec.SharedRangeValue));
    }

    [Fact]
    public void Sync_SecAggPlusVersusPlaintext_SameContributionsAndSums()
    {
        // Round 1 at 0 h selects all four (K = 3, 30% over-selection); 1 shares its keys, then its window closes at 0.5 h before
        // its masked input: its masks are rebuilt from shares and 0, 2, 3 are the sum, as in the plaintext round. Rounds 2–4:
        // {0, 2, 3}. The same updates (numbered in finishing order, the same seeds) on the same quantization grid: the integer
        // sums are the same, so the models differ only by the decode's float rounding.
        var trace = Trace();
        var plain = Run(Options(4, 3, 0.3, CodecSpec.Parse("rot+q8+shared"), SecureAggregationMode.Off), Settings(RoundMode.Sync, 3.5), trace);
        var secure = Run(Options(4, 3, 0.3, CodecSpec.Parse("rot+q8"), SecureAggregationMode.Plus), Settings(RoundMode.Sync, 3.5), trace);
        Assert.Equal(4, plain.Result.Applied);
        Assert.Equal(plain.Result.Applied, secure.Result.Applied);
        Assert.Equal([4, 0, 4, 4], plain.Result.Participations);
        Assert.Equal(plain.Result.Participations, secure.Result.Participations);
        Assert.Equal(plain.Result.WastedUpdates, secure.Result.WastedUpdates);
        Assert.Equal(plain.Result.ComputeHours.Wasted, secure.Result.ComputeHours.Wasted, 6);
        double maxDiff = plain.Model.Zip(secure.Model).Max(p => Math.Abs(p.First - p.Second));
        Assert.True(maxDiff <= plain.Step, $"max |w_secure − w_plain| = {maxDiff}, one step = {plain.Step}");
        Assert.Null(plain.Result.Secure);
        var stats = secure.Result.Secure!;
        Assert.Equal(4, stats.Groups);
        Assert.Equal(1, stats.MasksRebuilt);
        Assert.Equal(new Dictionary<string, long> { ["MaskedInputCollection"] = 1 }, stats.DroppedIn);
        // Each secure round costs its key phases and its unmasking on top of the hour of training: two and one round trips.
        Assert.InRange(stats.KeyPhaseHours, 4 * 2 * TraceFleetSimulation.RoundTripSeconds / 3600, 4 * 2.01 * TraceFleetSimulation.RoundTripSeconds / 3600);
        Assert.InRange(stats.UnmaskPhaseHours, 4 * TraceFleetSimulation.RoundTripSeconds / 3600, 4 * 1.01 * TraceFleetSimulation.RoundTripSeconds / 3600);
        Assert.True(secure.Result.Points[^1].Hours > plain.Result.Points[^1].Hours);
    }

    [Fact]
    public void FedBuff_SecureGroups_OverlapAndApplyWithTheGroupsStaleness()
    {
        // Six vehicles always eligible, K = 3, concurrency 6: two groups form at 0 h on version 0 and both complete at 1 h plus
        // the protocol's round trips; the first is applied fresh, the second with τ = 1. Their members then form two groups on
        // version 2 (at 1.5 h: not complete yet).
        var (r, _, _) = Run(Options(6, 3, 0, CodecSpec.Parse("none"), SecureAggregationMode.Full), Settings(RoundMode.FedBuff, 1.5, concurrency: 6), Trace(6, dropper: false));
        Assert.Equal(2, r.Applied);
        Assert.Equal(new Dictionary<long, long> { [0] = 3, [1] = 3 }, r.Staleness);
        Assert.Equal(6, r.UsedUpdates);
        Assert.Equal(0, r.WastedUpdates.Values.Sum());
        Assert.Equal([1, 1, 1, 1, 1, 1], r.Participations);
        Assert.Equal(4, r.Secure!.Groups);
    }

    [Fact]
    public void Sync_SecAggDistributedDp_ReleasedAndChargedAtTheSharesSigmaEquivalent()
    {
        // The noise shares are sized for 3 (K, the default minimum under distributed DP): each round releases 3 survivors' sum, and
        // the charge is the σ equivalent of the discrete Gaussian shares, below σ = 1 — so each vehicle's ε exceeds four fresh
        // Gaussian contributions at σ = 1.
        var dp = new PrivacySettings(NoiseMode.Distributed, ClipNorm: 1, NoiseMultiplier: 1);
        var (r, _, _) = Run(Options(4, 3, 0.3, CodecSpec.Parse("rot+q8"), SecureAggregationMode.Full, dp), Settings(RoundMode.Sync, 3.5), Trace());
        Assert.Equal(4, r.Applied);
        Assert.Equal([4, 0, 4, 4], r.Participations);
        Assert.True(r.MaxVehicleEpsilon > BufferedAccountant.EpsilonBound(4, 1, 1e-5).Epsilon, $"ε = {r.MaxVehicleEpsilon}");
    }

    [Fact]
    public void DistributedDpWithoutSecAgg_Refused()
    {
        var dp = new PrivacySettings(NoiseMode.Distributed, ClipNorm: 1, NoiseMultiplier: 1);
        var e = Assert.Throws<ArgumentException>(() => Run(Options(4, 3, 0.3, CodecSpec.Parse("rot+q8"), SecureAggregationMode.Off, dp), Settings(RoundMode.Sync, 3.5), Trace()));
        Assert.Equal("--trace runs support --dp central with a fixed --clip, and --dp distributed with --secagg (each secure group's size is fixed before its members add their noise shares).", e.Message);
    }

    [Fact]
    public void FedBuff_SecureGroupShortOfMembers_StartsAfterTheFormationWindow()
    {
        // Three vehicles, K = 3 with 30% over-selection: a group wants 4 members and never gets them; after 0.5 h it starts with
        // the 3 it has (enough for SecAgg and for the noise shares, sized for K = 3). Fixed at the first check-in, they have been
        // training since they joined at 0 h, so their masked inputs leave at 1 h and the step lands one round trip later; fixed
        // when formed (the default), they waited and start training at 0.5 h: the step lands at 1.5 h.
        var dp = new PrivacySettings(NoiseMode.Distributed, ClipNorm: 1, NoiseMultiplier: 1);
        var settings = Settings(RoundMode.FedBuff, 2, concurrency: 8);
        var (first, _, _) = Run(Options(3, 3, 0.3, CodecSpec.Parse("rot+q8"), SecureAggregationMode.Full, dp), settings with { GroupVersion = GroupVersion.FirstCheckIn }, Trace(3, dropper: false));
        var (formed, _, _) = Run(Options(3, 3, 0.3, CodecSpec.Parse("rot+q8"), SecureAggregationMode.Full, dp), settings, Trace(3, dropper: false));
        Assert.Equal(0.5, SecureBufferGroups.FormationHours);
        foreach (var r in new[] { first, formed })
        {
            Assert.Equal(1, r.Applied);
            Assert.Equal([1, 1, 1], r.Participations);
        }
        Assert.InRange(first.Points.First(p => p.Version == 1).Hours, 1, 1.001);
        Assert.InRange(formed.Points.First(p => p.Version == 1).Hours, 1.5, 1.501);
    }

    [Fact]
    public void Sync_SecAggDeadlineBeforeTraining_PhaseClosesAtTheDeadline()
    {
        // --deadline 1800 s bounds each phase: 1 h updates miss the masked-input phase, which closes 0.5 h after it opened with no
        // input — not when the members' windows close at 0.75 h — and the round is aborted.
        var trace = TraceCsv.Read(new StringReader("vehicle,start,end,state\n" + string.Join("\n", Enumerable.Range(0, 4).Select(v =>
            $"v{v},2026-01-05T00:00:00Z,2026-01-05T00:45:00Z,depot\nv{v},2026-01-05T00:45:00Z,2026-01-05T05:00:00Z,drive"))));
        var options = Options(4, 3, 0, CodecSpec.Parse("rot+q8"), SecureAggregationMode.Full) with { DeadlineSeconds = 1800 };
        var (r, _, _) = Run(options, Settings(RoundMode.Sync, 0.5), trace); // one round (a second, from 0.5 h, would end with the windows)
        Assert.Equal(0, r.Applied);
        Assert.Equal(1, r.Aborted);
        var stats = r.Secure!;
        Assert.Equal(0.5, stats.InputPhaseHours / stats.Groups, 6);
        Assert.Equal(3 * stats.Groups, stats.DroppedIn["MaskedInputCollection"]);
    }
}
