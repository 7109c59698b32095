using System.Collections.Concurrent;
using FleetLearn.Compute;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Model;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Random;
using FleetLearn.Core.Rounds;
using FleetLearn.Core.Training;
using FleetLearn.EdgeAgent;
using FleetLearn.Storage;
using FleetLearn.Transport.Mqtt;
using FleetLearn.Transport.Mqtt.Broker;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using FleetLearn.Testing;
using Microsoft.Extensions.Options;
using RoundPlan = FleetLearn.Core.Rounds.RoundPlan;

namespace FleetLearn.Aggregator.Tests;

/// <summary>
/// Secure rounds (SecAgg / SecAgg+) over a real in-process broker with five real <see cref="EdgeAgentWorker"/>s: the
/// per-phase deadlines close a phase without the vehicles that dropped out, the round is applied when enough survive and
/// aborted (model unchanged, the reason naming the phase) when too few do, and the next round starts afresh.
/// </summary>
/// <remarks>
/// Dropouts are placed deterministically: the local training of car-0 and of the vehicles that are to drop out is held
/// (their data-order draw waits on a gate). Training runs beside the agent's message loop, so every vehicle advertises
/// and shares its keys; MaskedInputCollection then stays open for car-0. The test stops the dropping vehicles inside
/// their held training (they have shared their keys and never send a masked input), then releases car-0. Every random draw of the vehicles (data order, rounding) is seeded, so the test recomputes each
/// vehicle's input in the clear and checks the secure sum against it bit for bit.
/// </remarks>
// Every AggregatorStatus creates the meter "FleetLearn.Aggregator", and an OpenTelemetry MeterProvider subscribes by name:
// status objects of tests running in parallel would be read by each other's /metrics (one aggregator per process is the product's shape).
[Collection("Aggregator meter")]
public sealed class SecureRoundTests : IAsyncLifetime
{
    private const string Secret = "agg-secret";
    private const string Fleet = "secround";
    private const ulong Seed = 11;
    private const int Vehicles = 5;
    private const int RowsPerVehicle = 60;
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);
    private static readonly ModelSpec Spec = ModelSpec.Parse("8-6-3");
    private static readonly ILoggerFactory Logs = TestLogs.Factory;

    private readonly string _dir = Directory.CreateTempSubdirectory("fl-secround-").FullName;
    private readonly LabeledData _data = EndToEndTests.SyntheticData(Vehicles * RowsPerVehicle, seed: 3);
    private readonly int[][] _rows;
    private readonly List<BackgroundService> _started = [];
    private readonly ConcurrentDictionary<string, Hold> _holds = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<long, RoundPlan> _plans = new();
    private readonly ConcurrentQueue<string> _agentLog = new();
    private readonly ChangeSignal _progress = new(); // pulsed by every agent after each message it handled
    private EmbeddedBroker _broker = null!;
    private MqttConnection _spy = null!;
    private System.Security.Cryptography.ECDsa _planKey = null!;

    public SecureRoundTests() => _rows = FleetLearn.Core.Federated.Partitioner.Split(_data.Labels, Vehicles, new PartitionScheme.Iid(), 7);

    public async Task InitializeAsync()
    {
        _broker = new EmbeddedBroker(new EmbeddedBrokerOptions { Port = 0, AggregatorPassword = Secret });
        await _broker.StartAsync();
        using (SigningKeys.LoadOrCreate(KeyPath))
        {
            // created before any worker starts, so that the test and the workers never race to create it
        }
        // A bystander vehicle keeps every signed plan, so that the test can recompute a round from what was announced.
        using var signing = SigningKeys.LoadOrCreate(KeyPath);
        _planKey = SigningKeys.LoadPublic(signing.ExportSubjectPublicKeyInfoPem());
        _spy = new MqttConnection(Mqtt("car-spy"));
        _spy.MessageReceived += m =>
        {
            if (m.Payload.Length > 0)
            {
                var plan = RoundPlanCodec.Verify(m.Payload, _planKey, Fleet);
                _plans[plan.Round] = plan;
            }
            return Task.CompletedTask;
        };
        await _spy.SubscribeAsync(_spy.Topics.RoundCurrent, CancellationToken.None);
        _spy.Start();
        using var cts = new CancellationTokenSource(Timeout);
        await _spy.WaitUntilConnectedAsync(cts.Token);
    }

    public async Task DisposeAsync()
    {
        foreach (var hold in _holds.Values) hold.Release();
        // Stops whatever a failed test left running (stopping twice is harmless).
        foreach (var worker in _started)
        {
            await worker.StopAsync(CancellationToken.None);
            worker.Dispose();
        }
        await _spy.DisposeAsync();
        _planKey.Dispose();
        await _broker.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    /// <summary>Every vehicle answers every phase: the sum of all five is applied, and it is exactly the sum of the five inputs.</summary>
    [Fact]
    public async Task SecureRound_AllFiveAnswer_AppliedWithFiveAndSumEqualsInputsInTheClear()
    {
        var (status, _) = StartAggregator(o =>
        {
            o.SecureAggregation = "full";
            o.Codec = "q8";
            o.MinParticipants = Vehicles;
            o.Rounds = 1;
        });
        var agents = new List<EdgeAgentWorker>();
        for (int i = 0; i < Vehicles; i++) agents.Add(await StartAgentAsync(i));
        using var cts = new CancellationTokenSource(Timeout);
        await status.Done.Task.WaitAsync(cts.Token);

        var record = Assert.Single(status.Rounds);
        Assert.Equal(RoundStatus.Applied, record.Status);
        Assert.Equal(Vehicles, record.Participants);
        Assert.Equal(1, record.ModelVersionOut);
        Assert.True(status.Closed.TryRead(out var closed));
        var initial = ModelInitializer.Initialize(Spec, Seed);
        Assert.NotEqual(initial, closed.Model);

        var plan = _plans[1];
        Assert.Equal(RoundPlanCodec.HashModel(new Checkpoint(Spec, 0, initial).ToBytes()), plan.ModelSha256);
        var (secure, clipped) = Recompute(plan, initial, [0, 1, 2, 3, 4]);
        // The masks cancelled exactly: the model is the pipeline applied to the five inputs computed in the clear.
        AssertBitwiseEqual(secure, closed.Model);
        // And that is FedAvg of the five clipped updates, within one q8 step 2C/(2^8 − 1) per coordinate.
        AssertClose(clipped, closed.Model, 2.0 / 255 + 1e-6);

        foreach (var a in agents) await _progress.UntilAsync(() => a.PendingInOutbox == 0, $"{a.VehicleId}'s outbox to empty", Timeout);
        Assert.All(agents, a => Assert.Equal(1, a.RoundsSent));
        Assert.Equal(Vehicles, status.AcceptedUpdates);
        Assert.Equal(0, status.RejectedMessages);
    }

    /// <summary>
    /// SecAgg+ (k = 2): one vehicle drops out after it shared its keys. MaskedInputCollection closes at its deadline, the
    /// dropped vehicle's pairwise masks are removed from its reconstructed key, and the sum of the four is applied; the
    /// next round runs (it, too, without the vehicle that is gone).
    /// </summary>
    [Fact]
    public async Task SecureRound_OneDropsAfterShareKeys_PhaseClosesAtDeadlineAndFourAreApplied_NextRoundRuns()
    {
        // Generous: stopping the dropping vehicle must fit inside the masked-input phase even on a loaded CI machine.
        var phase = TimeSpan.FromSeconds(8);
        var (status, _) = StartAggregator(o =>
        {
            o.SecureAggregation = "plus";
            o.SecAggNeighbors = 2;
            o.Codec = "q8";
            o.MinParticipants = 3;
            o.Rounds = 2;
            o.PhaseTimeout = phase;
            o.CohortWait = phase; // round 2 starts with the four that are left, once it has waited this long for a fifth
        });
        var held = HoldTraining("car-0", round: 1);
        var droppedHold = HoldTraining("car-4", round: 1);
        var agents = new List<EdgeAgentWorker>();
        for (int i = 0; i < Vehicles; i++) agents.Add(await StartAgentAsync(i));
        var dropped = agents[4];
        await WaitForSharedKeysAsync(held, dropped);
        await StopWhileTrainingAsync([dropped], [droppedHold]);
        held.Release();

        using var cts = new CancellationTokenSource(Timeout);
        await status.Done.Task.WaitAsync(cts.Token);
        var rounds = status.Rounds;
        Assert.Equal([1L, 2L], rounds.Select(r => r.Round));
        Assert.Equal(RoundStatus.Applied, rounds[0].Status);
        Assert.Equal(4, rounds[0].Participants);
        // The round waited for car-4's masked input until MaskedInputCollection's deadline.
        Assert.True(rounds[0].ClosedAt >= rounds[0].StartedAt + phase, $"round 1 closed {rounds[0].ClosedAt - rounds[0].StartedAt} after it opened, before the {phase} phase deadline");
        Assert.Equal(RoundStatus.Applied, rounds[1].Status);
        Assert.Equal(1, rounds[1].ModelVersionIn);
        Assert.Equal(4, rounds[1].Participants);
        // car-4 did not survive round 1, so round 2 did not select it again (it never checked in again).
        Assert.Equal(4, rounds[1].CohortSize);

        Assert.True(status.Closed.TryRead(out var first));
        Assert.True(status.Closed.TryRead(out var second));
        var (secure, clipped) = Recompute(_plans[1], ModelInitializer.Initialize(Spec, Seed), [0, 1, 2, 3]);
        AssertBitwiseEqual(secure, first.Model);
        AssertClose(clipped, first.Model, 2.0 / 255 + 1e-6);
        Assert.NotEqual(first.Model, second.Model);

        foreach (var a in agents.Take(4)) await _progress.UntilAsync(() => a.PendingInOutbox == 0, $"{a.VehicleId}'s outbox to empty", Timeout);
        Assert.All(agents.Take(4), a => Assert.Equal(2, a.RoundsSent));
        Assert.Equal(0, dropped.RoundsSent);
        Assert.Equal(0, status.RejectedMessages);
    }

    /// <summary>
    /// Three of five drop out after sharing their keys: two masked inputs arrive, fewer than t = 3. The round is aborted
    /// in MaskedInputCollection and the model is unchanged. The three restart (new instances, same databases) while
    /// round 1 is still open: they see its plan and do not join it again; they join round 2, which is applied with five.
    /// </summary>
    [Fact]
    public async Task SecureRound_TooFewSurvive_AbortedNamingPhaseModelUnchanged_RestartedAgentsSkipItAndJoinNext()
    {
        var (status, worker) = StartAggregator(o =>
        {
            o.SecureAggregation = "full";
            o.Codec = "none";
            o.MinParticipants = 3;
            o.Rounds = 2;
            o.PhaseTimeout = TimeSpan.FromSeconds(12); // stopping and restarting three agents must fit inside the masked-input phase
        });
        var held = HoldTraining("car-0", round: 1);
        var droppedHolds = new[] { HoldTraining("car-2", round: 1), HoldTraining("car-3", round: 1), HoldTraining("car-4", round: 1) };
        var agents = new List<EdgeAgentWorker>();
        for (int i = 0; i < Vehicles; i++) agents.Add(await StartAgentAsync(i));
        await WaitForSharedKeysAsync(held, agents[2], agents[3], agents[4]);
        await StopWhileTrainingAsync([.. agents.Skip(2)], droppedHolds);
        var restarted = new List<EdgeAgentWorker>();
        for (int i = 2; i < Vehicles; i++) restarted.Add(await StartAgentAsync(i));
        // Each new instance has seen round 1's retained plan and left it alone (it joined round 1 before its restart).
        foreach (var a in restarted)
            await _progress.UntilAsync(() => _agentLog.Contains($"agent {a.VehicleId}: round 1 was joined or declined before; not joined again (round keys are never reused)."), $"{a.VehicleId} to skip round 1", Timeout);
        held.Release();

        using var cts = new CancellationTokenSource(Timeout);
        await status.Done.Task.WaitAsync(cts.Token);
        var rounds = status.Rounds;
        Assert.Equal([1L, 2L], rounds.Select(r => r.Round));
        Assert.Equal(RoundStatus.Aborted, rounds[0].Status);
        Assert.Null(rounds[0].ModelVersionOut);
        Assert.Contains("MaskedInputCollection", rounds[0].Note, StringComparison.Ordinal);
        Assert.Contains("only 2 of 5 vehicles sent masked inputs, fewer than the threshold t = 3", rounds[0].Note, StringComparison.Ordinal);
        Assert.Equal(RoundStatus.Applied, rounds[1].Status);
        Assert.Equal(0, rounds[1].ModelVersionIn);
        Assert.Equal(Vehicles, rounds[1].Participants);

        var initial = ModelInitializer.Initialize(Spec, Seed);
        Assert.True(status.Closed.TryRead(out var aborted));
        Assert.Equal(initial, aborted.Model);
        Assert.True(status.Closed.TryRead(out var applied));
        Assert.NotEqual(initial, applied.Model);
        var survivors = agents.Take(2).Concat(restarted).ToList();
        foreach (var a in survivors) await _progress.UntilAsync(() => a.PendingInOutbox == 0, $"{a.VehicleId}'s outbox to empty", Timeout);
        Assert.All(agents.Take(2), a => Assert.Equal(2, a.RoundsSent));
        // The new instances trained and sent only round 2: a second set of round-1 keys would have been refused.
        Assert.All(restarted, a => Assert.Equal(1, a.RoundsTrained));
        Assert.All(restarted, a => Assert.Equal(1, a.RoundsSent));
        Assert.Equal(2 + Vehicles, status.AcceptedUpdates);
        Assert.Equal(0, status.RejectedMessages);

        // The stored model, read once the aggregator has closed its store (LiteDB deletes its -log file on close: a second
        // instance opened while the worker still runs can find the file gone, as a CI run did).
        await worker.StopAsync(CancellationToken.None);
        using (var store = LiteDbRoundStore.Open(Path.Combine(_dir, "agg.db")))
        {
            var model = store.LatestModel()!;
            Assert.Equal(1, model.Version);
            Assert.Equal(applied.Model, model.Parameters);
        }
    }

    /// <summary>
    /// Distributed DP: each vehicle adds noise sized for MinParticipants = 5 shares. One drops out after sharing its keys,
    /// so the secure sum of four would carry too little noise: the aggregator does not release it (round aborted with
    /// that reason, model unchanged, no privacy spend recorded by the aggregator).
    /// </summary>
    [Fact]
    public async Task SecureRound_DistributedDpFewerSurvivorsThanNoiseSizedFor_SumNotReleased()
    {
        var (status, _) = StartAggregator(o =>
        {
            o.SecureAggregation = "full";
            o.Codec = "q8";
            o.Privacy = "distributed";
            o.NoiseMultiplier = 1.0;
            o.MinParticipants = Vehicles;
            o.Rounds = 1;
            o.PhaseTimeout = TimeSpan.FromSeconds(8);
        });
        var held = HoldTraining("car-0", round: 1);
        var droppedHold = HoldTraining("car-4", round: 1);
        var agents = new List<EdgeAgentWorker>();
        for (int i = 0; i < Vehicles; i++) agents.Add(await StartAgentAsync(i));
        await WaitForSharedKeysAsync(held, agents[4]);
        await StopWhileTrainingAsync([agents[4]], [droppedHold]);
        held.Release();

        using var cts = new CancellationTokenSource(Timeout);
        await status.Done.Task.WaitAsync(cts.Token);
        var record = Assert.Single(status.Rounds);
        Assert.Equal(RoundStatus.Aborted, record.Status);
        // The secure-aggregation server itself aborts before any unmask request (issue 13 item 2): no sum exists to release.
        Assert.Contains("only 4 of 5 vehicles sent masked inputs, fewer than the 5 noise shares the distributed DP noise was sized for; the sum is never unmasked", record.Note, StringComparison.Ordinal);
        Assert.True(status.Closed.TryRead(out var closed));
        Assert.Equal(ModelInitializer.Initialize(Spec, Seed), closed.Model);
        Assert.Equal(0, status.ModelVersion);
        Assert.Equal(0, status.MaxVehicleEpsilon);

        foreach (var a in agents.Take(4)) await _progress.UntilAsync(() => a.PendingInOutbox == 0, $"{a.VehicleId}'s outbox to empty", Timeout);
        // The four sent their masked inputs (and recorded the spend on their own ledgers first); only the release was refused.
        Assert.All(agents.Take(4), a => Assert.Equal(1, a.RoundsSent));
        Assert.Equal(4, status.AcceptedUpdates);
        Assert.Equal(0, status.RejectedMessages);
    }

    /// <summary>
    /// Issue 14: the aggregator stops (as a crash would: nothing is written on the way out) while a distributed-DP secure
    /// round waits for its last masked input, four already folded. Restarted on the same files it does not resume the round
    /// (the server's share state lived in memory only): round 1 is recorded aborted before any unmasking, and no vehicle's
    /// ledger on the aggregator holds round 1 — only round 2, which the restarted aggregator runs and applies with all five.
    /// </summary>
    [Fact]
    public async Task SecureRound_AggregatorRestartsBeforeUnmasking_RoundAbortedAndNoLedgerChargedForIt()
    {
        void Configure(AggregatorOptions o)
        {
            o.SecureAggregation = "full";
            o.Codec = "q8";
            o.Privacy = "distributed";
            o.NoiseMultiplier = 1.0;
            o.MinParticipants = Vehicles;
            o.Rounds = 1;
            o.PhaseTimeout = Timeout; // MaskedInputCollection waits for car-0 until the test stops the aggregator
        }
        var (first, firstWorker) = StartAggregator(Configure);
        var held = HoldTraining("car-0", round: 1);
        var agents = new List<EdgeAgentWorker>();
        for (int i = 0; i < Vehicles; i++) agents.Add(await StartAgentAsync(i));
        using (var cts = new CancellationTokenSource(Timeout)) await held.Entered.WaitAsync(cts.Token);
        await _progress.UntilAsync(() => first.AcceptedUpdates == Vehicles - 1, "four masked inputs to be folded", Timeout); // each is acknowledged after it is folded
        await firstWorker.StopAsync(CancellationToken.None);
        Assert.Equal(RoundStatus.Open, Assert.Single(first.Rounds).Status);
        held.Release(); // car-0's masked input now reaches no round that could still use it

        var (second, _) = StartAggregator(Configure);
        using (var cts = new CancellationTokenSource(Timeout)) await second.Done.Task.WaitAsync(cts.Token);
        var rounds = second.Rounds;
        Assert.Equal([1L, 2L], rounds.Select(r => r.Round));
        Assert.Equal(RoundStatus.Aborted, rounds[0].Status);
        Assert.Equal(RoundCoordinator.SecureRestartReason, rounds[0].Note);
        Assert.Equal(RoundStatus.Applied, rounds[1].Status);
        Assert.Equal(0, rounds[1].ModelVersionIn);
        Assert.Equal(Vehicles, rounds[1].Participants);
        foreach (var worker in _started) await worker.StopAsync(CancellationToken.None);

        using var ledger = LiteDbPrivacyLedgerStore.Open(Path.Combine(_dir, "agg-privacy.db"), new PrivacyLedgerOptions(double.MaxValue, 1e-5));
        for (int i = 0; i < Vehicles; i++) Assert.Equal([2L], ledger.Get($"car-{i}").Rounds);
    }

    // ---- Rig -------------------------------------------------------------------------------------

    private string KeyPath => Path.Combine(_dir, "signing.pem");

    private MqttTransportOptions Mqtt(string clientId, string? password = null) => TestMqtt.Options(_broker.Port, Fleet, clientId, password);

    private (AggregatorStatus Status, AggregatorWorker Worker) StartAggregator(Action<AggregatorOptions> configure)
    {
        var status = new AggregatorStatus();
        var options = new AggregatorOptions
        {
            Model = Spec.ToString(),
            CohortSize = Vehicles,
            RoundTimeout = Timeout,
            CohortWait = Timeout,
            LocalEpochs = 2,
            Batch = 10,
            LearningRate = 0.1f,
            Seed = Seed,
            ClipNorm = 1,
            PhaseTimeout = TimeSpan.FromSeconds(3),
            DrainTime = TimeSpan.FromSeconds(1),
            DatabasePath = Path.Combine(_dir, "agg.db"),
            PrivacyLedgerPath = Path.Combine(_dir, "agg-privacy.db"),
            SigningKeyPath = KeyPath,
            OnnxFolder = null,
        };
        configure(options);
        // Seeded: the SecAgg+ graph is the same on every run.
        var randomness = new AggregatorRandomness(round => new SeededNoiseSource(Seed ^ (ulong)round), round => SHA256Of($"secagg-{round}"));
        var worker = new AggregatorWorker(Options.Create(options), Options.Create(Mqtt("aggregator", Secret)), status, TimeProvider.System,
            Logs.CreateLogger<AggregatorWorker>(), randomness: randomness);
        worker.StartAsync(CancellationToken.None).GetAwaiter().GetResult();
        _started.Add(worker);
        return (status, worker);
    }

    private async Task<EdgeAgentWorker> StartAgentAsync(int index)
    {
        using var key = SigningKeys.LoadOrCreate(KeyPath);
        string id = $"car-{index}";
        var options = new EdgeAgentOptions
        {
            VehicleId = id,
            AggregatorPublicKey = key.ExportSubjectPublicKeyInfoPem(),
            PinnedModelSpec = Spec.ToString(),
            DatabasePath = Path.Combine(_dir, $"{id}.db"),
            ResendInterval = TimeSpan.FromSeconds(1),
        };
        var agent = new EdgeAgentWorker(Options.Create(options), Options.Create(Mqtt(id)), new VehicleDataset(_data, _rows[index]), TimeProvider.System,
            new CapturingLogger(_agentLog, Logs.CreateLogger<EdgeAgentWorker>()), VehicleStateProviders.Idle, Randomness(index, _holds.GetValueOrDefault(id)));
        agent.Progressed += _progress.Pulse;
        await agent.StartAsync(CancellationToken.None);
        _started.Add(agent);
        return agent;
    }

    /// <summary>Seeded per vehicle and round; a held vehicle's data-order draw (at the start of local training) waits for the test.</summary>
    private static AgentRandomness Randomness(int vehicle, Hold? hold) => new(
        round =>
        {
            hold?.WaitIfHeld(round);
            return DeterministicRandom.Derive(Seed, 0xC11E, PerVehicle(round, vehicle));
        },
        round => new SeededNoiseSource(DeterministicRandom.Derive(Seed, 0xD157, PerVehicle(round, vehicle)).NextUInt64()),
        round => new SeededNoiseSource(DeterministicRandom.Derive(Seed, 0x0A7D, PerVehicle(round, vehicle)).NextUInt64()));

    private static ulong PerVehicle(long round, int vehicle) => ((ulong)(uint)round << 32) | (uint)vehicle;

    private Hold HoldTraining(string vehicle, long round) => _holds[vehicle] = new Hold(round);

    /// <summary>
    /// Stops vehicles that are inside their (held) local training: the stop is requested first, so that when their training
    /// is released the finished input finds the message loop closed and never leaves the vehicle — a dropout after ShareKeys.
    /// </summary>
    private static async Task StopWhileTrainingAsync(EdgeAgentWorker[] vehicles, Hold[] holds)
    {
        var stopping = vehicles.Select(v => v.StopAsync(CancellationToken.None)).ToList();
        foreach (var h in holds) h.Release();
        await Task.WhenAll(stopping);
        Assert.All(vehicles, v => Assert.Equal(0, v.RoundsSent));
    }

    /// <summary>Waits until the held vehicle is inside its local training and each of <paramref name="vehicles"/> has had its ShareKeys acknowledged.</summary>
    private async Task WaitForSharedKeysAsync(Hold held, params EdgeAgentWorker[] vehicles)
    {
        using var cts = new CancellationTokenSource(Timeout);
        await held.Entered.WaitAsync(cts.Token);
        // Acknowledged: AdvertiseKeys and ShareKeys. Their masked input cannot leave yet: their own training is held.
        foreach (var v in vehicles) await _progress.UntilAsync(() => v.Acknowledged >= 2 && v.PendingInOutbox == 0, $"{v.VehicleId}'s ShareKeys to be acknowledged", Timeout);
        Assert.All(vehicles, v => Assert.Equal(0, v.RoundsSent));
    }

    /// <summary>
    /// Round <paramref name="plan"/> recomputed in the clear for the <paramref name="survivors"/>: each vehicle's local
    /// training and secure input (same seeds), their sum mod 2^m decoded and applied with FedAvg — and, independently of the
    /// codec, FedAvg of the survivors' updates clipped to C.
    /// </summary>
    private (float[] Secure, float[] Clipped) Recompute(RoundPlan plan, float[] global, int[] survivors)
    {
        var protection = plan.Protection!;
        var pipeline = protection.CreatePipeline(global.Length, plan.Cohort.Count);
        var codec = protection.ForRound(pipeline, plan.Round);
        var sum = new uint[pipeline.SecAggDimension];
        var clippedMean = new double[global.Length];
        using var trainer = TrainerFactory.Create(BackendChoice.Cpu, Spec, TrainerPool.MaxBatch);
        foreach (int i in survivors)
        {
            Assert.Equal($"car-{i}", plan.Cohort[i]);
            var random = Randomness(i, null);
            trainer.LoadParameters(global);
            trainer.SetProximalTerm([], 0);
            var rows = _rows[i].ToArray();
            var rng = random.DataOrder(plan.Round);
            var sgd = new SgdOptions(plan.LearningRate, plan.Momentum);
            var schedule = new LearningRateSchedule.Constant(plan.LearningRate);
            long step = 0;
            for (int e = 0; e < plan.LocalEpochs; e++) TrainingLoop.RunEpoch(trainer, _data, rows, plan.Batch, sgd, schedule, ref step, 0, rng);
            var delta = new float[global.Length];
            trainer.ReadParameters(delta);
            for (int j = 0; j < delta.Length; j++) delta[j] -= global[j];

            double norm = Math.Sqrt(delta.Sum(x => (double)x * x));
            double scale = Math.Min(1, protection.ClipNorm!.Value / norm);
            for (int j = 0; j < delta.Length; j++) clippedMean[j] += delta[j] * scale / survivors.Length;
            var input = codec.EncodeSecure(delta, protection.WeightFor(rows.Length), random.Noise(plan.Round), random.Rounding(plan.Round), out _);
            for (int j = 0; j < sum.Length; j++) sum[j] += input[j];
        }
        if (pipeline.ModulusBits < 32)
            for (int j = 0; j < sum.Length; j++) sum[j] &= (1u << pipeline.ModulusBits) - 1;
        var decoded = codec.DecodeSum(sum, survivors.Length);
        var secure = global.ToArray();
        StrategyCatalog.Parse("fedavg").ApplyUpdate(secure, decoded.Mean);
        var clipped = global.ToArray();
        StrategyCatalog.Parse("fedavg").ApplyUpdate(clipped, [.. clippedMean.Select(x => (float)x)]);
        return (secure, clipped);
    }

    private static void AssertBitwiseEqual(float[] expected, float[] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        int differing = expected.Zip(actual).Count(p => BitConverter.SingleToInt32Bits(p.First) != BitConverter.SingleToInt32Bits(p.Second));
        Assert.True(differing == 0, $"{differing} of {expected.Length} parameters differ from the sum recomputed in the clear");
    }

    private static void AssertClose(float[] expected, float[] actual, double tolerance)
    {
        double worst = expected.Zip(actual).Max(p => Math.Abs(p.First - p.Second));
        Assert.True(worst <= tolerance, $"the model is {worst} away from FedAvg of the clipped updates (tolerance {tolerance})");
    }

    private static byte[] SHA256Of(string text) => System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(text));

    /// <summary>Holds a vehicle's local training of one round until released.</summary>
    private sealed class Hold(long round)
    {
        private readonly ManualResetEventSlim _gate = new(false);
        private readonly TaskCompletionSource _entered = new(TaskCreationOptions.RunContinuationsAsynchronously);

        /// <summary>Completes when the vehicle has started training the held round.</summary>
        public Task Entered => _entered.Task;

        public void WaitIfHeld(long r)
        {
            if (r != round) return;
            _entered.TrySetResult();
            // Runs on the trainer's thread-pool thread; bounded, so that a failed test cannot hang the run.
            _gate.Wait(Timeout);
        }

        public void Release() => _gate.Set();
    }

    /// <summary>Keeps every agent log line (the test waits for some) and forwards to the console logger.</summary>
    private sealed class CapturingLogger(ConcurrentQueue<string> lines, ILogger<EdgeAgentWorker> inner) : ILogger<EdgeAgentWorker>
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            lines.Enqueue(formatter(state, exception));
            inner.Log(logLevel, eventId, state, exception, formatter);
        }
    }
}
