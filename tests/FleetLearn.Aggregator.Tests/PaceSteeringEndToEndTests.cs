using System.Collections.Concurrent;
using System.Security.Cryptography;
using FleetLearn.Core.Rounds;
using FleetLearn.Core.SecureAggregation;
using FleetLearn.EdgeAgent;
using FleetLearn.Testing;
using FleetLearn.Transport.Mqtt;
using FleetLearn.Transport.Mqtt.Broker;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace FleetLearn.Aggregator.Tests;

/// <summary>
/// Aggregator:PaceSteering as deployed: the real aggregator and twelve real agents over the embedded broker, on one manual clock
/// (the workers' timers run in real time; the hours of the day are the clock's). Every vehicle stays on the depot charger and
/// Wi-Fi, and reports at each check-in that its charging session ends at the next midnight UTC; all twelve first check in at
/// 18:00 on day 1.
/// </summary>
[Collection("Aggregator meter")]
public sealed class PaceSteeringEndToEndTests : IAsyncLifetime
{
    private const string Secret = "agg-secret";
    private const string Fleet = "paced";
    private const int Vehicles = 12;
    private static readonly DateTimeOffset Day1 = new(2025, 1, 1, 18, 0, 0, TimeSpan.Zero);
    private static readonly ILoggerFactory Logs = TestLogs.Factory;
    private readonly string _dir = Directory.CreateTempSubdirectory("fl-pace-").FullName;
    private readonly ManualTimeProvider _clock = new(Day1);
    private readonly List<EdgeAgentWorker> _agents = [];
    private readonly ConcurrentQueue<PaceEvent> _events = new();
    private AggregatorWorker? _aggregator;
    private EmbeddedBroker _broker = null!;

    public async Task InitializeAsync()
    {
        _broker = new EmbeddedBroker(new EmbeddedBrokerOptions { Port = 0, AggregatorPassword = Secret, AggregatorIdentities = ["aggregator", "intruder"] });
        await _broker.StartAsync();
    }

    public async Task DisposeAsync()
    {
        foreach (var worker in _agents.Cast<Microsoft.Extensions.Hosting.BackgroundService>().Append(_aggregator).OfType<Microsoft.Extensions.Hosting.BackgroundService>())
        {
            await worker.StopAsync(CancellationToken.None);
            worker.Dispose();
        }
        await _broker.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public async Task PaceSteering_TwelveAgents_SpreadOverTheirSixHours_NobodyChecksInBeforeItsWindow_ForgedSuggestionsIgnored()
    {
        var status = await StartAggregatorAsync();
        await StartAgentsAsync();

        // Day 1, 18:00: every agent checks in and is handed a window of its usual hours (18–23), the least loaded first.
        await WaitUntilAsync(() => _agents.All(a => a.Pace?.Current is not null), "every agent holds a suggestion");
        var windows = _agents.ToDictionary(a => a.VehicleId, a => a.Pace!.Current!);
        Assert.All(windows.Values, w => Assert.Equal((Day1, TimeSpan.FromHours(1)), (w.Issued, w.Until - w.From)));
        Assert.Equal(Enumerable.Range(18, 6).ToDictionary(h => h, _ => 2), windows.Values.GroupBy(w => w.From.Hour).ToDictionary(g => g.Key, g => g.Count()));
        Assert.All(windows.Values, w => Assert.Equal(Day1.Date.AddDays(1), w.From.UtcDateTime.Date)); // at least 20 h ahead: the next day
        Assert.Equal(Vehicles, _events.Count(e => e.Suggestion is not null && !e.Repeated)); // one window each; a check-in before the answer came is answered with the same window
        Assert.Equal(_events.Count(e => e.Suggestion is not null), status.PaceSuggestions);
        Assert.All(_events, e => Assert.Equal((TimeSpan.FromHours(6), (DateTimeOffset?)Day1), (e.EligibleFor, e.SentAt)));

        // A suggestion signed with another key, and one without a signature, opening now: car-0 must ignore both.
        var car0 = _agents[0];
        int rejected = car0.Rejected;
        await SendAsIntruderAsync(car0.VehicleId);
        await WaitUntilAsync(() => car0.Rejected == rejected + 2, "car-0 rejected both forged suggestions");
        Assert.Equal(windows[car0.VehicleId], car0.Pace!.Current);

        // Day 2, 17:59: all are eligible again, no window has opened: nobody checks in. (The events name the time each vehicle
        // stamped on its check-in: a check-in sent on day 1 may reach the aggregator after the clock moved.)
        var day2 = new DateTimeOffset(2025, 1, 2, 18, 0, 0, TimeSpan.Zero);
        _clock.Advance(day2 - TimeSpan.FromMinutes(1) - _clock.GetUtcNow());
        await WaitForPassesAsync(_agents);
        Assert.DoesNotContain(_events, e => e.SentAt > Day1);

        // 18:00: the two vehicles of hour 18 check in (and are steered again, a day on); the other ten still wait.
        _clock.Advance(TimeSpan.FromMinutes(1));
        var at18 = windows.Where(w => w.Value.From.Hour == 18).Select(w => w.Key).Order().ToArray();
        await WaitUntilAsync(() => at18.All(v => _events.Any(e => e.Vehicle == v && e.SentAt == day2 && !e.Repeated)), "the hour-18 vehicles checked in");
        await WaitForPassesAsync(_agents.Where(a => !at18.Contains(a.VehicleId)));
        Assert.Equal(at18, _events.Where(e => e.SentAt > Day1).Select(e => e.Vehicle).Distinct().Order());
        Assert.All(_events.Where(e => e.SentAt > Day1), e => Assert.Equal(day2, e.SentAt)); // none before its window opened
        Assert.All(at18, v => Assert.Equal(day2.AddDays(1), _agents.Single(a => a.VehicleId == v).Pace!.Current!.From)); // the least-loaded hour is 18 again

        // Day 3, 02:00: the other ten windows passed (day 2, 19:00–24:00) while the vehicles held back; each checks in at its
        // next eligible moment, now. The hour-18 pair holds day 3's windows and waits.
        var day3 = new DateTimeOffset(2025, 1, 3, 2, 0, 0, TimeSpan.Zero);
        _clock.Advance(day3 - _clock.GetUtcNow());
        var others = windows.Keys.Except(at18).Order().ToArray();
        await WaitUntilAsync(() => others.All(v => _events.Any(e => e.Vehicle == v && e.SentAt == day3 && !e.Repeated)), "the ten whose windows passed checked in");
        await WaitForPassesAsync(_agents.Where(a => at18.Contains(a.VehicleId)));
        Assert.DoesNotContain(_events, e => at18.Contains(e.Vehicle) && e.SentAt == day3);
        Assert.All(others, v => Assert.InRange(_agents.Single(a => a.VehicleId == v).Pace!.Current!.From, day3.AddHours(20), day3.AddHours(44))); // steered again, at least 20 h on
    }

    /// <summary>Waits until each agent has held back at least two more check-ins: it evaluated its window twice since now.</summary>
    private static async Task WaitForPassesAsync(IEnumerable<EdgeAgentWorker> agents)
    {
        var start = agents.ToDictionary(a => a, a => a.Pace!.Held);
        await WaitUntilAsync(() => start.All(p => p.Key.Pace!.Held >= p.Value + 2), "every agent held back two check-ins");
    }

    private static async Task WaitUntilAsync(Func<bool> condition, string what)
    {
        var until = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < until, $"timed out waiting until {what}");
            await Task.Delay(20);
        }
    }

    private async Task SendAsIntruderAsync(string vehicle)
    {
        using var wrongKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var now = _clock.GetUtcNow();
        var forged = new PaceAdvice(Fleet, vehicle, now.AddMinutes(1), now, now.AddHours(1)).Sign(wrongKey);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await using var intruder = new MqttConnection(TestMqtt.Options(_broker.Port, Fleet, "intruder", Secret));
        intruder.Start(cts.Token);
        await intruder.WaitUntilConnectedAsync(cts.Token);
        await intruder.PublishReliablyAsync(intruder.Topics.Inbox(vehicle, PaceAdvice.InboxKind), forged, cancellationToken: cts.Token);
        await intruder.PublishReliablyAsync(intruder.Topics.Inbox(vehicle, PaceAdvice.InboxKind), forged[..^66], cancellationToken: cts.Token);
    }

    private async Task<AggregatorStatus> StartAggregatorAsync()
    {
        using (SigningKeys.LoadOrCreate(Path.Combine(_dir, "signing.pem"))) { }
        var status = new AggregatorStatus();
        status.PaceAdvised += _events.Enqueue;
        var options = new AggregatorOptions
        {
            Model = "8-6-3",
            PaceSteering = true,
            CohortSize = 100, // no round opens: the test is about check-ins
            MinParticipants = 100,
            DatabasePath = Path.Combine(_dir, "agg.db"),
            SigningKeyPath = Path.Combine(_dir, "signing.pem"),
            OnnxFolder = null,
        };
        _aggregator = new AggregatorWorker(Options.Create(options), Options.Create(TestMqtt.Options(_broker.Port, Fleet, "aggregator", Secret)), status, _clock, Logs.CreateLogger<AggregatorWorker>());
        await _aggregator.StartAsync(CancellationToken.None);
        await WaitUntilAsync(() => status.Running, "the aggregator runs");
        return status;
    }

    private async Task StartAgentsAsync()
    {
        using var key = SigningKeys.LoadOrCreate(Path.Combine(_dir, "signing.pem"));
        string publicKey = key.ExportSubjectPublicKeyInfoPem();
        var data = EndToEndTests.SyntheticData(600, seed: 3);
        var parts = FleetLearn.Core.Federated.Partitioner.Split(data.Labels, Vehicles, new FleetLearn.Core.Federated.PartitionScheme.Iid(), 7);
        for (int i = 0; i < Vehicles; i++)
        {
            string id = $"car-{i}";
            var options = new EdgeAgentOptions
            {
                VehicleId = id,
                AggregatorPublicKey = publicKey,
                PinnedModelSpec = "8-6-3",
                DatabasePath = Path.Combine(_dir, $"{id}.db"),
                ResendInterval = TimeSpan.FromMilliseconds(300),
            };
            var agent = new EdgeAgentWorker(Options.Create(options), Options.Create(TestMqtt.Options(_broker.Port, Fleet, id)), new VehicleDataset(data, parts[i]), _clock,
                Logs.CreateLogger<EdgeAgentWorker>(), new EveningsUntilMidnight(_clock));
            await agent.StartAsync(CancellationToken.None);
            _agents.Add(agent);
        }
    }

    /// <summary>A vehicle on the depot charger and Wi-Fi whose platform schedules each charging session to end at midnight UTC.</summary>
    private sealed class EveningsUntilMidnight(TimeProvider clock) : IVehicleStateProvider
    {
        public VehicleState Current() => VehicleState.Idle with { EligibleUntil = new DateTimeOffset(clock.GetUtcNow().UtcDateTime.Date.AddDays(1), TimeSpan.Zero) };
    }
}
