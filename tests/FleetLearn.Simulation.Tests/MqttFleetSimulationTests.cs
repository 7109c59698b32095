using FleetLearn.Transport.Mqtt.Broker;
using FleetLearn.Compute;
using FleetLearn.Core.Compression;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Model;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Training;
using FleetLearn.Perception.Datasets;
using FleetLearn.Testing;
using Microsoft.Extensions.Logging;

namespace FleetLearn.Simulation.Tests;

/// <summary>
/// The product over the wire equals the simulator: 20 real agents and the real aggregator, secure aggregation (SecAgg+),
/// distributed DP and a compression codec, 3 rounds on Fashion-MNIST; the final model equals the in-process
/// simulation's with the same seed bit for bit — over the embedded broker and over Debian's Mosquitto with mutual TLS
/// and broker-config/'s ACLs.
/// </summary>
[Collection(nameof(MqttFleetSimulationTests))]
public sealed class MqttFleetSimulationTests : IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(4);
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("fl-mqttsim-");
    private static ILoggerFactory Logs => SimulationTestData.Logs;

    private static Lazy<(LabeledData Train, LabeledData Test)?> Data => SimulationTestData.FashionMnistSets;

    private static SimulationOptions Options => new()
    {
        Vehicles = 20,
        Cohort = 20,
        Rounds = 3,
        LocalEpochs = 1,
        Batch = 50,
        ClientLearningRate = 0.1f,
        Model = ModelSpec.Parse("784-32-10"),
        Seed = 7,
        Workers = 2,
        EvaluateEvery = 3,
        Privacy = new PrivacySettings(NoiseMode.Distributed, ClipNorm: 1.0, NoiseMultiplier: 1.0, Delta: 1e-5, EpsilonBudget: 100),
        Codec = CodecSpec.Parse("rot+q8"),
        SecureAggregation = SecureAggregationMode.Plus,
    };

    public void Dispose() => _dir.Delete(recursive: true);

    [Fact]
    public async Task RunAsync_MaliciousServerModeOverPlainExternalBroker_RefusedForWantOfCertifiedKeys()
    {
        var e = await Assert.ThrowsAsync<ArgumentException>(() => MqttFleetSimulation.RunAsync(Options with { SecAggMaliciousServer = true }, Empty, Empty,
            new MqttSimulationBroker("mqtt://127.0.0.1:1"), Path.Combine(_dir.FullName, "plain"), _ => { }, Logs));

        Assert.Contains("--secagg-malicious needs certified device keys", e.Message, StringComparison.Ordinal);
    }

    /// <summary>
    /// Issue 13 item 5 over the wire: the embedded broker with mutual TLS against a simulated device CA, every agent's device
    /// key its certificate's key and every agent requiring malicious-aggregator mode (certified keys, ConsistencyCheck round,
    /// signed downlink bound to the signed plan); the masks cancel exactly, so the model equals the in-process run's.
    /// </summary>
    [SkippableFact]
    public async Task EmbeddedBroker_SecAggMaliciousServer_AgentsRequiringIt_FinalModelEqualsInProcessBitForBit()
    {
        Skip.If(Data.Value is null, "Fashion-MNIST is not installed (dataset-fashion-mnist)");
        var (train, test) = Data.Value!.Value;
        var options = Options with { SecAggMaliciousServer = true };
        var expected = InProcess(options, train, test);
        using var cts = new CancellationTokenSource(Timeout);
        string work = Path.Combine(_dir.FullName, "malicious");
        var result = await MqttFleetSimulation.RunAsync(options, train, test, new MqttSimulationBroker(), work, _ => { }, Logs, cancellationToken: cts.Token);
        AssertSame(expected, result);
        // Every vehicle signed the survivor set (ConsistencyCheck) before it answered the unmask request, in every round.
        Assert.Equal(60, result.SecAggMessagesSent!.GetValueOrDefault("ConsistencySignatureMessage"));
        Assert.Equal(60, result.SecAggMessagesSent!.GetValueOrDefault("UnmaskResponseMessage"));
        // The device keys were the simulated CA's certificates' keys (what the aggregator listed in every plan).
        Assert.True(File.Exists(Path.Combine(work, SimulationCertificates.FolderName, "ca.crt")));
        Assert.Equal(20, Directory.GetFiles(Path.Combine(work, SimulationCertificates.FolderName), "vehicle-*.crt").Length);
    }

    [SkippableFact]
    public async Task EmbeddedBroker_SecAggPlusDistributedDpCodec_FinalModelEqualsInProcessBitForBit()
    {
        Skip.If(Data.Value is null, "Fashion-MNIST is not installed (dataset-fashion-mnist)");
        var (train, test) = Data.Value!.Value;
        var expected = InProcess(Options, train, test);
        using var cts = new CancellationTokenSource(Timeout);
        var result = await MqttFleetSimulation.RunAsync(Options, train, test, new MqttSimulationBroker(), Path.Combine(_dir.FullName, "embedded"), _ => { }, Logs, cancellationToken: cts.Token);
        AssertSame(expected, result);
        Assert.False(result.SecAggMessagesSent!.ContainsKey("ConsistencySignatureMessage")); // honest-but-curious mode has no ConsistencyCheck round
        Assert.Equal(60, result.SecAggMessagesSent!["UnmaskResponseMessage"]);
    }

    /// <summary>
    /// Malicious-server mode with dropouts over MQTT: vehicles vanish after the key exchange, so the survivor set the vehicles
    /// sign in the ConsistencyCheck round is smaller than the cohort; every round ends as in process and the model is the same.
    /// </summary>
    [SkippableFact]
    public async Task EmbeddedBroker_SecAggMaliciousServerWithDropout_RoundsAndFinalModelEqualInProcess()
    {
        Skip.If(Data.Value is null, "Fashion-MNIST is not installed (dataset-fashion-mnist)");
        var (train, test) = Data.Value!.Value;
        var options = Options with { Vehicles = 30, Cohort = 12, Seed = 5, Privacy = null, NormBound = 1.0, Codec = CodecSpec.Parse("none"), SecAggMaliciousServer = true, Behavior = new FleetBehavior(Dropout: 0.2) };
        var expected = InProcess(options, train, test, requireAllApplied: false);
        using var cts = new CancellationTokenSource(Timeout);
        var result = await MqttFleetSimulation.RunAsync(options, train, test, new MqttSimulationBroker(), Path.Combine(_dir.FullName, "malicious-dropout"), _ => { }, Logs, cancellationToken: cts.Token);

        Assert.Equal(expected.Rounds.Select(r => (r.Round, r.Applied, r.Selected, r.Participants, r.AbortReason)), result.Rounds.Select(r => (r.Round, r.Applied, r.Selected, r.Participants, r.AbortReason)));
        Assert.Contains(result.Rounds, r => r.Applied && r.Participants < r.Selected); // a hardened round applied without its dropouts
        Assert.Equal(expected.Model.Length, result.FinalModel.Length);
        Assert.Equal(expected.Model.Select(BitConverter.SingleToInt32Bits), result.FinalModel.Select(BitConverter.SingleToInt32Bits)); // bit for bit
        // Only survivors sign the survivor set: one signature per participant of every applied round.
        Assert.Equal(result.Rounds.Where(r => r.Applied).Sum(r => r.Participants), result.SecAggMessagesSent!.GetValueOrDefault("ConsistencySignatureMessage"));
    }

    [SkippableFact]
    public async Task Mosquitto_MutualTlsAndAcls_SecAggPlusDistributedDpCodec_FinalModelEqualsInProcessBitForBit()
    {
        Skip.If(Data.Value is null, "Fashion-MNIST is not installed (dataset-fashion-mnist)");
        await using var mosquitto = await MosquittoBroker.StartAsync([.. Enumerable.Range(0, 20).Select(MqttFleetSimulation.VehicleName)]);
        Skip.If(mosquitto.SkipReason is not null, mosquitto.SkipReason);
        var (train, test) = Data.Value!.Value;
        AssertSame(InProcess(Options, train, test), await RunOverMosquittoAsync(Options, train, test, mosquitto, "mosquitto"));
    }

    private async Task<MqttSimulationResult> RunOverMosquittoAsync(SimulationOptions options, LabeledData train, LabeledData test, MosquittoBroker mosquitto, string folder)
    {
        using var cts = new CancellationTokenSource(Timeout);
        var broker = new MqttSimulationBroker($"mqtts://127.0.0.1:{mosquitto.Port}", mosquitto.Certificates);
        try
        {
            return await MqttFleetSimulation.RunAsync(options, train, test, broker, Path.Combine(_dir.FullName, folder), _ => { }, Logs, cancellationToken: cts.Token);
        }
        catch (OperationCanceledException e)
        {
            throw new TimeoutException($"The run over Mosquitto did not finish; mosquitto's log:\n{mosquitto.Log}", e);
        }
    }

    /// <summary>Malicious-server mode against Debian's Mosquitto with broker-config/'s ACLs and make-dev-ca.sh's certificates (--broker-certs).</summary>
    [SkippableFact]
    public async Task Mosquitto_MutualTlsAndAcls_SecAggMaliciousServer_FinalModelEqualsInProcessBitForBit()
    {
        Skip.If(Data.Value is null, "Fashion-MNIST is not installed (dataset-fashion-mnist)");
        await using var mosquitto = await MosquittoBroker.StartAsync([.. Enumerable.Range(0, 20).Select(MqttFleetSimulation.VehicleName)]);
        Skip.If(mosquitto.SkipReason is not null, mosquitto.SkipReason);
        var (train, test) = Data.Value!.Value;
        var options = Options with { SecAggMaliciousServer = true };
        var result = await RunOverMosquittoAsync(options, train, test, mosquitto, "mosquitto-malicious");
        AssertSame(InProcess(options, train, test), result);
        Assert.Equal(60, result.SecAggMessagesSent!.GetValueOrDefault("ConsistencySignatureMessage"));
    }

    private static LabeledData Empty => new([], [], 784, 10);

    private static (float[] Model, List<RoundReport> Rounds) InProcess(SimulationOptions options, LabeledData train, LabeledData test, bool requireAllApplied = true)
    {
        using var simulator = new FleetSimulator(options, train, test, (spec, maxBatch) => TrainerFactory.Create(BackendChoice.Cpu, spec, maxBatch));
        var rounds = simulator.Run().ToList();
        if (requireAllApplied) Assert.All(rounds, r => Assert.True(r.Applied, $"in-process round {r.Round}: {r.AbortReason}"));
        return (simulator.GlobalModel.ToArray(), rounds);
    }

    private static void AssertSame((float[] Model, List<RoundReport> Rounds) expected, MqttSimulationResult result)
    {
        Assert.Equal(3, result.Rounds.Count);
        Assert.All(result.Rounds, r =>
        {
            Assert.True(r.Applied, $"round {r.Round}: {r.AbortReason}");
            Assert.Equal(20, r.Participants);
        });
        Assert.Equal(expected.Model.Length, result.FinalModel.Length);
        int differing = expected.Model.Zip(result.FinalModel).Count(p => BitConverter.SingleToInt32Bits(p.First) != BitConverter.SingleToInt32Bits(p.Second));
        Assert.True(differing == 0, $"{differing} of {expected.Model.Length} parameters differ from the in-process simulation");
        Assert.Equal(expected.Rounds[^1].TestAccuracy, result.Rounds[^1].TestAccuracy);
        // Every message was acknowledged, so every outbox emptied.
        Assert.Equal(0, result.PendingInOutboxes);
        // Each vehicle's own ledger recorded the three rounds, exactly as the aggregator's ledger did.
        Assert.Equal(20, result.EpsilonByVehicle.Count);
        var perVehicle = result.EpsilonByVehicle.Values.Distinct().ToList();
        Assert.Single(perVehicle);
        Assert.Equal(result.Rounds[^1].MaxVehicleEpsilon, perVehicle[0], 9);
        Assert.Equal(expected.Rounds[^1].MaxVehicleEpsilon, perVehicle[0], 9);
    }
}
