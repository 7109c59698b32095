using System.ComponentModel.DataAnnotations;
using CsCheck;
using FleetLearn.Testing;
using FleetLearn.Transport.Mqtt;
using FleetLearn.Transport.Mqtt.Broker;

namespace FleetLearn.Aggregator.Tests;

/// <summary>The worker's inbox is bounded by bytes: back-pressure when full, refusal of a sender over its share, nothing queued lost.</summary>
public sealed class AggregatorInboxTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    private static MqttIncoming Message(string vehicle, int bytes, byte tag = 0)
    {
        var payload = new byte[bytes];
        payload[0] = tag;
        return new MqttIncoming($"fleetlearn/v1/f/vehicles/{vehicle}/up/update", payload, false);
    }

    [Fact]
    public async Task OfferAsync_InboxFull_WaitsUntilARead_ThenQueues_AndEveryMessageComesOutInOrder()
    {
        var first = Message("a", 400, 1);
        long size = AggregatorInbox.SizeOf(first);
        var inbox = new AggregatorInbox(3 * size, 3 * size);
        Assert.Equal(InboxOffer.Queued, await inbox.OfferAsync(first, "a", default));
        Assert.Equal(InboxOffer.Queued, await inbox.OfferAsync(Message("b", 400, 2), "b", default));
        Assert.Equal(InboxOffer.Queued, await inbox.OfferAsync(Message("c", 400, 3), "c", default));

        var fourth = inbox.OfferAsync(Message("d", 400, 4), "d", default).AsTask();
        Assert.False(fourth.IsCompleted); // back-pressure: the MQTT handler (and so the PUBACK) waits
        Assert.Equal(3 * size, inbox.Bytes);

        Assert.Equal(1, (await inbox.ReadAsync(default)).Payload[0]);
        Assert.Equal(InboxOffer.Queued, await fourth.WaitAsync(Timeout));
        Assert.Equal(3 * size, inbox.Bytes);
        Assert.Equal([2, 3, 4], new[] { (await inbox.ReadAsync(default)).Payload[0], (await inbox.ReadAsync(default)).Payload[0], (await inbox.ReadAsync(default)).Payload[0] });
        Assert.Equal(0, inbox.Bytes);
        Assert.Equal(0, inbox.Refused);
    }

    [Fact]
    public async Task OfferAsync_SenderOverItsShare_RefusedAtOnce_OthersStillQueued_QueuedOnesKept()
    {
        long size = AggregatorInbox.SizeOf(Message("a", 1000));
        var inbox = new AggregatorInbox(10 * size, 2 * size);
        Assert.Equal(InboxOffer.Queued, await inbox.OfferAsync(Message("a", 1000, 1), "a", default));
        Assert.Equal(InboxOffer.Queued, await inbox.OfferAsync(Message("a", 1000, 2), "a", default));
        Assert.Equal(InboxOffer.SenderOverShare, await inbox.OfferAsync(Message("a", 1000, 3), "a", default));
        Assert.Equal(InboxOffer.Queued, await inbox.OfferAsync(Message("b", 1000, 4), "b", default));
        Assert.Equal(1, inbox.Refused);
        Assert.Equal(3, inbox.Count);

        // Once the worker has read one of a's messages, a has room again.
        Assert.Equal(1, (await inbox.ReadAsync(default)).Payload[0]);
        Assert.Equal(InboxOffer.Queued, await inbox.OfferAsync(Message("a", 1000, 5), "a", default));
        Assert.Equal([2, 4, 5], new[] { (await inbox.ReadAsync(default)).Payload[0], (await inbox.ReadAsync(default)).Payload[0], (await inbox.ReadAsync(default)).Payload[0] });
    }

    [Fact]
    public async Task OfferAsync_LargerThanTheWholeInbox_Refused_NotWaitedFor()
    {
        var inbox = new AggregatorInbox(1000, 1000);
        Assert.Equal(InboxOffer.TooLarge, await inbox.OfferAsync(Message("a", 2000), "a", default));
        Assert.Equal(0, inbox.Bytes);
        Assert.Equal(1, inbox.Refused);
    }

    [Fact]
    public async Task AcceptAsync_RefusedMessage_CountedAsInboxFullForItsVehicle()
    {
        using var status = new AggregatorStatus();
        long size = AggregatorInbox.SizeOf(Message("car-1", 100));
        var inbox = new AggregatorInbox(10 * size, size, new FleetTopics("f"), status);
        await inbox.AcceptAsync(Message("car-1", 100), default);
        await inbox.AcceptAsync(Message("car-1", 100), default);
        Assert.Equal(1, inbox.Count);
        Assert.Equal(1, status.RejectedByReason[Core.Rounds.RejectReasons.InboxFull]);
    }

    [Fact]
    public void Property_AnyInterleavingOfOffersAndReads_HoldsAtMostItsBytes_AndLosesNothingQueued()
    {
        // Ops: (sender 0..3, payload size, reads after this offer). Offers that would wait are not made (the inbox is full then).
        var ops = Gen.Select(Gen.Int[0, 3], Gen.Int[1, 5000], Gen.Int[0, 2]).Array[1, 200];
        Gen.Select(Gen.Int[5100, 20_000], Gen.Int[5100, 20_000], ops).Sample((capacity, share, list) =>
        {
            var inbox = new AggregatorInbox(Math.Max(capacity, share), Math.Min(capacity, share));
            var queued = new Queue<int>();
            var held = new long[4];
            int id = 0;
            foreach (var (sender, bytes, reads) in list)
            {
                var message = new MqttIncoming($"t/{sender}", BitConverter.GetBytes(++id).Concat(new byte[bytes]).ToArray(), false);
                long size = AggregatorInbox.SizeOf(message);
                bool fits = inbox.Bytes + size <= inbox.CapacityBytes;
                if (held[sender] + size > inbox.PerSenderBytes)
                {
                    Assert.Equal(InboxOffer.SenderOverShare, inbox.OfferAsync(message, $"{sender}", default).AsTask().Result);
                }
                else if (fits)
                {
                    Assert.Equal(InboxOffer.Queued, inbox.OfferAsync(message, $"{sender}", default).AsTask().Result);
                    queued.Enqueue(id);
                    held[sender] += size;
                }
                Assert.InRange(inbox.Bytes, 0, inbox.CapacityBytes);
                for (int r = 0; r < reads && queued.Count > 0; r++)
                {
                    var read = inbox.ReadAsync(default).AsTask().Result;
                    Assert.Equal(queued.Dequeue(), BitConverter.ToInt32(read.Payload));
                    held[int.Parse(read.Topic[2..], System.Globalization.CultureInfo.InvariantCulture)] -= AggregatorInbox.SizeOf(read);
                }
            }
            Assert.Equal(queued.Count, inbox.Count);
            Assert.Equal(held.Sum(), inbox.Bytes);
        }, iter: 300);
    }

    [Fact]
    public async Task Inbox_VehiclesFloodOverARealBroker_HoldsAtMostItsBytes_ThenDeliversEveryMessageInOrder()
    {
        // Three vehicles publish 3 MB while the worker reads nothing: the inbox holds at most its 1 MiB, the rest waits at the
        // broker (the PUBACK waits for the inbox), and once the worker reads, every message arrives, in order, none twice.
        await using var broker = new EmbeddedBroker(new EmbeddedBrokerOptions { Port = 0, AggregatorPassword = "agg-secret" });
        await broker.StartAsync();
        const int PerVehicle = 10, Bytes = 100_000;
        var topics = new FleetTopics("flood");
        var inbox = new AggregatorInbox(1 << 20, 1 << 20, topics);
        await using var aggregator = new MqttConnection(TestMqtt.Options(broker.Port, "flood", "aggregator", "agg-secret", maxPacketSize: 256 * 1024));
        aggregator.MessageReceived += m => inbox.AcceptAsync(m, CancellationToken.None);
        await aggregator.SubscribeAsync(topics.AllUp, default);
        aggregator.Start();
        await aggregator.WaitUntilConnectedAsync(new CancellationTokenSource(Timeout).Token);
        var vehicles = new List<MqttConnection>();
        for (int v = 0; v < 3; v++)
        {
            vehicles.Add(new MqttConnection(TestMqtt.Options(broker.Port, "flood", $"car-{v}", maxPacketSize: 256 * 1024)));
            vehicles[^1].Start();
        }
        try
        {
            for (int i = 0; i < 3 * PerVehicle; i++)
            {
                var payload = new byte[Bytes];
                BitConverter.TryWriteBytes(payload, i);
                await vehicles[i % 3].PublishReliablyAsync(topics.Up($"car-{i % 3}", "update"), payload, cancellationToken: new CancellationTokenSource(Timeout).Token);
            }
            long perMessage = AggregatorInbox.SizeOf(new MqttIncoming(topics.Up("car-0", "update"), new byte[Bytes], false));
            int fit = (int)((1 << 20) / perMessage);
            await Poll.UntilAsync(() => inbox.Count == fit, $"the inbox to fill with {fit} messages", Timeout);
            Assert.True(inbox.Bytes <= inbox.CapacityBytes);

            var got = new List<int>();
            using var cts = new CancellationTokenSource(Timeout);
            while (got.Count < 3 * PerVehicle)
            {
                got.Add(BitConverter.ToInt32((await inbox.ReadAsync(cts.Token)).Payload));
                Assert.True(inbox.Bytes <= inbox.CapacityBytes);
            }
            Assert.Equal(Enumerable.Range(0, 3 * PerVehicle), got);
            Assert.Equal(0, inbox.Refused);
        }
        finally
        {
            foreach (var v in vehicles) await v.DisposeAsync();
        }
    }

    [Fact]
    public void Options_PerVehicleShareAboveTheInbox_RefusedNamingBoth()
    {
        var options = new AggregatorOptions { InboxBytes = 2 << 20, InboxBytesPerVehicle = 4 << 20 };
        var results = new List<ValidationResult>();
        Validator.TryValidateObject(options, new ValidationContext(options), results, validateAllProperties: true);
        Assert.Contains(results, r => r.ErrorMessage!.Contains("Aggregator:InboxBytesPerVehicle", StringComparison.Ordinal) && r.ErrorMessage.Contains("Aggregator:InboxBytes (", StringComparison.Ordinal));
    }
}
