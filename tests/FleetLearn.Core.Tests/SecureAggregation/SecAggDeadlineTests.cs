using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Core.Tests.SecureAggregation;

public sealed class SecAggDeadlineTests
{
    [Fact]
    public void Tick_BeforeDeadline_KeepsPhaseOpen()
    {
        using var round = new RoundDriver(n: 4, dim: 2);
        foreach (var v in round.Vehicles.Take(3)) round.Send(v.Start());

        round.Clock.Advance(round.Parameters.PhaseTimeout - TimeSpan.FromTicks(1));
        var step = round.Server.Tick();

        Assert.Empty(step.Outbox);
        Assert.Equal(SecAggServerPhase.AdvertiseKeys, round.Server.Phase);
    }

    [Fact]
    public void Tick_AtDeadline_ClosesPhaseWithThoseWhoAnswered()
    {
        using var round = new RoundDriver(n: 4, dim: 2);
        foreach (var v in round.Vehicles.Take(3)) round.Send(v.Start());

        round.Clock.Advance(round.Parameters.PhaseTimeout);
        var step = round.Server.Tick();

        Assert.Equal(SecAggServerPhase.ShareKeys, round.Server.Phase);
        Assert.Equal([0, 1, 2], step.Outbox.Select(m => m.VehicleId).ToArray());
        Assert.All(step.Outbox, m => Assert.Equal(3, ((KeyDirectoryMessage)m).Entries.Length));
    }

    [Fact]
    public void Receive_AfterDeadlineWithoutTick_ClosesPhaseAndRejectsTheLateMessage()
    {
        using var round = new RoundDriver(n: 4, dim: 2);
        foreach (var v in round.Vehicles.Take(3)) round.Send(v.Start());
        var late = round.Vehicles[3].Start();

        round.Clock.Advance(round.Parameters.PhaseTimeout);
        var step = round.Server.Receive(late);

        Assert.Equal("AdvertiseKeys from vehicle 3 arrived in phase ShareKeys; phase AdvertiseKeys is closed.", step.Rejection);
        Assert.Equal(3, step.Outbox.Count);
    }

    [Fact]
    public void CheckDeadline_VehicleWaitsTooLong_AbortsWithReason()
    {
        using var round = new RoundDriver(n: 4, dim: 2);
        var vehicle = round.Vehicles[0];
        vehicle.Start();
        var deadline = vehicle.Deadline!.Value;

        Assert.False(vehicle.CheckDeadline());
        round.Clock.Advance(round.Parameters.EffectiveVehicleTimeout);

        Assert.True(vehicle.CheckDeadline());
        Assert.Equal(SecAggVehiclePhase.Aborted, vehicle.Phase);
        Assert.Equal($"Vehicle 0 timed out in phase AwaitingKeyDirectory of round 7: no message from the server by {deadline:O}.", vehicle.AbortReason);
    }

    [Fact]
    public void HandleKeyDirectory_WrongPhase_RefusedWithoutAborting()
    {
        using var round = new RoundDriver(n: 4, dim: 2);
        var directory = new KeyDirectoryMessage(RoundDriver.Round, 0, []);

        var e = Assert.Throws<SecAggProtocolException>(() => round.Vehicles[0].HandleKeyDirectory(directory));

        Assert.Equal("Vehicle 0 got an unexpected KeyDirectory message in phase Created.", e.Message);
        Assert.False(e.Aborted);
        Assert.Equal(SecAggVehiclePhase.Created, round.Vehicles[0].Phase);
    }
}
