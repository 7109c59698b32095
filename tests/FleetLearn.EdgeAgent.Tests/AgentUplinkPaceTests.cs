using FleetLearn.Core.Rounds;
using FleetLearn.Core.SecureAggregation;
using FleetLearn.Storage;
using FleetLearn.Transport.Mqtt;
using FleetLearn.Transport.Mqtt.Broker;
using Microsoft.Extensions.Logging.Abstractions;

namespace FleetLearn.EdgeAgent.Tests;

/// <summary>
/// The aggregator's "slow down" signal over a real in-process broker: a vehicle that heard it holds the resend of an
/// unacknowledged message until the hold passes, and then resends it with the same update id; first sends are never held.
/// </summary>
public sealed class AgentUplinkPaceTests : IAsyncLifetime
{
    private const string Fleet = "pacetest";
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan Interval = TimeSpan.FromSeconds(5);
    private readonly string _dir = Directory.CreateTempSubdirectory("fl-pace-").FullName;
    private UplinkBrokerPair _pair = null!;

    private MqttConnection _aggregator => _pair.Aggregator;

    private MqttConnection _vehicle => _pair.Vehicle;

    private List<byte[]> _uplinked => _pair.Received;

    private SemaphoreSlim _arrived => _pair.Arrived;

    public async Task InitializeAsync() => _pair = await UplinkBrokerPair.StartAsync(Fleet, Timeout, "update", "secagg");

    public async Task DisposeAsync()
    {
        await _pair.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public async Task Pace_HoldsTheResendOfAnUnacknowledgedUpdate_UntilTheHoldPasses_ThenResendsTheSameBytes()
    {
        using var cts = new CancellationTokenSource(Timeout);
        var time = new ManualTimeProvider(DateTimeOffset.UtcNow);
        using var outbox = LiteDbOutbox.Open(Path.Combine(_dir, "outbox.db"));
        var uplink = new AgentUplink("car-0", _vehicle, outbox, Interval, time, NullLogger.Instance);
        // The vehicle reads round/slowdown as EdgeAgentWorker does.
        var paced = new SemaphoreSlim(0);
        _vehicle.MessageReceived += m =>
        {
            if (m.Topic == _vehicle.Topics.RoundSlowDown)
            {
                uplink.Pace(m.Payload);
                paced.Release();
            }
            return Task.CompletedTask;
        };
        await _vehicle.SubscribeAsync(_vehicle.Topics.RoundSlowDown, cts.Token);
        int checkIns = 0;
        Task CheckIn(CancellationToken _)
        {
            checkIns++;
            return Task.CompletedTask;
        }
        await uplink.PassAsync(first: true, CheckIn, cts.Token);

        var id = Guid.NewGuid();
        await uplink.EnqueueAsync(EnvelopeKind.Update, "update", 1, 0, 0, id, [1, 2, 3, 4], time.GetUtcNow().AddHours(1), cts.Token);
        await _arrived.WaitAsync(cts.Token); // the first send: never held

        // The aggregator is saturated: it asks vehicles to hold resends for 60 s (retained, as PaceSignal publishes it).
        await _aggregator.PublishReliablyAsync(_aggregator.Topics.RoundSlowDown, UplinkPace.Encode(TimeSpan.FromSeconds(60)), retain: true, expiry: TimeSpan.FromSeconds(60), cancellationToken: cts.Token);
        await paced.WaitAsync(cts.Token);
        var heldUntil = uplink.HeldUntil;
        Assert.InRange(heldUntil - time.GetUtcNow(), TimeSpan.FromSeconds(60), TimeSpan.FromSeconds(90)); // plus this vehicle's jitter, under half the hold

        // Due after one interval, but held: not sent, counted.
        for (var at = time.GetUtcNow() + Interval; at < heldUntil; at += Interval)
        {
            time.Advance(at - time.GetUtcNow());
            await uplink.PassAsync(first: false, CheckIn, cts.Token);
        }
        Assert.Equal(0, uplink.Resent);
        Assert.True(uplink.HeldBack >= 10, $"held back {uplink.HeldBack} times");
        Assert.Equal(1, outbox.Count);

        time.Advance(heldUntil - time.GetUtcNow());
        await uplink.PassAsync(first: false, CheckIn, cts.Token);
        Assert.Equal(1, uplink.Resent);
        await _arrived.WaitAsync(cts.Token);
        lock (_uplinked)
        {
            Assert.Equal(2, _uplinked.Count);
            Assert.Equal(_uplinked[0], _uplinked[1]); // the same chunk: the same update id, deduplicated by the aggregator
        }
        Assert.Equal(1, checkIns); // only the first pass: something was pending on every later one
    }

    [Theory]
    [InlineData(1000, 1)] // a key-phase message: asked again after one quiet interval
    [InlineData(200_000, 16)] // a masked input: only after 16 (the aggregator is quiet until the cohort's inputs are in)
    public async Task AskAgain_AcknowledgedSecAggMessage_ResentAfterQuietIntervals_ThatGrowWithItsSize(int bytes, int intervals)
    {
        using var cts = new CancellationTokenSource(Timeout);
        var time = new ManualTimeProvider(DateTimeOffset.UtcNow);
        using var outbox = LiteDbOutbox.Open(Path.Combine(_dir, $"outbox-{bytes}.db"));
        var uplink = new AgentUplink("car-0", _vehicle, outbox, Interval, time, NullLogger.Instance) { AwaitsServer = () => true };
        static Task NoCheckIn(CancellationToken _) => Task.CompletedTask;
        await uplink.PassAsync(first: true, NoCheckIn, cts.Token);
        var id = Guid.NewGuid();
        var payload = new byte[bytes];
        new System.Random(bytes).NextBytes(payload);
        await uplink.EnqueueAsync(EnvelopeKind.SecAgg, "secagg", 1, 0, 0, id, payload, time.GetUtcNow().AddHours(1), cts.Token);
        uplink.Acknowledge(new Envelope(EnvelopeKind.Ack, "car-0", 1, id, new UpdateAck(AckStatus.Accepted).Encode()));
        Assert.Equal(0, outbox.Count);
        int chunks = ChunkCodec.Split(new Envelope(EnvelopeKind.SecAgg, "car-0", 1, id, payload).Encode(), _vehicle.Options.MaxPacketSize, id).Count;
        for (int i = 0; i < chunks; i++) await _arrived.WaitAsync(cts.Token);

        for (int i = 1; i < intervals; i++)
        {
            time.Advance(Interval);
            await uplink.PassAsync(first: false, NoCheckIn, cts.Token);
            Assert.Equal(0, uplink.AskedAgain);
        }
        time.Advance(Interval);
        await uplink.PassAsync(first: false, NoCheckIn, cts.Token);
        Assert.Equal(1, uplink.AskedAgain);
        // The same bytes again: a masked input is not held in memory after its ack but read back from the outbox's kept file.
        for (int i = 0; i < chunks; i++) await _arrived.WaitAsync(cts.Token);
        lock (_uplinked)
        {
            Assert.Equal(2 * chunks, _uplinked.Count);
            Assert.Equal(_uplinked.Take(chunks).Select(Convert.ToBase64String).Order(), _uplinked.Skip(chunks).Select(Convert.ToBase64String).Order());
        }
    }
}
