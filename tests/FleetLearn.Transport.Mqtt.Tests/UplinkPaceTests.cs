using CsCheck;
using FleetLearn.Core.Rounds;

namespace FleetLearn.Transport.Mqtt.Tests;

/// <summary>The aggregator's pace signal: a 4-byte hold, capped at five minutes; empty is no hold; anything else rejected.</summary>
public sealed class UplinkPaceTests
{
    [Fact]
    public void EncodeDecode_AnyHoldUpToTheCap_RoundTripsToTheMillisecond()
    {
        Gen.UInt[0, (uint)UplinkPace.MaxHold.TotalMilliseconds].Sample(ms =>
            Assert.Equal(TimeSpan.FromMilliseconds(ms), UplinkPace.Decode(UplinkPace.Encode(TimeSpan.FromMilliseconds(ms)))));
    }

    [Fact]
    public void Decode_AnyFourBytes_NeverMoreThanTheCap_NeverNegative()
    {
        Gen.Byte.Array[4].Sample(bytes =>
        {
            var hold = UplinkPace.Decode(bytes);
            Assert.InRange(hold, TimeSpan.Zero, UplinkPace.MaxHold);
        });
    }

    [Fact]
    public void Encode_BeyondTheCapOrNegative_Clamped_Empty_IsNoHold_OtherLengths_Rejected()
    {
        Assert.Equal(UplinkPace.MaxHold, UplinkPace.Decode(UplinkPace.Encode(TimeSpan.FromHours(3))));
        Assert.Equal(TimeSpan.Zero, UplinkPace.Decode(UplinkPace.Encode(TimeSpan.FromSeconds(-4))));
        Assert.Equal(TimeSpan.Zero, UplinkPace.Decode([]));
        Gen.Byte.Array[0, 16].Where(b => b.Length is not (0 or 4)).Sample(bytes =>
            Assert.Equal($"A pace signal is 4 bytes, not {bytes.Length}.", Assert.Throws<WireFormatException>(() => UplinkPace.Decode(bytes)).Message));
    }
}
