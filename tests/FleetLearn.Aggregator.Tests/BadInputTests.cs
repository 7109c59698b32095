using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Threading.Channels;
using FleetLearn.Core.Model;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Rounds;
using FleetLearn.Storage;
using FleetLearn.Testing;
using FleetLearn.Transport.Mqtt.Broker;
using FleetLearn.Transport.Mqtt;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace FleetLearn.Aggregator.Tests;

/// <summary>
/// A hand-driven vehicle sends the aggregator every kind of bad envelope (truncated, wrong version, wrong round, NaN,
/// oversized, bad signature/hash, another vehicle's key, not in the cohort) over a real broker: each is rejected with
/// a logged reason and counted by reason in /metrics, and the worker goes on to apply the round with the good update.
/// </summary>
// Every AggregatorStatus creates the meter "FleetLearn.Aggregator", and an OpenTelemetry MeterProvider subscribes by name:
// status objects of tests running in parallel would be read by each other's /metrics (one aggregator per process is the product's shape).
[Collection("Aggregator meter")]
public sealed class BadInputTests : IAsyncLifetime
{
    private const string Secret = "agg-secret";
    private const string Fleet = "bad";
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);
    private readonly string _dir = Directory.CreateTempSubdirectory("fl-bad-").FullName;
    private readonly ListLogger _log = new();
    private EmbeddedBroker _broker = null!;

    public async Task InitializeAsync()
    {
        _broker = new EmbeddedBroker(new EmbeddedBrokerOptions { Port = 0, AggregatorPassword = Secret });
        await _broker.StartAsync();
    }

    public async Task DisposeAsync()
    {
        await _broker.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    private MqttTransportOptions Mqtt(string clientId, string? password = null) => new()
    {
        Host = "127.0.0.1",
        Port = _broker.Port,
        Fleet = Fleet,
        ClientId = clientId,
        Password = password,
        ReconnectDelay = TimeSpan.FromMilliseconds(50),
        MaxReconnectDelay = TimeSpan.FromMilliseconds(500),
    };

    [Fact]
    public async Task Aggregator_EveryKindOfBadEnvelope_RejectedWithReasonCountedAndRoundStillApplied()
    {
        string keyPath = Path.Combine(_dir, "signing.pem");
        using var signing = SigningKeys.LoadOrCreate(keyPath);
        var status = new AggregatorStatus();
        var options = new AggregatorOptions
        {
            Model = "8-6-3", CohortSize = 1, MinParticipants = 1, Rounds = 1, RoundTimeout = Timeout, CohortWait = Timeout,
            MaxUpdateBytes = 4096, DatabasePath = Path.Combine(_dir, "agg.db"), SigningKeyPath = keyPath, OnnxFolder = null,
            DrainTime = TimeSpan.Zero,
        };
        var aggregator = new AggregatorWorker(Options.Create(options), Options.Create(Mqtt("aggregator", Secret)), status, TimeProvider.System, _log);
        await aggregator.StartAsync(CancellationToken.None);
        using var cts = new CancellationTokenSource(Timeout);
        var topics = new FleetTopics(Fleet);

        await using var car = new MqttConnection(Mqtt("car-x"));
        var inbox = Channel.CreateUnbounded<MqttIncoming>();
        car.MessageReceived += m => inbox.Writer.WriteAsync(m).AsTask();
        await car.SubscribeAsync(topics.RoundCurrent, cts.Token);
        await car.SubscribeAsync(topics.ModelAll, cts.Token);
        await car.SubscribeAsync(topics.InboxAll("car-x"), cts.Token);
        car.Start(cts.Token);
        using var deviceKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        // Like an agent, the vehicle checks in again until the round starts: a check-in is not retained, and the
        // aggregator may not have subscribed yet when the first one is sent.
        using var checkingIn = CancellationTokenSource.CreateLinkedTokenSource(cts.Token);
        var checkins = Task.Run(async () =>
        {
            while (!checkingIn.IsCancellationRequested)
            {
                try
                {
                    await CheckInAsync(car, "car-x", deviceKey, checkingIn.Token);
                }
                catch (Exception) when (checkingIn.IsCancellationRequested)
                {
                    break; // a publish cut short by the cancellation surfaces as MQTTnet's timeout, not as a cancellation
                }
                await Task.Delay(200, checkingIn.Token);
            }
        }, checkingIn.Token);

        // The plan and the model arrive (retained); the vehicle verifies the plan like an agent does.
        RoundPlan? plan = null;
        byte[]? model = null;
        var chunks = new ChunkAssembler(1 << 20);
        while (plan is null || model is null)
        {
            var m = await inbox.Reader.ReadAsync(cts.Token);
            if (m.Topic == topics.RoundCurrent && m.Payload.Length > 0) plan = RoundPlanCodec.Verify(m.Payload, signing, Fleet);
            else if (topics.TryParseModelTopic(m.Topic, out _)) model = chunks.Add("model", m.Payload) ?? model;
        }
        await checkingIn.CancelAsync();
        try
        {
            await checkins;
        }
        catch (OperationCanceledException)
        {
            // stopped as intended
        }
        var checkpoint = Checkpoint.FromBytes(model);
        var protection = plan.Protection!;
        var codec = protection.ForRound(protection.CreatePipeline(checkpoint.Parameters.Length, plan.Cohort.Count), plan.Round);
        byte[] Body(float value)
        {
            var delta = Enumerable.Repeat(0.01f, checkpoint.Parameters.Length).ToArray();
            var body = codec.EncodePlain(delta, protection.WeightFor(50), 0, Guid.NewGuid(), new SecureNoiseSource(), new SecureNoiseSource(), null, out _);
            if (float.IsNaN(value)) BitConverter.TryWriteBytes(body.AsSpan(body.Length - 4), float.NaN);
            return new PlainUpdate(0.5, 50, body).Encode();
        }
        Envelope Update(long round, byte[] payload) => new(EnvelopeKind.Update, "car-x", round, Guid.NewGuid(), payload);
        var up = topics.Up("car-x", "update");

        var truncated = Update(plan.Round, Body(1)).Encode();
        await SendAsync(car, up, truncated[..^7], cts.Token);
        var wrongVersion = Update(plan.Round, Body(1)).Encode();
        wrongVersion[4] = 9;
        await SendAsync(car, up, wrongVersion, cts.Token);
        await SendAsync(car, up, Update(plan.Round + 5, Body(1)).Encode(), cts.Token);
        await SendAsync(car, up, Update(plan.Round, Body(float.NaN)).Encode(), cts.Token);
        await SendAsync(car, up, Update(plan.Round, new byte[5000]).Encode(), cts.Token);
        var tampered = ChunkCodec.Split(Update(plan.Round, Body(1)).Encode(), 4096);
        tampered[0][^1] ^= 0xFF;
        await car.PublishReliablyAsync(up, tampered[0], cancellationToken: cts.Token);
        using (var otherKey = ECDsa.Create(ECCurve.NamedCurves.nistP256))
            await CheckInAsync(car, "car-x", otherKey, cts.Token);
        await using (var stranger = new MqttConnection(Mqtt("car-y")))
        {
            stranger.Start(cts.Token);
            await stranger.WaitUntilConnectedAsync(cts.Token);
            var envelope = new Envelope(EnvelopeKind.Update, "car-y", plan.Round, Guid.NewGuid(), Body(1)).Encode();
            await SendAsync(stranger, topics.Up("car-y", "update"), envelope, cts.Token);
        }

        // The aggregator reads round traffic before check-ins: wait until the foreign-key check-in was read and refused too.
        while (status.RejectedByReason.GetValueOrDefault(RejectReasons.Signature) < 2) await Task.Delay(20, cts.Token);

        // The good update still goes through: the round is applied.
        await SendAsync(car, up, Update(plan.Round, Body(1)).Encode(), cts.Token);
        await status.Done.Task.WaitAsync(cts.Token);
        Assert.Equal(RoundStatus.Applied, status.Rounds[^1].Status);
        Assert.Equal(1, status.AcceptedUpdates);

        var byReason = status.RejectedByReason;
        foreach (var reason in new[] { RejectReasons.Truncated, RejectReasons.Version, RejectReasons.WrongRound, RejectReasons.NonFinite, RejectReasons.Oversized, RejectReasons.NotInCohort })
            Assert.True(byReason.GetValueOrDefault(reason) >= 1, $"no rejection counted as {reason}: {string.Join(", ", byReason.Select(p => $"{p.Key}={p.Value}"))}");
        Assert.True(byReason.GetValueOrDefault(RejectReasons.Signature) >= 2, "the tampered chunk and the foreign device key are both signature failures");
        // Each rejection was logged with its reason.
        Assert.Contains(_log.Lines, l => l.Contains("NaN", StringComparison.Ordinal));
        Assert.Contains(_log.Lines, l => l.Contains("version 9", StringComparison.Ordinal));
        Assert.Contains(_log.Lines, l => l.Contains("XXH3-128 checksum", StringComparison.Ordinal));
        await aggregator.StopAsync(CancellationToken.None);
        aggregator.Dispose();
    }

    /// <summary>
    /// Chunk bombs, cohort check first (issue 15 item 2): a vehicle outside the cohort starts a transfer of several chunks and
    /// never finishes it. The aggregator refuses its first chunk before holding any of it (not_in_cohort, logged), so it can
    /// neither pin memory nor evict a cohort vehicle's transfer; the cohort vehicle's chunked update is applied.
    /// </summary>
    [Fact]
    public async Task Aggregator_ChunksFromAVehicleOutsideTheCohort_RefusedBeforeAnyIsHeld()
    {
        string keyPath = Path.Combine(_dir, "signing.pem");
        using var signing = SigningKeys.LoadOrCreate(keyPath);
        var status = new AggregatorStatus();
        var options = new AggregatorOptions
        {
            Model = "64-32-10", CohortSize = 1, MinParticipants = 1, Rounds = 1, RoundTimeout = Timeout, CohortWait = Timeout,
            DatabasePath = Path.Combine(_dir, "agg.db"), SigningKeyPath = keyPath, OnnxFolder = null, DrainTime = TimeSpan.Zero,
        };
        var aggregator = new AggregatorWorker(Options.Create(options), Options.Create(Mqtt("aggregator", Secret)), status, TimeProvider.System, _log);
        await aggregator.StartAsync(CancellationToken.None);
        using var cts = new CancellationTokenSource(Timeout);
        var topics = new FleetTopics(Fleet);
        await using var car = new MqttConnection(Mqtt("car-x"));
        var inbox = Channel.CreateUnbounded<MqttIncoming>();
        car.MessageReceived += m => inbox.Writer.WriteAsync(m).AsTask();
        await car.SubscribeAsync(topics.RoundCurrent, cts.Token);
        await car.SubscribeAsync(topics.ModelAll, cts.Token);
        car.Start(cts.Token);
        using var deviceKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var (plan, signedPlan, model) = await JoinAsync(car, inbox.Reader, deviceKey, signing, cts.Token);
        var checkpoint = Checkpoint.FromBytes(model);
        var protection = plan.Protection!;
        var codec = protection.ForRound(protection.CreatePipeline(checkpoint.Parameters.Length, plan.Cohort.Count), plan.Round);
        byte[] Body() => new PlainUpdate(0.5, 50, codec.EncodePlain(Enumerable.Repeat(0.01f, checkpoint.Parameters.Length).ToArray(), protection.WeightFor(50), 0, Guid.NewGuid(), new SecureNoiseSource(), new SecureNoiseSource(), null, out _)).Encode();
        Envelope Update(string vehicle) => new(EnvelopeKind.Update, vehicle, plan.Round, Guid.NewGuid(), Body()) { Epoch = (ushort)plan.Epoch, PlanTag = Envelope.TagOf(signedPlan!) };

        await using (var stranger = new MqttConnection(Mqtt("car-y")))
        {
            stranger.Start(cts.Token);
            await stranger.WaitUntilConnectedAsync(cts.Token);
            var parts = ChunkCodec.Split(Update("car-y").Encode(), 4096);
            Assert.True(parts.Count > 2);
            await stranger.PublishReliablyAsync(topics.Up("car-y", "update"), parts[0], cancellationToken: cts.Token);
            await Poll.UntilAsync(() => status.RejectedByReason.GetValueOrDefault(RejectReasons.NotInCohort) == 1, "the stranger's first chunk to be refused", Timeout);
        }
        Assert.Contains(_log.Lines, l => l.Contains("from car-y is not admitted (not in the current cohort)", StringComparison.Ordinal));

        foreach (var chunk in ChunkCodec.Split(Update("car-x").Encode(), 4096)) await car.PublishReliablyAsync(topics.Up("car-x", "update"), chunk, cancellationToken: cts.Token);
        await status.Done.Task.WaitAsync(cts.Token);
        Assert.Equal((RoundStatus.Applied, 1), (status.Rounds[^1].Status, status.Rounds[^1].Participants));
        Assert.Equal(1, status.RejectedByReason.GetValueOrDefault(RejectReasons.NotInCohort));
        await aggregator.StopAsync(CancellationToken.None);
        aggregator.Dispose();
    }

    /// <summary>
    /// Like an agent: checks in (again every 300 ms: a check-in is not retained, and the aggregator may not have subscribed
    /// yet) until the round's plan and model have arrived; the plan is verified as an agent verifies it.
    /// </summary>
    private static async Task<(RoundPlan Plan, byte[] SignedPlan, byte[] Model)> JoinAsync(MqttConnection car, ChannelReader<MqttIncoming> inbox, ECDsa deviceKey,
        ECDsa signing, CancellationToken cancellationToken, long lastRound = 0)
    {
        RoundPlan? plan = null;
        byte[]? signedPlan = null, model = null;
        var chunks = new ChunkAssembler(1 << 20);
        while (plan is null || model is null)
        {
            await CheckInAsync(car, "car-x", deviceKey, cancellationToken, lastRound);
            using var wait = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            wait.CancelAfter(TimeSpan.FromMilliseconds(300));
            try
            {
                while (plan is null || model is null)
                {
                    var m = await inbox.ReadAsync(wait.Token);
                    if (m.Topic == car.Topics.RoundCurrent && m.Payload.Length > 0) plan = RoundPlanCodec.Verify(signedPlan = m.Payload, signing, Fleet);
                    else if (car.Topics.TryParseModelTopic(m.Topic, out _)) model = chunks.Add("model", m.Payload) ?? model;
                }
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                // no plan yet: check in again, as an agent does
            }
        }
        return (plan, signedPlan!, model);
    }

    private static async Task CheckInAsync(MqttConnection car, string id, ECDsa deviceKey, CancellationToken cancellationToken, long lastRound = 0)
    {
        var checkin = new Checkin(50, deviceKey.ExportSubjectPublicKeyInfo()).Encode();
        await car.PublishReliablyAsync(car.Topics.Checkin(id), new Envelope(EnvelopeKind.Checkin, id, lastRound, Guid.NewGuid(), checkin).Encode(), cancellationToken: cancellationToken);
    }

    /// <summary>
    /// A restored older database (issue 14 item 2): the aggregator's database knows no round, but a vehicle checks in having
    /// joined round 7. The aggregator starts epoch 1 with round 8 (round numbers never repeat), and of two updates for round 8
    /// the one tagged with another plan is refused as plan_mismatch, the one tagged with this plan is applied.
    /// </summary>
    [Fact]
    public async Task Aggregator_VehicleHasSeenLaterRounds_NewEpochPastThemAndForeignPlanTagRefused()
    {
        string keyPath = Path.Combine(_dir, "signing.pem");
        using var signing = SigningKeys.LoadOrCreate(keyPath);
        var status = new AggregatorStatus();
        var options = new AggregatorOptions
        {
            Model = "8-6-3", CohortSize = 1, MinParticipants = 1, Rounds = 1, RoundTimeout = Timeout, CohortWait = Timeout,
            DatabasePath = Path.Combine(_dir, "agg.db"), SigningKeyPath = keyPath, OnnxFolder = null, DrainTime = TimeSpan.Zero,
        };
        var aggregator = new AggregatorWorker(Options.Create(options), Options.Create(Mqtt("aggregator", Secret)), status, TimeProvider.System, _log);
        await aggregator.StartAsync(CancellationToken.None);
        using var cts = new CancellationTokenSource(Timeout);
        var topics = new FleetTopics(Fleet);
        await using var car = new MqttConnection(Mqtt("car-x"));
        var inbox = Channel.CreateUnbounded<MqttIncoming>();
        car.MessageReceived += m => inbox.Writer.WriteAsync(m).AsTask();
        await car.SubscribeAsync(topics.RoundCurrent, cts.Token);
        await car.SubscribeAsync(topics.ModelAll, cts.Token);
        await car.SubscribeAsync(topics.InboxAll("car-x"), cts.Token);
        car.Start(cts.Token);
        using var deviceKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var (plan, signedPlan, model) = await JoinAsync(car, inbox.Reader, deviceKey, signing, cts.Token, lastRound: 7);
        Assert.Equal((8L, 1L), (plan.Round, plan.Epoch));
        Assert.Contains(_log.Lines, l => l.Contains("restored older database detected: car-x's check-in reports round 7 (epoch 0), but this database knows rounds up to 0 in epoch 0; epoch 1 starts, its first round after 7", StringComparison.Ordinal));

        var checkpoint = Checkpoint.FromBytes(model);
        var protection = plan.Protection!;
        var codec = protection.ForRound(protection.CreatePipeline(checkpoint.Parameters.Length, plan.Cohort.Count), plan.Round);
        byte[] Body() => new PlainUpdate(0.5, 50, codec.EncodePlain(Enumerable.Repeat(0.01f, checkpoint.Parameters.Length).ToArray(), protection.WeightFor(50), 0, Guid.NewGuid(), new SecureNoiseSource(), new SecureNoiseSource(), null, out _)).Encode();
        var up = topics.Up("car-x", "update");
        await SendAsync(car, up, new Envelope(EnvelopeKind.Update, "car-x", 8, Guid.NewGuid(), Body()) { Epoch = 1, PlanTag = Envelope.TagOf([1, 2, 3]) }.Encode(), cts.Token);
        await SendAsync(car, up, new Envelope(EnvelopeKind.Update, "car-x", 8, Guid.NewGuid(), Body()) { Epoch = 1, PlanTag = Envelope.TagOf(signedPlan!) }.Encode(), cts.Token);
        await status.Done.Task.WaitAsync(cts.Token);
        Assert.Equal((8L, RoundStatus.Applied, 1), (status.Rounds[^1].Round, status.Rounds[^1].Status, status.Rounds[^1].Participants));
        Assert.Equal(1, status.RejectedByReason.GetValueOrDefault(RejectReasons.PlanMismatch));
        Assert.Contains(_log.Lines, l => l.Contains("answers another plan for round 8", StringComparison.Ordinal));
        await aggregator.StopAsync(CancellationToken.None);
        aggregator.Dispose();
        using var store = LiteDbRoundStore.Open(options.DatabasePath);
        Assert.Equal("1", store.GetMeta("epoch"));
    }

    private static async Task SendAsync(MqttConnection connection, string topic, byte[] envelope, CancellationToken cancellationToken)
    {
        foreach (var chunk in ChunkCodec.Split(envelope, 4096)) await connection.PublishReliablyAsync(topic, chunk, cancellationToken: cancellationToken);
    }

    /// <summary>Keeps every formatted log line.</summary>
    private sealed class ListLogger : ILogger<AggregatorWorker>
    {
        private readonly ConcurrentQueue<string> _lines = new();

        public IReadOnlyList<string> Lines => [.. _lines];

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) => _lines.Enqueue(formatter(state, exception));
    }
}
