using FleetLearn.Core.Model;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Rounds;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Core.Tests.Rounds;

/// <summary>A vehicle's deadline is the plan's duration measured from its arrival on the vehicle's monotonic clock: a wall clock ±10 minutes off moves nothing.</summary>
public sealed class ClockSkewTests
{
    private static readonly ModelSpec Spec = ModelSpec.Parse("4-2");
    private static readonly TimeSpan RoundTime = TimeSpan.FromMinutes(5);
    private readonly ManualTimeProvider _aggregator = new(); // real time; the vehicle's monotonic clock runs at its rate

    /// <summary>A vehicle's clocks: monotonic time as real time, a wall clock <see cref="Offset"/> away from the aggregator's.</summary>
    private sealed class VehicleClock(ManualTimeProvider real) : TimeProvider
    {
        public TimeSpan Offset { get; set; }

        public override DateTimeOffset GetUtcNow() => real.GetUtcNow() + Offset;

        public override long GetTimestamp() => real.GetTimestamp();

        public override long TimestampFrequency => real.TimestampFrequency;
    }

    private RoundPlan Plan() => new()
    {
        Fleet = "test",
        Round = 1,
        ModelVersion = 0,
        ModelSpec = Spec.ToString(),
        ModelSha256 = new string('0', 64),
        ModelBytes = 1,
        Cohort = ["car-0"],
        DeadlineUnixMs = (_aggregator.GetUtcNow() + RoundTime).ToUnixTimeMilliseconds(),
        IssuedUnixMs = _aggregator.GetUtcNow().ToUnixTimeMilliseconds(),
    };

    private static VehicleRound JoinOn(RoundPlan plan, TimeProvider clock, TimeSpan? remaining) =>
        Assert.IsType<Joined>(VehicleRound.Join(plan, "plan"u8.ToArray(), new VehicleProfile { VehicleId = "car-0", Pinned = Spec }, 0, null,
            r => new VehicleRoundRandomness(new SeededNoiseSource(1), new SeededNoiseSource(2), Guid.NewGuid()), clock, remaining)).Round;

    private static Checkpoint Model() => new(Spec, 0, new float[Spec.ParameterCount]);

    [Fact]
    public void VehicleClockTenMinutesFast_DurationFromArrival_TrainsAndSendsWithTheTimeLeft()
    {
        var plan = Plan();
        var vehicle = new VehicleClock(_aggregator) { Offset = TimeSpan.FromMinutes(10) };
        using var round = JoinOn(plan, vehicle, PlanTiming.Remaining(plan, deliveredExpiry: null));
        _aggregator.Advance(TimeSpan.FromMinutes(1));

        Assert.IsType<TrainEffect>(Assert.Single(round.OnModel(Model())));
        var send = Assert.IsType<SendUpdateEffect>(round.OnTrained(new float[Spec.ParameterCount], 0.5, 10, 1)[0]);
        Assert.Equal(TimeSpan.FromMinutes(4), round.TimeLeft);
        Assert.Equal(vehicle.GetUtcNow() + TimeSpan.FromMinutes(4), send.Expires); // the outbox expiry, on the vehicle's own clock

        // Before: the plan's absolute deadline on a clock 10 minutes fast had passed already, and the vehicle never contributed.
        using var absolute = JoinOn(Plan(), vehicle, remaining: null);
        Assert.Equal("the deadline passed before the model arrived", Assert.IsType<Abandoned>(Assert.IsType<FinishedEffect>(Assert.Single(absolute.OnModel(Model()))).Final).Reason);
    }

    [Fact]
    public void VehicleClockTenMinutesSlow_RoundEndsAfterItsDuration_NotTenMinutesLater()
    {
        var plan = Plan();
        var vehicle = new VehicleClock(_aggregator) { Offset = TimeSpan.FromMinutes(-10) };
        using var round = JoinOn(plan, vehicle, PlanTiming.Remaining(plan, deliveredExpiry: null));
        _aggregator.Advance(RoundTime);
        // Before, this vehicle trained and sent an update the aggregator could only refuse as late (its ε spent for nothing).
        Assert.Equal("the deadline passed before the model arrived", Assert.IsType<Abandoned>(Assert.IsType<FinishedEffect>(Assert.Single(round.OnModel(Model()))).Final).Reason);
    }

    [Fact]
    public void WallClockSetMidRound_DeadlineDoesNotMove()
    {
        var plan = Plan();
        var vehicle = new VehicleClock(_aggregator);
        using var round = JoinOn(plan, vehicle, PlanTiming.Remaining(plan, null));
        vehicle.Offset = TimeSpan.FromHours(1); // NTP corrects the clock an hour forward mid-round
        _aggregator.Advance(TimeSpan.FromMinutes(2));
        Assert.Equal(TimeSpan.FromMinutes(3), round.TimeLeft);
        Assert.IsType<TrainEffect>(Assert.Single(round.OnModel(Model())));
    }

    [Fact]
    public void Remaining_IsTheDurationCappedByTheExpiryTheBrokerDelivered()
    {
        var plan = Plan();
        Assert.Equal(RoundTime, PlanTiming.Duration(plan));
        Assert.Equal(RoundTime, PlanTiming.Remaining(plan, null));
        Assert.Equal(TimeSpan.FromSeconds(90), PlanTiming.Remaining(plan, TimeSpan.FromSeconds(90))); // a retained plan that waited 3.5 minutes
        Assert.Equal(RoundTime, PlanTiming.Remaining(plan, TimeSpan.FromHours(1))); // never more than the plan allows
        Assert.Equal(TimeSpan.FromMinutes(10), PlanTiming.Skew(_aggregator.GetUtcNow() + TimeSpan.FromMinutes(10), _aggregator.GetUtcNow()));
    }
}
