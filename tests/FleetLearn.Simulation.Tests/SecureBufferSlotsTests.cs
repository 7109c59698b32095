using FleetLearn.Compute.Cpu;
using FleetLearn.Core.Compression;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Rounds;
using FleetLearn.Simulation.Traces;
using static FleetLearn.Simulation.Tests.SecureTraceSimulationTests;

namespace FleetLearn.Simulation.Tests;

/// <summary>
/// Secure FedBuff's concurrency counts only vehicles still training (<see cref="SecureGroupFormation{TVehicle}"/>, integrated by <see cref="SecureGroupSlots"/>): a member frees its slot when
/// its masked input is uploaded or it drops, and stays out of every other group until its own closes.
/// </summary>
public sealed class SecureBufferSlotsTests
{
    [Fact]
    public void Slots_IntegrateTheFormationsCounts_TrainingAndWaitingHours()
    {
        var t0 = DateTimeOffset.UnixEpoch;
        var formation = new SecureGroupFormation<int>(new SecureGroupRules { GroupSize = 3, Concurrency = 4 });
        var slots = new SecureGroupSlots(formation);
        formation.CheckIn(0, 0, t0);
        formation.CheckIn(1, 0, t0);
        Assert.NotNull(formation.CheckIn(2, 0, t0).Formed); // formed: all three train
        slots.Until(1);
        formation.StopTraining(0); // 0 sent its masked input: its slot is free, it stays in its group
        slots.Until(1.5);
        formation.Leave(1); // 1 dropped while training
        formation.Leave(2);
        formation.Leave(0); // the group closed
        slots.Until(2);
        slots.Until(1); // never backwards
        Assert.Equal(3 * 1 + 2 * 0.5, slots.TrainingHours, 12);
        Assert.Equal(1 * 0.5, slots.WaitingHours, 12);
        Assert.Equal(3, formation.PeakHeld);
    }

    [Fact]
    public void FedBuff_SlotFreedAtMaskedInput_NextGroupFormsWhileTheFirstUnmasks_FromOthers()
    {
        // Six vehicles always eligible, K = 3, concurrency 3, 1 h updates. Group 1 forms at 0 h; its members upload their masked
        // inputs at 1 h and free their slots, but stay in group 1 until its unmasking ends half a second later: group 2 forms at
        // 1 h of the three others, on version 0, and is applied with τ = 1. At 2 h group 2's members free their slots and group
        // 1's members (released at 1 h + 0.5 s) form group 3 on version 1. (Were slots held to the group's close, group 2 would
        // draw from all six at 1 h + 0.5 s, on version 1.)
        var (r, _, _) = Run(Options(6, 3, 0, CodecSpec.Parse("none"), SecureAggregationMode.Full), Settings(RoundMode.FedBuff, 2.25, concurrency: 3), Trace(6, dropper: false));
        Assert.Equal(2, r.Applied);
        Assert.Equal(new Dictionary<long, long> { [0] = 3, [1] = 3 }, r.Staleness);
        Assert.Equal([1, 1, 1, 1, 1, 1], r.Participations); // group 2 is the three who were not in group 1
        Assert.InRange(r.Points.First(p => p.Version == 1).Hours, 1, 1.001);
        Assert.InRange(r.Points.First(p => p.Version == 2).Hours, 2, 2.001);
        var stats = r.Secure!;
        Assert.Equal(3, stats.Groups);
        Assert.Equal(6, stats.PeakHeld); // at 1 h: three waiting for group 1's unmasking, three training in group 2
        Assert.Equal(3, stats.MeanTraining!.Value, 6); // never fewer than the concurrency training
        // Waiting: each member of groups 1 and 2 from its masked input's upload to its group's close (unmasking, one round trip).
        Assert.InRange(stats.MeanWaiting!.Value * 2.25, 6 * TraceFleetSimulation.RoundTripSeconds / 3600, 6 * 1.01 * TraceFleetSimulation.RoundTripSeconds / 3600);
    }

    [Fact]
    public void FedBuff_CapCountsChargedGroups_AStaleGroupsMembersAreNotDrawnAgain()
    {
        // As in the test above, with central DP (σ = 1), a cap of 1 and maximum staleness 0: group 1 {0, 1, 2} is applied at
        // 1 h; group 2 of the others, on version 0, has its noised sum released (charged) at 2 h but is refused as stale (τ = 1).
        // Its members made no contribution to a step, yet the ledger charged them once: the cap must keep them out of group 3,
        // so no vehicle is charged twice and none forms a group after 2 h.
        var dp = new PrivacySettings(NoiseMode.Central, ClipNorm: 1, NoiseMultiplier: 1);
        var settings = Settings(RoundMode.FedBuff, 4.25, concurrency: 3) with { MaxStaleness = 0, MaxParticipations = 1 };
        using var sim = TraceFleetSimulation.Create(Options(6, 3, 0, CodecSpec.Parse("none"), SecureAggregationMode.Full, dp), settings, Trace(6, dropper: false),
            TraceSimulationTests.Train, TraceSimulationTests.Test, (spec, batch) => new CpuTrainer(spec, batch));
        var r = sim.Run();
        Assert.Equal(1, r.Applied);
        Assert.Equal([1, 1, 1, 0, 0, 0], r.Participations.Order().Reverse().ToArray());
        Assert.Equal(3, r.WastedUpdates[WasteCause.Stale]);
        Assert.Equal(2, r.Secure!.Groups);
        Assert.All(sim.Ledger!.Vehicles, v => Assert.Equal(1, v.Participations));
        Assert.Equal(6, sim.Ledger.Vehicles.Count());
    }

    [Fact]
    public void FedBuff_GroupFormed_TrainsOnTheVersionAtFormation_NotAtItsFirstCheckIn()
    {
        // K = 3, 1 h updates, one contribution per vehicle. v0–v2 form group 1 at 0 h (version 0), applied at 1 h. v3 is eligible from 0.5 h,
        // v4 and v5 from 1.2 h. Fixed at the first check-in, group 2 is on version 0 (v3 joined at 0.5 h) and lands at 2.2 h with
        // τ = 1. Fixed when formed, v3 waits (training nothing) until v4 and v5 check in at 1.2 h, and all three train on version 1:
        // the same hour, τ = 0.
        var trace = TraceCsv.Read(new StringReader("vehicle,start,end,state\n" + string.Join("\n", Enumerable.Range(0, 6).Select(v =>
            $"v{v},2026-01-05T{(v < 3 ? "00:00" : v == 3 ? "00:30" : "01:12")}:00Z,2026-01-05T05:00:00Z,depot"))));
        var settings = Settings(RoundMode.FedBuff, 3, concurrency: 6) with { MaxParticipations = 1 };
        var (first, _, _) = Run(Options(6, 3, 0, CodecSpec.Parse("none"), SecureAggregationMode.Full), settings with { GroupVersion = GroupVersion.FirstCheckIn }, trace);
        var (formed, _, _) = Run(Options(6, 3, 0, CodecSpec.Parse("none"), SecureAggregationMode.Full), settings, trace);
        Assert.Equal(GroupVersion.Formed, settings.GroupVersion); // the default
        Assert.Equal(new Dictionary<long, long> { [0] = 3, [1] = 3 }, first.Staleness);
        Assert.Equal(new Dictionary<long, long> { [0] = 6 }, formed.Staleness);
        foreach (var r in new[] { first, formed })
        {
            Assert.Equal(2, r.Applied);
            Assert.Equal([1, 1, 1, 1, 1, 1], r.Participations);
            Assert.InRange(r.Points.First(p => p.Version == 2).Hours, 2.2, 2.201);
        }
        // v3 trained 1 h either way; it waited 0.7 h holding nothing when the group is fixed at formation.
        Assert.Equal(first.ComputeHours.Used, formed.ComputeHours.Used, 9);
    }

    [Fact]
    public void FedBuff_WaitingMemberWhoseWindowCloses_WithdrawsWithoutWaste()
    {
        // As below, with the group fixed when formed: v0, v1, v2 check in at 0 h and wait (they hold the concurrency of 3, not a
        // model); v0's window closes at 0.25 h and it leaves the forming group, wasting nothing; v3 checks in at 0.3 h. The group
        // of 4 never fills, so it starts after the 0.5 h formation window with v1, v2, v3 on version 0: the step lands at 1.5 h.
        var (r, _, _) = Run(Options(4, 3, 0.3, CodecSpec.Parse("none"), SecureAggregationMode.Full), Settings(RoundMode.FedBuff, 2, concurrency: 3), ClosingTrace());
        Assert.Equal(1, r.Applied);
        Assert.Equal([0, 1, 1, 1], r.Participations);
        Assert.Equal(0, r.WastedUpdates.Values.Sum());
        Assert.InRange(r.Points.First(p => p.Version == 1).Hours, 1.5, 1.501);
        Assert.Equal(1, r.Secure!.Groups);
        Assert.Empty(r.Secure.DroppedIn);
    }

    private static AvailabilityTrace ClosingTrace() => TraceCsv.Read(new StringReader("""
        vehicle,start,end,state
        v0,2026-01-05T00:00:00Z,2026-01-05T00:15:00Z,depot
        v0,2026-01-05T00:15:00Z,2026-01-05T05:00:00Z,drive
        v1,2026-01-05T00:00:00Z,2026-01-05T05:00:00Z,depot
        v2,2026-01-05T00:00:00Z,2026-01-05T05:00:00Z,depot
        v3,2026-01-05T00:00:00Z,2026-01-05T00:18:00Z,drive
        v3,2026-01-05T00:18:00Z,2026-01-05T05:00:00Z,depot
        """));

    [Fact]
    public void FedBuff_FormingMemberWhoseWindowCloses_FreesItsSlotAtOnce()
    {
        // Fixed at the first check-in (members train from their own check-in). K = 3 with 30% over-selection: a group of 4. Concurrency 3. v0 is eligible 0–0.25 h, v1 and v2 0–5 h, v3 from 0.3 h.
        // At 0 h v0, v1, v2 join the forming group; v0's window closes at 0.25 h and its slot is free at once, so v3 is drawn
        // when its window opens at 0.3 h and the group starts with four (v0 drops at AdvertiseKeys). v1, v2, v3 are the sum,
        // applied one hour after v3 joined. (Had v0 held its slot, the group would have started at 0.5 h with v0, v1, v2.)
        var settings = Settings(RoundMode.FedBuff, 1.5, concurrency: 3) with { GroupVersion = GroupVersion.FirstCheckIn };
        var (r, _, _) = Run(Options(4, 3, 0.3, CodecSpec.Parse("none"), SecureAggregationMode.Full), settings, ClosingTrace());
        Assert.Equal(1, r.Applied);
        Assert.Equal([0, 1, 1, 1], r.Participations);
        Assert.Equal(1, r.WastedUpdates[WasteCause.Dropped]);
        Assert.InRange(r.Points.First(p => p.Version == 1).Hours, 1.3, 1.301);
        Assert.Equal(1, r.Secure!.Groups);
        Assert.Equal(new Dictionary<string, long> { ["AdvertiseKeys"] = 1 }, r.Secure.DroppedIn);
    }
}
