using System.Diagnostics.Metrics;
using FleetLearn.Core.Rounds;
using FleetLearn.Storage;
using FleetLearn.Transport.Mqtt;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using OpenTelemetry.Metrics;

namespace FleetLearn.Aggregator.Tests;

/// <summary>The aggregator's counters are OpenTelemetry instruments with the values /metrics shows.</summary>
// Every AggregatorStatus creates the meter "FleetLearn.Aggregator", and an OpenTelemetry MeterProvider subscribes by name:
// status objects of tests running in parallel would be read by each other's /metrics (one aggregator per process is the product's shape).
[Collection("Aggregator meter")]
public sealed class AggregatorStatusMetricsTests
{
    [Fact]
    public void Instruments_ObservedThroughAMeterListener_CarryTheStatusValuesAndLabels()
    {
        using var status = new AggregatorStatus();
        var start = DateTimeOffset.UnixEpoch;
        status.Record(new RoundRecord(1, 0, 1, RoundStatus.Applied, 3, 3, 0.5, start, start), null);
        status.Record(new RoundRecord(2, 1, null, RoundStatus.Aborted, 3, 1, double.NaN, start, start), null);
        status.Accepted();
        status.Accepted();
        status.Rejected(RejectReasons.NonFinite);
        status.Received(1234);
        status.ModelVersion = 1;
        status.MaxVehicleEpsilon = 2.5;

        var seen = new List<(string Name, double Value, string Tags)>();
        using var listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter.Name == AggregatorStatus.MeterName) l.EnableMeasurementEvents(instrument);
            },
        };
        listener.SetMeasurementEventCallback<long>((i, v, tags, _) => seen.Add((i.Name, v, string.Join(",", tags.ToArray().Select(t => $"{t.Key}={t.Value}")))));
        listener.SetMeasurementEventCallback<double>((i, v, tags, _) => seen.Add((i.Name, v, string.Join(",", tags.ToArray().Select(t => $"{t.Key}={t.Value}")))));
        listener.Start();
        listener.RecordObservableInstruments();

        Assert.Contains(("fleetlearn.aggregator.rounds", 1.0, "status=applied"), seen);
        Assert.Contains(("fleetlearn.aggregator.rounds", 1.0, "status=aborted"), seen);
        Assert.Contains(("fleetlearn.aggregator.updates.accepted", 2.0, ""), seen);
        Assert.Contains(("fleetlearn.aggregator.messages.rejected", 1.0, "reason=non_finite"), seen);
        Assert.Contains(("fleetlearn.aggregator.bytes.received", 1234.0, ""), seen);
        Assert.Contains(("fleetlearn.aggregator.model.version", 1.0, ""), seen);
        Assert.Contains(("fleetlearn.aggregator.vehicle.epsilon.max", 2.5, ""), seen);
    }

    [Fact]
    public void AddFleetLearnAggregator_RegistersAnOpenTelemetryMeterProviderThatReadsTheMeter()
    {
        var builder = Host.CreateApplicationBuilder([]);
        builder.Services.AddFleetLearnAggregator();
        var exported = new List<Metric>();
        builder.Services.ConfigureOpenTelemetryMeterProvider(m => m.AddInMemoryExporter(exported));
        using var host = builder.Build();
        var status = host.Services.GetRequiredService<AggregatorStatus>();
        status.Accepted();
        var provider = host.Services.GetRequiredService<MeterProvider>();
        Assert.True(provider.ForceFlush());
        Assert.Contains(exported, m => m.Name == "fleetlearn.aggregator.updates.accepted");
    }
}
