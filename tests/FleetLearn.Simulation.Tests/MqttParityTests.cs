using FleetLearn.Compute;
using FleetLearn.Core.Compression;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Model;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Training;
using FleetLearn.Perception.Datasets;
using Microsoft.Extensions.Logging;

namespace FleetLearn.Simulation.Tests;

/// <summary>
/// In-process and MQTT transports produce the same model under over-selection, dropout mid-round and availability (issue 12):
/// 12 real agents and the real aggregator over the embedded broker, cohort 4 of ⌈4·1.3⌉ = 6 selected, 2 rounds, for SecAgg+ with
/// distributed DP and for plaintext with central DP, both with the rot+q8 codec. The seed is chosen so that the two rounds
/// hold every fate: an unavailable vehicle, a vehicle that vanishes mid-round, a surplus one, and a round in which fewer
/// than K finish (it closes at its deadline: the aggregator's clock skips to it).
/// </summary>
[Collection(nameof(MqttFleetSimulationTests))]
public sealed class MqttParityTests : IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(4);
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("fl-parity-");
    private static ILoggerFactory Logs => SimulationTestData.Logs;

    private static Lazy<(LabeledData Train, LabeledData Test)?> Data => SimulationTestData.FashionMnistSets;

    private static SimulationOptions Base(ulong seed) => new()
    {
        Vehicles = 12,
        Cohort = 4,
        Rounds = 2,
        OverSelection = 0.3,
        Behavior = new FleetBehavior(Availability: 0.8, Dropout: 0.1),
        LocalEpochs = 1,
        Batch = 50,
        ClientLearningRate = 0.1f,
        Model = ModelSpec.Parse("784-32-10"),
        Seed = seed,
        Workers = 2,
        EvaluateEvery = 2,
        Codec = CodecSpec.Parse("rot+q8"),
    };

    private static SimulationOptions Secure(ulong seed) => Base(seed) with
    {
        Privacy = new PrivacySettings(NoiseMode.Distributed, ClipNorm: 1.0, NoiseMultiplier: 1.0, Delta: 1e-5),
        SecureAggregation = SecureAggregationMode.Plus,
    };

    private static SimulationOptions Plain(ulong seed) => Base(seed) with
    {
        Privacy = new PrivacySettings(NoiseMode.Central, ClipNorm: 1.0, NoiseMultiplier: 1.0, Delta: 1e-5),
    };

    public void Dispose() => _dir.Delete(recursive: true);

    [SkippableFact]
    public async Task SecAggPlusDistributedDp_OverSelectionDropoutAvailability_SameModelOnBothTransports()
    {
        Skip.If(Data.Value is null, "Fashion-MNIST is not installed (dataset-fashion-mnist)");
        await AssertSameModelAsync(Secure(EveryFateSeed()), "secure");
    }

    [SkippableFact]
    public async Task PlaintextCentralDp_OverSelectionDropoutAvailability_SameModelOnBothTransports()
    {
        Skip.If(Data.Value is null, "Fashion-MNIST is not installed (dataset-fashion-mnist)");
        await AssertSameModelAsync(Plain(EveryFateSeed()), "plain");
    }

    [Fact]
    public async Task RunAsync_DropoutWithAgentsInSeveralProcesses_RefusedBeforeAnythingStarts()
    {
        var data = new LabeledData(new float[784], [0], 784, 10);
        var e = await Assert.ThrowsAsync<ArgumentException>(() => MqttFleetSimulation.RunAsync(Plain(1), data, data, new MqttSimulationBroker(), _dir.FullName, _ => { }, processes: 2, startAgentProcess: _ => throw new InvalidOperationException("started")));

        Assert.Contains("--dropout/--availability are the agents' simulated link", e.Message, StringComparison.Ordinal);
    }

    /// <summary>The first seed whose two rounds hold every fate the link must reproduce (pure: the behaviour model alone).</summary>
    private static ulong EveryFateSeed()
    {
        var (train, _) = Data.Value!.Value;
        for (ulong seed = 1; ; seed++)
        {
            var o = Base(seed);
            var partitions = Partitioner.Split(train.Labels, o.Vehicles, o.Partition, seed);
            var settings = new RoundSettings(o.CohortSize, o.OverSelection, 1, o.DeadlineSeconds);
            var rounds = Enumerable.Range(1, o.Rounds).Select(r => RoundPlanner.Plan(r, o.Vehicles, v => (long)partitions[v].Length * o.LocalEpochs, settings, o.Behavior, seed)).ToList();
            if (rounds.Any(f => f.Available < o.Vehicles) && rounds.Any(f => f.CountOf(VehicleOutcome.Dropped) > 0) && rounds.Any(f => f.CountOf(VehicleOutcome.Surplus) > 0)
                && rounds.Any(f => f.AcceptedCount < o.CohortSize))
                return seed;
        }
    }

    private async Task AssertSameModelAsync(SimulationOptions options, string name)
    {
        var (train, test) = Data.Value!.Value;
        using var simulator = new FleetSimulator(options, train, test, (spec, maxBatch) => TrainerFactory.Create(BackendChoice.Cpu, spec, maxBatch));
        var expected = simulator.Run().ToList();
        var expectedModel = simulator.GlobalModel.ToArray();
        using var cts = new CancellationTokenSource(Timeout);
        var result = await MqttFleetSimulation.RunAsync(options, train, test, new MqttSimulationBroker(), Path.Combine(_dir.FullName, name), _ => { }, Logs, cancellationToken: cts.Token);

        Assert.Equal(expected.Select(r => (r.Round, r.Selected, r.Participants, r.Applied)), result.Rounds.Select(r => (r.Round, r.Selected, r.Participants, r.Applied)));
        Assert.Contains(expected, r => r.Participants < options.CohortSize); // the round that closed at its deadline
        Assert.Equal(Checkpoint.ParameterHash(expectedModel), Checkpoint.ParameterHash(result.FinalModel));
        Assert.Equal(expected[^1].TestAccuracy, result.Rounds[^1].TestAccuracy);
        Assert.Equal(0, result.PendingInOutboxes);
    }
}
