using System.Security.Cryptography;
using FleetLearn.Core.Rounds;
using FleetLearn.Core.SecureAggregation;
using FleetLearn.Storage;
using FleetLearn.Transport.Mqtt;
using Microsoft.Extensions.Logging.Abstractions;

namespace FleetLearn.EdgeAgent.Tests;

/// <summary>The vehicle's side of pace steering on a fake clock: which suggestions it keeps, when it holds a check-in back, what survives a restart.</summary>
public sealed class AgentPaceTests : IDisposable
{
    private static readonly DateTimeOffset T0 = new(2025, 1, 1, 18, 30, 0, TimeSpan.Zero);
    private readonly string _dir = Directory.CreateTempSubdirectory("fl-pace-").FullName;
    private readonly ECDsa _aggregator = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    private readonly ManualTimeProvider _clock = new(T0);

    public void Dispose()
    {
        _aggregator.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    private LiteDbOutbox Outbox() => LiteDbOutbox.Open(Path.Combine(_dir, "car-0.db"));

    private AgentPace Pace(LiteDbOutbox outbox) => new(outbox, _aggregator, "fleet-a", "car-0", _clock, NullLogger.Instance);

    private byte[] Signed(DateTimeOffset issued, DateTimeOffset from, TimeSpan width, ECDsa? key = null, string vehicle = "car-0") =>
        new PaceAdvice("fleet-a", vehicle, issued, from, from + width).Sign(key ?? _aggregator);

    [Fact]
    public void MayCheckIn_NoSuggestion_Yes_BeforeTheWindow_No_InIt_Yes_AfterIt_Yes()
    {
        using var outbox = Outbox();
        var pace = Pace(outbox);
        Assert.True(pace.MayCheckIn()); // never received one: its next eligible moment

        var from = new DateTimeOffset(2025, 1, 2, 19, 0, 0, TimeSpan.Zero);
        Assert.True(pace.Accept(Signed(T0, from, TimeSpan.FromHours(1))));
        Assert.False(pace.MayCheckIn());
        _clock.Advance(from - T0 - TimeSpan.FromMilliseconds(1));
        Assert.False(pace.MayCheckIn()); // a millisecond before it opens
        _clock.Advance(TimeSpan.FromMilliseconds(1));
        Assert.True(pace.MayCheckIn()); // it opened
        _clock.Advance(TimeSpan.FromHours(5));
        Assert.True(pace.MayCheckIn()); // it passed unused: the next eligible moment
        Assert.Equal(2, pace.Held);
    }

    [Fact]
    public void Accept_OlderOrEqualIssue_Ignored_NewerReplaces_PassedWindowIgnored()
    {
        using var outbox = Outbox();
        var pace = Pace(outbox);
        var from = T0.AddHours(20);
        Assert.True(pace.Accept(Signed(T0, from, TimeSpan.FromHours(1))));

        Assert.False(pace.Accept(Signed(T0.AddMinutes(-5), T0.AddMinutes(1), TimeSpan.FromHours(1)))); // an older one replayed
        Assert.False(pace.Accept(Signed(T0, T0.AddMinutes(1), TimeSpan.FromHours(1)))); // same issue time
        Assert.Equal(from, pace.Current!.From);
        Assert.False(pace.Accept(Signed(T0.AddMinutes(1), T0.AddHours(-3), TimeSpan.FromHours(1)))); // newer, but its window is over
        Assert.Equal(from, pace.Current!.From);

        Assert.True(pace.Accept(Signed(T0.AddMinutes(2), T0.AddHours(22), TimeSpan.FromHours(1))));
        Assert.Equal(T0.AddHours(22), pace.Current!.From);
    }

    [Fact]
    public void Accept_ForgedUnsignedOrAnotherVehicles_ThrowsAndChangesNothing()
    {
        using var outbox = Outbox();
        using var intruder = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var pace = Pace(outbox);
        var from = T0.AddHours(20);
        pace.Accept(Signed(T0, from, TimeSpan.FromHours(1)));

        var forged = Assert.Throws<WireFormatException>(() => pace.Accept(Signed(T0.AddMinutes(1), T0, TimeSpan.FromHours(1), intruder)));
        var unsigned = Assert.Throws<WireFormatException>(() => pace.Accept(Signed(T0.AddMinutes(1), T0, TimeSpan.FromHours(1))[..^66]));
        var other = Assert.Throws<WireFormatException>(() => pace.Accept(Signed(T0.AddMinutes(1), T0, TimeSpan.FromHours(1), vehicle: "car-9")));

        Assert.Equal(RejectReasons.Signature, forged.Reason);
        Assert.Equal(RejectReasons.Truncated, unsigned.Reason);
        Assert.Equal(RejectReasons.NotInCohort, other.Reason);
        Assert.Equal((T0, from), (pace.Current!.Issued, pace.Current.From));
        Assert.False(pace.MayCheckIn()); // still held to the aggregator's window, not the intruder's "now"
    }

    [Fact]
    public void Suggestion_SurvivesARestart_NoneStoredMeansNone()
    {
        var from = T0.AddHours(20);
        using (var outbox = Outbox())
        {
            Assert.Null(Pace(outbox).Current);
            Pace(outbox).Accept(Signed(T0, from, TimeSpan.FromHours(1)));
        }
        using (var outbox = Outbox())
        {
            var pace = Pace(outbox);
            Assert.Equal(new PaceAdvice("fleet-a", "car-0", T0, from, from.AddHours(1)), pace.Current);
            Assert.False(pace.MayCheckIn());
            Assert.False(pace.Accept(Signed(T0, T0.AddHours(1), TimeSpan.FromHours(1)))); // a replay of an old one after the restart
        }
    }

    [Theory]
    [InlineData(null, null)]
    [InlineData(-60.0, null)] // over
    [InlineData(0.5, null)] // under a second: not worth reporting
    [InlineData(7200.0, 7200.0)]
    [InlineData(30 * 86400.0, 7 * 86400.0)] // a month parked: the most a check-in carries
    public void EligibleFor_FromThePlatformsUntil(double? secondsAhead, double? expected)
    {
        var until = secondsAhead is { } s ? T0.AddSeconds(s) : (DateTimeOffset?)null;

        Assert.Equal(expected is { } e ? TimeSpan.FromSeconds(e) : null, AgentCheckIn.EligibleFor(until, T0));
    }

    [Fact]
    public void EligibleUntil_ReadFromTheGatewaysDocumentAndTheStateFile_AbsentOrUnreadableIsUnknown()
    {
        var parsed = VehicleStateJson.Parse("""{"ignition":false,"speed_kmh":0,"charging":true,"network":"wifi","eligible_until":"2025-01-02T06:30:00+01:00"}"""u8, "test");
        Assert.Equal(new DateTimeOffset(2025, 1, 2, 5, 30, 0, TimeSpan.Zero), parsed.EligibleUntil);
        Assert.Null(VehicleStateJson.Parse("""{"charging":true}"""u8, "test").EligibleUntil);
        Assert.Null(VehicleStateJson.Parse("""{"charging":true,"eligible_until":"soon"}"""u8, "test").EligibleUntil);

        var file = Path.Combine(_dir, "state.json");
        File.WriteAllText(file, """{"parked":true,"charging":true,"unmetered":true,"eligible_until":"2025-01-02T05:30:00Z"}""");
        var state = new FileVehicleStateProvider(new EdgeAgentOptions { VehicleStateFile = file }).Current();
        Assert.Equal((true, new DateTimeOffset(2025, 1, 2, 5, 30, 0, TimeSpan.Zero)), (state.Charging, state.EligibleUntil!.Value));
    }
}
