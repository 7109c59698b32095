using System.Text;
using CsCheck;
using FleetLearn.Core.Rounds;
using FleetLearn.Storage;
using FleetLearn.Transport.Mqtt;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace FleetLearn.Aggregator.Tests;

/// <summary>The status's fleet view: evaluation reports, phase progress, per-round traffic, vehicles, and the round-progress health check.</summary>
// Every AggregatorStatus creates the meter "FleetLearn.Aggregator", and an OpenTelemetry MeterProvider subscribes by name:
// status objects of tests running in parallel would be read by each other's /metrics (one aggregator per process is the product's shape).
[Collection("Aggregator meter")]
public sealed class AggregatorStatusFleetTests
{
    private static readonly DateTimeOffset Start = DateTimeOffset.UnixEpoch.AddDays(20_000);

    [Fact]
    public void RecordEvaluation_ValidReport_RoundTripsAndResendReplaces()
    {
        using var status = new AggregatorStatus();
        status.RecordEvaluation("car-0", """{"vehicle":"car-0","model_version":3,"count":50,"accuracy":0.5,"noised":false}"""u8);
        status.RecordEvaluation("car-0", """{"vehicle":"car-0","model_version":3,"count":50,"accuracy":0.7,"noised":false}"""u8);
        var point = Assert.Single(status.Accuracy);
        Assert.Equal((3L, 1, 0.7), (point.ModelVersion, point.Reports, point.Accuracy));
        Assert.Equal(0.7, Assert.Single(status.Vehicles).LastEvaluation!.Accuracy);
    }

    [Theory]
    [InlineData("""{"vehicle":"car-9","model_version":1,"count":5,"accuracy":0.5}""", RejectReasons.NotInCohort)]
    [InlineData("""{"vehicle":"car-0","model_version":1,"count":5,"accuracy":1.5}""", RejectReasons.Malformed)]
    [InlineData("""{"vehicle":"car-0","model_version":1,"count":0,"accuracy":0.5}""", RejectReasons.Malformed)]
    [InlineData("""{"vehicle":"car-0","model_version":1,"count":5}""", RejectReasons.Malformed)]
    [InlineData("""{"vehicle":"car-0","model_version":1,"count":5,"accuracy":0.5} x""", RejectReasons.Malformed)]
    [InlineData("""[1,2]""", RejectReasons.Malformed)]
    [InlineData("""{"vehicle":"car-0","model_version":-1,"count":5,"accuracy":0.5}""", RejectReasons.Malformed)]
    public void RecordEvaluation_BadReport_RejectedWithReason(string report, string reason)
    {
        using var status = new AggregatorStatus();
        var error = Assert.Throws<WireFormatException>(() => status.RecordEvaluation("car-0", Encoding.UTF8.GetBytes(report)));
        Assert.Equal(reason, error.Reason);
        Assert.Contains("car-0", error.Message, StringComparison.Ordinal);
        Assert.Empty(status.Accuracy);
    }

    [Fact]
    public void RecordEvaluation_Oversized_Rejected()
    {
        using var status = new AggregatorStatus();
        var big = Encoding.UTF8.GetBytes("{\"vehicle\":\"car-0\",\"pad\":\"" + new string('x', 2000) + "\"}");
        Assert.Equal(RejectReasons.Oversized, Assert.Throws<WireFormatException>(() => status.RecordEvaluation("car-0", big)).Reason);
    }

    [Fact]
    public void RecordEvaluation_NoisedOutsideUnitInterval_Kept()
    {
        using var status = new AggregatorStatus();
        status.RecordEvaluation("car-0", """{"vehicle":"car-0","model_version":1,"count":5,"accuracy":1.08,"noised":true}"""u8);
        Assert.Equal(1, Assert.Single(status.Accuracy).NoisedReports);
    }

    [Fact]
    public void ParseEvaluation_AnyBytes_ParsesOrThrowsWireFormatOnly()
    {
        Gen.Byte.Array[0, 300].Sample(bytes =>
        {
            try
            {
                var e = AggregatorStatus.ParseEvaluation("car-0", bytes, Start);
                Assert.True(e.Count >= 1 && double.IsFinite(e.Accuracy));
            }
            catch (WireFormatException)
            {
            }
        });
        // Valid reports of any values round-trip.
        Gen.Select(Gen.Long[0, long.MaxValue], Gen.Int[1, int.MaxValue], Gen.Double[0, 1], Gen.Bool).Sample((version, count, accuracy, noised) =>
        {
            var json = Encoding.UTF8.GetBytes(FormattableString.Invariant($"{{\"vehicle\":\"car-0\",\"model_version\":{version},\"count\":{count},\"accuracy\":{accuracy:R},\"noised\":{(noised ? "true" : "false")}}}"));
            var e = AggregatorStatus.ParseEvaluation("car-0", json, Start);
            Assert.Equal((version, count, accuracy, noised), (e.ModelVersion, e.Count, e.Accuracy, e.Noised));
        });
    }

    [Fact]
    public void Phase_DerivedFromOpenRoundAndAcceptedUpdates_UntilTheWorkerReportsIt()
    {
        using var status = new AggregatorStatus();
        status.Record(new RoundRecord(4, 3, null, RoundStatus.Open, 5, 0, double.NaN, Start, null), null);
        status.Accepted();
        status.Accepted();
        Assert.Equal(new PhaseProgress(4, "updates", 2, 5, Start), status.Phase);
        status.ReportPhase(4, "unmasking", 3, 4);
        status.Accepted();
        Assert.Equal(("unmasking", 3, 4), (status.Phase!.Phase, status.Phase.Answered, status.Phase.Expected));
        status.Record(new RoundRecord(4, 3, 4, RoundStatus.Applied, 5, 4, 0.1, Start, Start.AddSeconds(1)), null);
        Assert.Null(status.Phase);
    }

    [Fact]
    public void Traffic_CountsBytesFromARoundsStartToTheNextRoundsStart()
    {
        using var status = new AggregatorStatus();
        status.Received(10);
        status.Record(new RoundRecord(1, 0, null, RoundStatus.Open, 2, 0, double.NaN, Start, null), null);
        status.Received(300);
        status.Sent(4000);
        status.Record(new RoundRecord(1, 0, 1, RoundStatus.Applied, 2, 2, 0.1, Start, Start.AddSeconds(1)), null);
        Assert.Equal([new RoundTraffic(1, 300, 4000)], status.Traffic);
        status.Sent(100_000); // the new model, published after the close, before round 2 starts
        status.Record(new RoundRecord(2, 1, null, RoundStatus.Open, 2, 0, double.NaN, Start, null), null);
        status.Received(7);
        Assert.Equal([new RoundTraffic(1, 300, 104_000)], status.Traffic);
    }

    [Fact]
    public void VehicleEpsilon_RaisesTheMaximumAndRefusesNaN()
    {
        using var status = new AggregatorStatus();
        status.VehicleEpsilon("car-0", 0.5);
        status.VehicleEpsilon("car-1", 1.5);
        status.VehicleEpsilon("car-0", 0.7);
        Assert.Equal(1.5, status.MaxVehicleEpsilon);
        Assert.Throws<ArgumentOutOfRangeException>(() => status.VehicleEpsilon("car-0", double.NaN));
        Assert.Equal([0.7, 1.5], status.Vehicles.Select(v => v.Epsilon!.Value));
    }

    [Fact]
    public async Task RoundProgressCheck_RoundOpenPastItsDeadlines_Unhealthy()
    {
        var time = new FakeTimeProvider(Start);
        using var status = new AggregatorStatus(time);
        var options = new AggregatorOptions { RoundTimeout = TimeSpan.FromMinutes(2), CohortWait = TimeSpan.FromMinutes(1), PhaseTimeout = TimeSpan.FromSeconds(30) };
        var check = new RoundProgressHealthCheck(status, Options.Create(options), time);
        Assert.Equal(HealthStatus.Healthy, (await check.CheckHealthAsync(new HealthCheckContext())).Status);
        status.Record(new RoundRecord(1, 0, null, RoundStatus.Open, 2, 0, double.NaN, Start, null), null);
        time.Advance(TimeSpan.FromMinutes(5)); // 1 + 2 + 4 × 0.5 + 1 = 6 min allowed
        Assert.Equal(HealthStatus.Healthy, (await check.CheckHealthAsync(new HealthCheckContext())).Status);
        time.Advance(TimeSpan.FromMinutes(1.5));
        var stuck = await check.CheckHealthAsync(new HealthCheckContext());
        Assert.Equal(HealthStatus.Unhealthy, stuck.Status);
        Assert.Contains("round 1 open for 390 s", stuck.Description, StringComparison.Ordinal);
    }

    [Fact]
    public async Task StoreCheck_FolderMissing_UnhealthyNamingTheFile()
    {
        var check = new StoreHealthCheck(Options.Create(new AggregatorOptions { DatabasePath = "/nonexistent-folder/agg.db" }));
        var result = await check.CheckHealthAsync(new HealthCheckContext());
        Assert.Equal(HealthStatus.Unhealthy, result.Status);
        Assert.Contains("/nonexistent-folder/agg.db", result.Description, StringComparison.Ordinal);
    }
}
