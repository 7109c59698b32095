using FleetLearn.Storage;

namespace FleetLearn.Aggregator.Tests;

/// <summary>The closed-rounds channel keeps only the newest rounds when nobody reads it (it carries a model copy each).</summary>
// Every AggregatorStatus creates the meter "FleetLearn.Aggregator", and an OpenTelemetry MeterProvider subscribes by name:
// status objects of tests running in parallel would be read by each other's /metrics (one aggregator per process is the product's shape).
[Collection("Aggregator meter")]
public sealed class AggregatorStatusClosedTests
{
    [Fact]
    public void Closed_NobodyReads_KeepsOnlyTheNewestRounds()
    {
        using var status = new AggregatorStatus();
        var start = DateTimeOffset.UnixEpoch;
        int rounds = AggregatorStatus.ClosedRoundsKept + 10;
        for (int r = 1; r <= rounds; r++)
            status.Record(new RoundRecord(r, r - 1, r, RoundStatus.Applied, 3, 3, 0.5, start, start.AddSeconds(1)), new float[1000]);
        var kept = new List<long>();
        while (status.Closed.TryRead(out var closed)) kept.Add(closed.Record.Round);
        Assert.Equal(Enumerable.Range(11, AggregatorStatus.ClosedRoundsKept).Select(r => (long)r), kept);
    }
}
