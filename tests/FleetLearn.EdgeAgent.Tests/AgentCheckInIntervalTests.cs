using FleetLearn.Core.SecureAggregation;
using FleetLearn.Core.Training;
using FleetLearn.Transport.Mqtt;
using Microsoft.Extensions.Logging.Abstractions;

namespace FleetLearn.EdgeAgent.Tests;

/// <summary>
/// <see cref="EdgeAgentOptions.CheckInInterval"/>: an idle vehicle whose check-in would say the same repeats it once per
/// check-in interval, not on every resend pass (10,000 agents every 5 s flooded the aggregator ahead of the round's own
/// messages); anything that changes the check-in still goes on the next pass, and the check-in expires after two intervals.
/// </summary>
public sealed class AgentCheckInIntervalTests : IDisposable
{
    private static readonly DateTimeOffset T0 = new(2026, 12, 6, 0, 0, 0, TimeSpan.Zero);
    private readonly string _dir = Directory.CreateTempSubdirectory("fl-checkin-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task Publish_SameCheckIn_OncePerInterval_AChangeAtOnce()
    {
        await using var pair = await UplinkBrokerPair.StartAsync("fleet-c", TimeSpan.FromSeconds(20));
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        await pair.Aggregator.SubscribeAsync(pair.Aggregator.Topics.Checkin("car-0"), timeout.Token);
        var options = new EdgeAgentOptions
        {
            VehicleId = "car-0", DatabasePath = Path.Combine(_dir, "car-0.db"), PrivacyLedgerPath = Path.Combine(_dir, "car-0-privacy.db"),
            ResendInterval = TimeSpan.FromSeconds(5), CheckInInterval = TimeSpan.FromSeconds(30),
        };
        var (outbox, ledger) = AgentUplink.OpenStores(options, NullLogger.Instance);
        using var _o = outbox;
        using var _l = ledger;
        var clock = new ManualTimeProvider(T0);
        var checkIn = new AgentCheckIn(options, VehicleStateProviders.Idle, null, outbox, ledger, pair.Vehicle, [1, 2, 3], null, NullLogger.Instance, clock);
        var data = new LabeledData(new float[4 * 10], new byte[10], 4, 2);
        var ten = new VehicleDataset(data, [.. Enumerable.Range(0, 10)]);
        var eight = new VehicleDataset(data, [.. Enumerable.Range(0, 8)]);

        // Resend passes every 5 s for a minute: the first one sends, then one more once 25 s have passed (30 s − one pass).
        var sentAt = new List<int>();
        for (int second = 0; second <= 60; second += 5)
        {
            await checkIn.PublishAsync(ten, timeout.Token);
            if (await Arrived(pair)) sentAt.Add(second);
            clock.Advance(TimeSpan.FromSeconds(5));
        }
        Assert.Equal([0, 25, 50], sentAt);

        // A different check-in (fewer samples) is not held back …
        await checkIn.PublishAsync(eight, timeout.Token);
        Assert.True(await Arrived(pair));
        // … nor is the next one after the vehicle decided a round (its last round changed) …
        outbox.SetState(AgentCheckIn.LastRoundKey, 7);
        await checkIn.PublishAsync(eight, timeout.Token);
        Assert.True(await Arrived(pair));
        // … and the same again is.
        await checkIn.PublishAsync(eight, timeout.Token);
        Assert.False(await Arrived(pair));
        lock (pair.Received) Assert.Equal(5, pair.Received.Count);
    }

    [Fact]
    public void Validate_IntervalShorterThanTheResendPass_IsRefused()
    {
        var options = new EdgeAgentOptions { VehicleId = "car-0", ResendInterval = TimeSpan.FromSeconds(15), CheckInInterval = TimeSpan.FromSeconds(5) };
        var errors = options.Validate(new System.ComponentModel.DataAnnotations.ValidationContext(options)).Select(e => e.ErrorMessage).ToList();
        Assert.Contains("Agent:CheckInInterval must be at least Agent:ResendInterval (check-ins go on resend passes).", errors);
    }

    /// <summary>Whether a check-in reached the aggregator (within half a second: on loopback one takes milliseconds).</summary>
    private static Task<bool> Arrived(UplinkBrokerPair pair) => pair.Arrived.WaitAsync(TimeSpan.FromMilliseconds(500));
}
