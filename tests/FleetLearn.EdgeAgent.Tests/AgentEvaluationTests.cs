using FleetLearn.Core.Model;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Rounds;
using FleetLearn.Core.Training;
using FleetLearn.Transport.Mqtt;
using FleetLearn.Transport.Mqtt.Broker;
using Microsoft.Extensions.Logging.Abstractions;

namespace FleetLearn.EdgeAgent.Tests;

/// <summary>
/// The agent's evaluation report over a real in-process broker: under DP it is noised, charged to the vehicle's own ledger
/// before it is published, and never sent exact; a second report of the same round is not sent.
/// </summary>
public sealed class AgentEvaluationTests : IAsyncLifetime
{
    private const string Fleet = "evaltest";
    private static readonly ModelSpec Spec = ModelSpec.Parse("4-3");
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);
    private UplinkBrokerPair _pair = null!;

    private MqttConnection _aggregator => _pair.Aggregator;

    private MqttConnection _vehicle => _pair.Vehicle;

    private List<byte[]> _reports => _pair.Received;

    private SemaphoreSlim _arrived => _pair.Arrived;

    public async Task InitializeAsync() => _pair = await UplinkBrokerPair.StartAsync(Fleet, Timeout, "eval");

    public async Task DisposeAsync()
    {
        await _pair.DisposeAsync();
    }

    private static VehicleDataset Data()
    {
        var rng = new Random(5);
        const int rows = 60;
        var features = new float[rows * 4];
        var labels = new byte[rows];
        for (int i = 0; i < rows; i++)
        {
            labels[i] = (byte)(i % 3);
            for (int j = 0; j < 4; j++) features[i * 4 + j] = (float)rng.NextDouble() + (j == labels[i] ? 1 : 0);
        }
        return new VehicleDataset(new LabeledData(features, labels, 4, 3), [.. Enumerable.Range(0, 20)], [.. Enumerable.Range(20, 40)]);
    }

    /// <summary>Publishes a marker on the same topic and waits for it: QoS 1 keeps one client's order, so anything published before it has arrived.</summary>
    private async Task MarkerAsync(CancellationToken cancellationToken)
    {
        await _vehicle.PublishReliablyAsync(_vehicle.Topics.Up("car-0", "eval"), "marker"u8.ToArray(), cancellationToken: cancellationToken);
        while (true)
        {
            await _arrived.WaitAsync(cancellationToken);
            lock (_reports) if (_reports[^1].AsSpan().SequenceEqual("marker"u8)) return;
        }
    }

    private static Checkpoint Model() => new(Spec, 4, [.. Enumerable.Range(0, Spec.ParameterCount).Select(i => (float)Math.Sin(i))]);

    [Fact]
    public async Task Evaluate_UnderDpWithEpsilon_ChargedToTheVehiclesLedgerUnderTheRoundsReleaseIdAndSentNoised()
    {
        var ledger = new PrivacyLedger(new PrivacyLedgerOptions(double.MaxValue, 1e-5));
        var account = new PrivacyLedgerAccount(ledger, "car-0");
        using var cts = new CancellationTokenSource(Timeout);

        var evaluation = await AgentTraining.EvaluateAsync(Model(), 5, privateFleet: true, Data(), 1.0, account, _vehicle, "car-0", NullLogger.Instance, cts.Token);
        await _arrived.WaitAsync(cts.Token);

        Assert.NotNull(evaluation);
        Assert.Equal([PrivateCount.ReleaseId(5)], ledger.Get("car-0").Rounds);
        Assert.Equal([PrivateCount.LaplaceCharge(1.0)], ledger.Get("car-0").Charges);
        var report = EvaluationReport.Decode(_reports.Single(), "car-0");
        Assert.True(report.Noised);
        Assert.Equal(40, report.Count);
        Assert.Equal(evaluation!.ReportedAccuracy, report.Accuracy);

        // The same round again: nothing more is charged, and no second draw is published.
        var again = await AgentTraining.EvaluateAsync(Model(), 5, privateFleet: true, Data(), 1.0, account, _vehicle, "car-0", NullLogger.Instance, cts.Token);
        Assert.NotNull(again);
        Assert.Single(ledger.Get("car-0").Rounds);
        await MarkerAsync(cts.Token);
        Assert.Equal(2, _reports.Count); // the first report and the marker: nothing in between
    }

    [Fact]
    public async Task Evaluate_UnderDpWithoutEpsilon_NothingSentNothingCharged()
    {
        var ledger = new PrivacyLedger(new PrivacyLedgerOptions(double.MaxValue, 1e-5));
        using var cts = new CancellationTokenSource(Timeout);

        var evaluation = await AgentTraining.EvaluateAsync(Model(), 5, privateFleet: true, Data(), null, new PrivacyLedgerAccount(ledger, "car-0"), _vehicle, "car-0", NullLogger.Instance, cts.Token);

        Assert.NotNull(evaluation); // the exact accuracy stays on the vehicle
        Assert.Empty(ledger.Get("car-0").Rounds);
        await MarkerAsync(cts.Token);
        Assert.Single(_reports); // only the marker
    }
}
