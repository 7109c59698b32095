using FleetLearn.Compute.Cpu;
using FleetLearn.Core.Model;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Random;
using FleetLearn.Core.Training;
using FleetLearn.Simulation.Traces;

namespace FleetLearn.Simulation.Tests;

/// <summary>
/// FedBuff over MQTT (issue 19): real agents and the real aggregator in Aggregator:Mode = fedbuff over the embedded broker, their
/// availability following a generated trace on the run's simulated clock, give the in-process run's model bit for bit — with
/// stale updates folded and vehicles whose window closed mid-update withdrawing.
/// </summary>
[Collection(nameof(MqttFleetSimulationTests))]
public sealed class FedBuffMqttSimulationTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("fl-fedbuff-mqtt-");

    public void Dispose() => _dir.Delete(recursive: true);


    private static readonly LabeledData Train = SimulationTestData.Blobs(1200, 1);
    private static readonly LabeledData Test = SimulationTestData.Blobs(200, 2);

    private static SimulationOptions Options(int vehicles) => new()
    {
        Vehicles = vehicles,
        Cohort = 3,
        LocalEpochs = 1,
        Batch = 10,
        Model = ModelSpec.Parse("16-12-4"),
        Seed = 5,
        Workers = 2,
        Target = 1.01, // never reached: both runs go the full hours
    };

    private static readonly TraceSettings FedBuff = new() { Mode = RoundMode.FedBuff, Hours = 30, EvaluateEveryHours = 4 };

    [Fact]
    public void Create_SecureAggregation_RefusedWithWhereSecureGroupsRun()
    {
        var trace = VehicleDayModel.Parse("mixed").Generate(4, FedBuff.Hours, 1);
        var secure = Assert.Throws<ArgumentException>(() => new FedBuffMqttSimulation(Options(4) with { SecureAggregation = Core.Compression.SecureAggregationMode.Plus, NormBound = 1, Codec = Core.Compression.CodecSpec.Parse("q8") }, FedBuff, trace, Train, Test,
            (spec, batch) => new CpuTrainer(spec, batch), _dir.FullName));
        Assert.StartsWith("--transport mqtt --mode fedbuff --trace runs plaintext buffers", secure.Message, StringComparison.Ordinal);
        Assert.Contains("The aggregator runs secure groups over MQTT (Aggregator:Mode fedbuff with Aggregator:SecureAggregation", secure.Message, StringComparison.Ordinal);
    }

    [Fact]
    public Task MixedTrace_TwelveAgentsOverMqtt_SameModelStepsAndWasteAsInProcess() => AssertSameRunAsync(Options(12), FedBuff);

    [Fact]
    public async Task CentralDpAndParticipationCap_TwelveAgentsOverMqtt_SameModelAndLedgerAsInProcess()
    {
        var (expected, actual) = await AssertSameRunAsync(
            Options(12) with { Privacy = new PrivacySettings(NoiseMode.Central, ClipNorm: 1, NoiseMultiplier: 0.5, Delta: 1e-5) }, FedBuff with { MaxParticipations = 4 });

        Assert.True(expected.Participations.Max() == 4, "the cap was never reached");
        Assert.Equal(expected.MaxVehicleEpsilon, actual.MaxVehicleEpsilon);
    }

    private async Task<(TraceRunResult Expected, TraceRunResult Actual)> AssertSameRunAsync(SimulationOptions options, TraceSettings settings)
    {
        var trace = VehicleDayModel.Parse("mixed").Generate(options.Vehicles, settings.Hours, options.Seed);
        using var inProcess = TraceFleetSimulation.Create(options, settings, trace, Train, Test, (spec, batch) => new CpuTrainer(spec, batch));
        var expected = inProcess.Run();
        using var overMqtt = new FedBuffMqttSimulation(options, settings, trace, Train, Test, (spec, batch) => new CpuTrainer(spec, batch), _dir.FullName, SimulationTestData.Logs);

        var actual = await Task.Run(() => overMqtt.Run()).WaitAsync(TimeSpan.FromMinutes(3));

        // The run holds what the wire path must get right: stale updates, and vehicles that withdraw mid-update.
        Assert.True(expected.Applied >= 10, $"{expected.Applied} steps");
        Assert.Contains(expected.Staleness, p => p.Key >= 1 && p.Value > 0);
        Assert.True(expected.WastedUpdates[WasteCause.Dropped] > 0, "no vehicle withdrew");
        Assert.Equal(Checkpoint.ParameterHash(inProcess.GlobalModel), Checkpoint.ParameterHash(overMqtt.GlobalModel));
        Assert.Equal((expected.Applied, expected.Aborted, expected.UsedUpdates), (actual.Applied, actual.Aborted, actual.UsedUpdates));
        Assert.Equal(expected.WastedUpdates, actual.WastedUpdates);
        Assert.Equal(expected.Staleness.OrderBy(p => p.Key), actual.Staleness.OrderBy(p => p.Key));
        Assert.Equal(expected.Participations, actual.Participations);
        Assert.Equal(expected.Points.Select(p => (p.Hours, p.Version, p.Accuracy)), actual.Points.Select(p => (p.Hours, p.Version, p.Accuracy)));
        return (expected, actual);
    }

    [Fact]
    public void Create_SyncModeOrEpsilonBudget_RefusedWithWhatRunsWhere()
    {
        var trace = VehicleDayModel.Parse("mixed").Generate(4, FedBuff.Hours, 1);
        Func<ModelSpec, int, ITrainer> cpu = (spec, batch) => new CpuTrainer(spec, batch);

        var sync = Assert.Throws<ArgumentException>(() => new FedBuffMqttSimulation(Options(4), FedBuff with { Mode = RoundMode.Sync }, trace, Train, Test, cpu, _dir.FullName));
        var dp = Assert.Throws<ArgumentException>(() => new FedBuffMqttSimulation(Options(4) with { Privacy = new PrivacySettings(NoiseMode.Central, ClipNorm: 1, NoiseMultiplier: 1, Delta: 1e-5, EpsilonBudget: 5) }, FedBuff, trace, Train, Test, cpu, _dir.FullName));

        Assert.Equal("--transport mqtt --trace runs --mode fedbuff (synchronous rounds over MQTT: simulate --transport mqtt without --trace).", sync.Message);
        Assert.Equal("--transport mqtt --mode fedbuff does not take --epsilon-budget yet: each agent charges its own ledger a fresh contribution's ε where the in-process run charges by staleness, so the agents run out first and the two runs part (docs/async.md).", dp.Message);
    }
}
