using System.Buffers.Binary;
using System.ComponentModel.DataAnnotations;
using System.Security.Cryptography;
using FleetLearn.Core.Rounds;
using FleetLearn.Storage;
using FleetLearn.Transport.Mqtt;

namespace FleetLearn.Aggregator.Tests;

/// <summary>Pace steering at the aggregator's door: hostile eligibility is refused without losing the vehicle's accepted check-in; the setting's rules.</summary>
public sealed class PaceCheckInTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("pace-checkin-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData(double.NaN, RejectReasons.NonFinite, "not a finite number")]
    [InlineData(-3600.0, RejectReasons.Malformed, "ends 3600 seconds before the check-in")]
    [InlineData(5 * 365 * 86400.0, RejectReasons.Malformed, "more than 7 days ahead")]
    public void CheckIn_HostileEligibility_RefusedWithTheReason_TheAcceptedCheckInKept(double seconds, string reason, string why)
    {
        using var store = LiteDbRoundStore.Open(Path.Combine(_dir, "round.db"));
        var roster = new FleetRoster(store, null, null);
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        byte[] Envelope(Checkin c) => new Envelope(EnvelopeKind.Checkin, "car-0", 0, Guid.NewGuid(), c.Encode()).Encode();
        roster.CheckIn("car-0", Envelope(new Checkin(40, key.ExportSubjectPublicKeyInfo(), null, TimeSpan.FromHours(3))));
        var hostile = new Checkin(90, key.ExportSubjectPublicKeyInfo(), null, TimeSpan.FromHours(1)).Encode();
        BinaryPrimitives.WriteDoubleLittleEndian(hostile.AsSpan(hostile.Length - 8), seconds);

        var e = Assert.Throws<WireFormatException>(() => roster.CheckIn("car-0", new Envelope(EnvelopeKind.Checkin, "car-0", 0, Guid.NewGuid(), hostile).Encode()));

        Assert.Equal(reason, e.Reason);
        Assert.Contains(why, e.Message, StringComparison.Ordinal);
        Assert.Equal((40, (TimeSpan?)TimeSpan.FromHours(3)), (roster.Find("car-0")!.Samples, roster.Find("car-0")!.EligibleFor)); // the accepted one stands
        Assert.Equal(["car-0"], roster.Eligible(null));
    }

    [Fact]
    public void PaceSteering_OffByDefault_RefusedWithFedBuff()
    {
        Assert.False(new AggregatorOptions().PaceSteering);
        Assert.Equal(TimeSpan.FromHours(20), new AggregatorOptions().PaceMinInterval);
        Assert.Empty(Errors(new AggregatorOptions { PaceSteering = true }));
        Assert.Contains(Errors(new AggregatorOptions { PaceSteering = true, Mode = "fedbuff" }), e => e.StartsWith("Aggregator:PaceSteering steers synchronous rounds", StringComparison.Ordinal));
    }

    private static List<string> Errors(AggregatorOptions options)
    {
        var results = new List<ValidationResult>();
        Validator.TryValidateObject(options, new ValidationContext(options), results, validateAllProperties: true);
        return [.. results.Select(r => r.ErrorMessage!)];
    }
}
