using FleetLearn.Aggregator;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Model;
using FleetLearn.Core.Rounds;

namespace FleetLearn.Simulation.Tests;

/// <summary>The simulated link on its own (no broker): who vanishes, in which order plaintext uploads leave, when the clock skips.</summary>
public sealed class SimulatedFleetLinkTests : IAsyncDisposable
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(10);
    private static readonly SimulationOptions Options = new()
    {
        Vehicles = 12,
        Cohort = 4,
        Rounds = 1,
        OverSelection = 0.3,
        Behavior = new FleetBehavior(Availability: 0.8, Dropout: 0.1),
        Model = ModelSpec.Parse("4-2"),
        Seed = 3,
    };

    private static readonly int[][] Partitions = [.. Enumerable.Range(0, 12).Select(v => Enumerable.Range(100 * v, 50 + 10 * v).ToArray())];
    private readonly AggregatorStatus _status = new();
    private readonly SkippingClock _clock = new();
    private readonly SimulatedFleetLink _link;
    private readonly RoundForecast _forecast;
    private readonly RoundPlan _plan;

    public SimulatedFleetLinkTests()
    {
        _link = new SimulatedFleetLink(Options, Partitions, _status, _clock, TimeSpan.FromMinutes(10), TimeSpan.FromMinutes(2));
        _forecast = RoundPlanner.Plan(1, Options.Vehicles, v => Partitions[v].Length, new RoundSettings(4, 0.3), Options.Behavior, Options.Seed);
        _plan = new RoundPlan
        {
            Fleet = "sim", Round = 1, ModelVersion = 0, ModelSpec = "4-2", ModelSha256 = "", ModelBytes = 0,
            Cohort = [.. _forecast.Selected.Select(p => MqttFleetSimulation.VehicleName(p.Vehicle))], DeadlineUnixMs = 0, IssuedUnixMs = 0,
        };
    }

    public async ValueTask DisposeAsync()
    {
        await _link.DisposeAsync();
        _status.Dispose();
    }

    private static SendUpdateEffect Upload => new(1, Guid.NewGuid(), [], 0, 1, DateTimeOffset.MaxValue);

    [Fact]
    public async Task ShapeAsync_AVehicleTheModelSilences_NeitherTrainsNorUploads()
    {
        var silent = _forecast.Selected.First(p => p.Outcome != VehicleOutcome.Accepted).Vehicle;
        var train = new TrainEffect(new Checkpoint(ModelSpec.Parse("4-2"), 0, new float[10]));

        var shaped = await _link.ShapeAsync(MqttFleetSimulation.VehicleName(silent), _plan, [train, Upload], CancellationToken.None);

        Assert.Empty(shaped);
    }

    [Fact]
    public async Task ShapeAsync_PlaintextUploads_LeaveInFinishingOrderEachAfterTheOneBeforeWasFolded()
    {
        var accepted = _forecast.Accepted.Select(MqttFleetSimulation.VehicleName).ToArray();
        Assert.True(accepted.Length >= 2, "the seed must accept two vehicles");
        var first = _link.ShapeAsync(accepted[0], _plan, [Upload], CancellationToken.None).AsTask();
        var second = _link.ShapeAsync(accepted[1], _plan, [Upload], CancellationToken.None).AsTask();

        Assert.Single(await first.WaitAsync(Patience));
        _link.Evaluate();
        Assert.False(second.IsCompleted); // nothing folded yet
        _status.ReportPhase(1, "Collecting", 1, 4);
        _link.Evaluate();
        Assert.Single(await second.WaitAsync(Patience));
    }

    /// <summary>
    /// Issue 16: in a sharded round the coordinator folds nothing (its status shows CombiningShards), so waiting for its fold
    /// count held every upload after the first for good. There the turn opens once the updates before it were acknowledged.
    /// </summary>
    [Fact]
    public async Task ShapeAsync_ShardedPlaintextUploads_EachLeavesAfterTheOneBeforeWasAcknowledged()
    {
        var accepted = _forecast.Accepted.Select(MqttFleetSimulation.VehicleName).ToArray();
        Assert.True(accepted.Length >= 3, "the seed must accept three vehicles");
        var sharded = _plan with { Shards = [new PlanShard { Index = 0, Members = [.. Enumerable.Range(0, _plan.Cohort.Count)] }] };
        _status.ReportPhase(1, nameof(CombiningShards), 0, 1); // what the coordinator of a sharded round reports
        var first = _link.ShapeAsync(accepted[0], sharded, [Upload], CancellationToken.None).AsTask();
        var second = _link.ShapeAsync(accepted[1], sharded, [Upload], CancellationToken.None).AsTask();
        var third = _link.ShapeAsync(accepted[2], sharded, [Upload], CancellationToken.None).AsTask();

        Assert.Single(await first.WaitAsync(Patience));
        _link.Evaluate();
        Assert.False(second.IsCompleted); // nothing acknowledged yet
        _link.UpdateAcknowledged(accepted[0], 2); // another round's ack opens nothing
        Assert.False(second.IsCompleted);
        _link.UpdateAcknowledged(accepted[0], 1);
        Assert.Single(await second.WaitAsync(Patience));
        _link.UpdateAcknowledged(accepted[0], 1); // the same vehicle again (a Duplicate's ack) counts once
        Assert.False(third.IsCompleted);
        _link.UpdateAcknowledged(accepted[1], 1);
        Assert.Single(await third.WaitAsync(Patience));
    }

    [Fact]
    public async Task Evaluate_EveryoneWhoWillAnswerHasAnswered_SkipsTheClockToTheDeadlineOnce()
    {
        await _link.ShapeAsync(_plan.Cohort[0], _plan, [], CancellationToken.None); // the round's fates are known once a member joined
        int accepted = _forecast.AcceptedCount;

        _status.ReportPhase(1, "Collecting", accepted - 1, accepted + 1);
        _link.Evaluate();
        Assert.Equal(TimeSpan.Zero, _clock.Skipped); // one accepted update still to come

        _status.ReportPhase(1, "Collecting", accepted, accepted + 1);
        _link.Evaluate();
        _link.Evaluate();
        Assert.Equal(TimeSpan.FromMinutes(10), _clock.Skipped); // the round's deadline, once
    }

    [Fact]
    public void Gate_OpensExactlyWhenTheAvailableVehiclesWithDataHaveCheckedIn()
    {
        var available = Enumerable.Range(0, 12).Where(v => Options.Behavior.IsAvailable(Options.Seed, 2, v)).Select(MqttFleetSimulation.VehicleName).ToArray();
        Assert.InRange(available.Length, 1, 11); // the seed makes someone unavailable in round 2

        Assert.True(_link.Gate(2, available));
        Assert.False(_link.Gate(2, available[1..]));
        Assert.False(_link.Gate(2, [.. Enumerable.Range(0, 12).Select(MqttFleetSimulation.VehicleName)]));
        // The vehicles' state follows the round being gathered.
        foreach (int v in Enumerable.Range(0, 12))
            Assert.Equal(Options.Behavior.IsAvailable(Options.Seed, 2, v), _link.StateOf(v).Current().Parked);
    }
}
