using System.Buffers.Binary;
using System.Security.Cryptography;
using CsCheck;
using FleetLearn.Core.Rounds;

namespace FleetLearn.Transport.Mqtt.Tests;

/// <summary>Pace steering on the wire: the check-in's eligibility extension and the signed suggestion.</summary>
public sealed class PaceWireTests
{
    private static readonly ECDsa Key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    private static readonly DateTimeOffset T0 = new(2025, 1, 1, 18, 0, 0, TimeSpan.Zero);

    [Fact]
    public void Checkin_WithEligibility_RoundTripsWithAndWithoutCertificate()
    {
        Gen.Select(Gen.Int[1, 1_000_000], Gen.Byte.Array[0, 100], Gen.Byte.Array[0, 300], Gen.Long[1, (long)Checkin.MaxEligibleFor.TotalMilliseconds]).Sample((samples, key, certificate, ms) =>
        {
            var cert = certificate.Length == 0 ? null : certificate;
            var bytes = new Checkin(samples, key, cert, TimeSpan.FromMilliseconds(ms)).Encode();
            var back = Checkin.Decode(bytes);
            Assert.Equal((samples, TimeSpan.FromMilliseconds(ms)), (back.Samples, back.EligibleFor));
            Assert.Equal(key, back.DeviceKey);
            Assert.Equal(cert, back.DeviceCertificate);
            Assert.Throws<WireFormatException>(() => Checkin.Decode(bytes.AsSpan(0, bytes.Length - 1)));
            Assert.Throws<WireFormatException>(() => Checkin.Decode([.. bytes, 0]));
        });
    }

    [Fact]
    public void Checkin_OfAnOlderAgent_DecodesWithoutEligibility()
    {
        // The bytes an agent before pace steering wrote: samples, key; and samples, key, certificate.
        byte[] keyOnly = [10, 0, 0, 0, 2, 0, 7, 8], withCertificate = [.. keyOnly, 1, 0, 9];

        Assert.Null(Checkin.Decode(keyOnly).EligibleFor);
        var c = Checkin.Decode(withCertificate);
        Assert.Equal([9], c.DeviceCertificate);
        Assert.Null(c.EligibleFor);
        Assert.Equal(keyOnly, new Checkin(10, [7, 8]).Encode()); // and it still writes them so
    }

    [Theory]
    [InlineData(double.NaN, RejectReasons.NonFinite, "Check-in eligibility of NaN seconds is not a finite number.")]
    [InlineData(double.PositiveInfinity, RejectReasons.NonFinite, "Check-in eligibility of Infinity seconds is not a finite number.")]
    [InlineData(-3600.0, RejectReasons.Malformed, "Check-in eligibility ends 3600 seconds before the check-in (it must end after it).")]
    [InlineData(0.0, RejectReasons.Malformed, "Check-in eligibility ends 0 seconds before the check-in (it must end after it).")]
    [InlineData(3 * 365 * 86400.0, RejectReasons.Malformed, "Check-in eligibility of 94608000 seconds is more than 7 days ahead.")]
    public void Checkin_HostileEligibility_RefusedSayingWhy(double seconds, string reason, string message)
    {
        var bytes = new Checkin(10, [7, 8], null, TimeSpan.FromHours(1)).Encode();
        BinaryPrimitives.WriteDoubleLittleEndian(bytes.AsSpan(bytes.Length - 8), seconds);

        var e = Assert.Throws<WireFormatException>(() => Checkin.Decode(bytes));

        Assert.Equal((reason, message), (e.Reason, e.Message));
        Assert.Throws<ArgumentException>(() => new Checkin(10, [7, 8], null, TimeSpan.FromSeconds(Math.Max(-1e9, Math.Min(1e9, double.IsNaN(seconds) ? 0 : seconds)))).Encode());
    }

    [Fact]
    public void Checkin_UnknownExtensionVersion_RefusedAsVersion()
    {
        var bytes = new Checkin(10, [7, 8], null, TimeSpan.FromHours(1)).Encode();
        bytes[^9] = 2;

        var e = Assert.Throws<WireFormatException>(() => Checkin.Decode(bytes));

        Assert.Equal(RejectReasons.Version, e.Reason);
        Assert.Equal("Check-in extension version 2 is unknown (this aggregator reads version 1).", e.Message);
    }

    private static readonly Gen<PaceAdvice> GenAdvice =
        Gen.Select(Gen.Long[0, 10_000_000_000L], Gen.Long[0, 100_000_000L], Gen.Long[1, 86_400_000L], Gen.String[1, 30])
            .Select((issued, ahead, width, vehicle) => new PaceAdvice("fleet-a", vehicle, T0.AddMilliseconds(issued), T0.AddMilliseconds(issued + ahead), T0.AddMilliseconds(issued + ahead + width)));

    [Fact]
    public void PaceAdvice_SignThenVerify_ReturnsTheSameSuggestion() =>
        GenAdvice.Sample(a => Assert.Equal(a, PaceAdvice.Verify(a.Sign(Key), Key, a.Fleet, a.Vehicle)), iter: 300);

    [Fact]
    public void PaceAdvice_AnyByteFlipped_Refused() =>
        GenAdvice.SelectMany(a => Gen.Int[0, a.Sign(Key).Length - 1].Select(i => (a, i))).Sample(t =>
        {
            var bytes = t.a.Sign(Key);
            bytes[t.i] ^= 0x01;
            Assert.Throws<WireFormatException>(() => PaceAdvice.Verify(bytes, Key, t.a.Fleet, t.a.Vehicle));
        }, iter: 300);

    [Fact]
    public void PaceAdvice_Forged_Refused_ForAnotherVehicle_Refused()
    {
        using var other = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var advice = new PaceAdvice("fleet-a", "car-1", T0, T0.AddHours(20), T0.AddHours(21));

        var forged = Assert.Throws<WireFormatException>(() => PaceAdvice.Verify(advice.Sign(other), Key, "fleet-a", "car-1"));
        var unsigned = Assert.Throws<WireFormatException>(() => PaceAdvice.Verify(advice.Sign(Key)[..^66], Key, "fleet-a", "car-1"));
        var elsewhere = Assert.Throws<WireFormatException>(() => PaceAdvice.Verify(advice.Sign(Key), Key, "fleet-a", "car-2"));

        Assert.Equal((RejectReasons.Signature, "Pace suggestion signature is not valid for the pinned aggregator key."), (forged.Reason, forged.Message));
        Assert.Equal(RejectReasons.Truncated, unsigned.Reason);
        Assert.Equal((RejectReasons.NotInCohort, "Pace suggestion for car-1 of fleet fleet-a reached car-2 of fleet fleet-a."), (elsewhere.Reason, elsewhere.Message));
    }

    [Fact]
    public void PaceAdvice_EmptyOrOverlongWindow_RefusedEvenWhenSigned()
    {
        var empty = new PaceAdvice("f", "car-1", T0, T0.AddHours(2), T0.AddHours(2)).Sign(Key);
        var overlong = new PaceAdvice("f", "car-1", T0, T0, T0.AddHours(25)).Sign(Key);

        Assert.Contains("is empty or wider than 24 hours", Assert.Throws<WireFormatException>(() => PaceAdvice.Verify(empty, Key, "f", "car-1")).Message, StringComparison.Ordinal);
        Assert.Contains("is empty or wider than 24 hours", Assert.Throws<WireFormatException>(() => PaceAdvice.Verify(overlong, Key, "f", "car-1")).Message, StringComparison.Ordinal);
    }
}
