using FleetLearn.Core.SecureAggregation;
using FleetLearn.Transport.Mqtt;

namespace FleetLearn.Aggregator.Tests;

/// <summary>When the aggregator asks vehicles to slow down: twice the inbox wait (powers of two), raised at once, lowered at most every 2 s, refreshed at half its hold, cleared.</summary>
public sealed class PaceSignalTests
{
    [Theory]
    [InlineData(0.0, 0)]
    [InlineData(0.99, 0)]
    [InlineData(1.0, 2)]
    [InlineData(1.5, 4)]
    [InlineData(3.0, 8)]
    [InlineData(20.0, 64)]
    [InlineData(149.0, 300)]
    [InlineData(3600.0, 300)]
    public void HoldFor_InboxWait_TwiceItAsAPowerOfTwoSeconds_NoneUnderASecond_CappedAtFiveMinutes(double waitSeconds, int holdSeconds)
    {
        Assert.Equal(TimeSpan.FromSeconds(holdSeconds), PaceSignal.HoldFor(TimeSpan.FromSeconds(waitSeconds)));
    }

    [Fact]
    public void Observe_RaisedAtOnce_LoweredAfterTwoSeconds_RefreshedAtHalfItsHold_ClearedWhenReadsAreQuick()
    {
        var time = new ManualTimeProvider();
        var pace = new PaceSignal(time);
        Assert.Null(pace.Observe(TimeSpan.FromMilliseconds(200))); // quick reads: nothing to say

        Assert.Equal(TimeSpan.FromSeconds(8), pace.Observe(TimeSpan.FromSeconds(3))); // saturated: raised at once
        Assert.Equal(TimeSpan.FromSeconds(16), pace.Observe(TimeSpan.FromSeconds(6))); // worse: raised again at once
        Assert.Null(pace.Observe(TimeSpan.FromSeconds(6))); // the same: it stands

        Assert.Null(pace.Observe(TimeSpan.FromSeconds(1.5))); // better, but within 2 s of the last signal: not lowered yet
        time.Advance(TimeSpan.FromSeconds(2));
        Assert.Equal(TimeSpan.FromSeconds(4), pace.Observe(TimeSpan.FromSeconds(1.5)));

        time.Advance(TimeSpan.FromSeconds(1.9));
        Assert.Null(pace.Observe(TimeSpan.FromSeconds(1.5)));
        time.Advance(TimeSpan.FromSeconds(0.1));
        Assert.Equal(TimeSpan.FromSeconds(4), pace.Observe(TimeSpan.FromSeconds(1.5))); // refreshed before the retained copy expires

        time.Advance(TimeSpan.FromSeconds(2));
        Assert.Equal(TimeSpan.Zero, pace.Observe(TimeSpan.FromMilliseconds(100))); // cleared
        Assert.Null(pace.Observe(TimeSpan.FromMilliseconds(100)));
        Assert.Equal(TimeSpan.Zero, pace.Current);
        Assert.Equal(5, pace.Published);
    }

    [Fact]
    public async Task Inbox_LastWait_IsHowLongTheMessageReadLastWaited()
    {
        var time = new ManualTimeProvider();
        var inbox = new AggregatorInbox(1 << 20, 1 << 20, time: time);
        var message = new MqttIncoming("fleetlearn/v1/f/vehicles/a/up/update", new byte[10], false);
        await inbox.OfferAsync(message, "a", default);
        time.Advance(TimeSpan.FromSeconds(7));
        await inbox.OfferAsync(message, "a", default);
        time.Advance(TimeSpan.FromSeconds(1));
        await inbox.ReadAsync(default);
        Assert.Equal(TimeSpan.FromSeconds(8), inbox.LastWait);
        await inbox.ReadAsync(default);
        Assert.Equal(TimeSpan.FromSeconds(1), inbox.LastWait);
    }

    [Fact]
    public async Task Inbox_CheckInsComeAfterRoundTraffic_ANewerCheckInReplacesTheQueuedOne_BytesFollow()
    {
        static MqttIncoming CheckIn(string vehicle, byte tag) => new($"fleetlearn/v1/f/vehicles/{vehicle}/checkin", [tag, 0, 0], false);
        static MqttIncoming Keys(string vehicle, byte tag) => new($"fleetlearn/v1/f/vehicles/{vehicle}/up/secagg", [tag, 0, 0, 0], false);
        var inbox = new AggregatorInbox(1 << 20, 1 << 20);
        foreach (var (message, sender) in new[] { (CheckIn("a", 1), "a"), (CheckIn("b", 2), "b"), (Keys("a", 3), "a"), (CheckIn("a", 4), "a"), (Keys("b", 5), "b"), (CheckIn("a", 6), "a") })
            Assert.Equal(InboxOffer.Queued, await inbox.OfferAsync(message, sender, default));
        Assert.Equal(4, inbox.Count); // a's three check-ins are one: the latest
        Assert.Equal(2 * AggregatorInbox.SizeOf(CheckIn("a", 0)) + 2 * AggregatorInbox.SizeOf(Keys("a", 0)), inbox.Bytes);

        var order = new List<byte>();
        for (int i = 0; i < 4; i++) order.Add((await inbox.ReadAsync(default)).Payload[0]);
        Assert.Equal([3, 5, 6, 2], order); // round traffic first, in order; then a's latest check-in (a queued first), then b's
        Assert.Equal(0, inbox.Bytes);
        Assert.Equal(0, inbox.Count);
    }
}
