using CsCheck;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Core.Tests.SecureAggregation;

public sealed class PackedInputTests
{
    [Fact]
    public void TryPack_ValuesBelowTwoToTheM_UnpackToTheSameValues()
    {
        Gen.Int[1, 32].SelectMany(bits => Gen.UInt.Select(v => bits == 32 ? v : v & ((1u << bits) - 1)).Array[0, 300].Select(values => (bits, values)))
            .Sample(c =>
            {
                var packed = PackedInput.TryPack(c.values, c.bits);
                Assert.NotNull(packed);
                Assert.Equal(c.values, packed.Unpack());
                Assert.Equal(BitPacking.PackedLength(c.values.Length, c.bits), packed.PackedBytes);
            });
    }

    [Fact]
    public void TryPack_AValueAtTwoToTheM_IsNotPacked()
    {
        Gen.Int[1, 31].SelectMany(bits => Gen.Int[0, 99].Select(at => (bits, at))).Sample(c =>
        {
            var values = new uint[100];
            values[c.at] = 1u << c.bits;
            Assert.Null(PackedInput.TryPack(values, c.bits));
        });
    }

    [Fact]
    public void TryPack_TwoToTheEighteenValuesAtTwentyBits_HoldsFiveEighthsOfTheUintArray()
    {
        var values = new uint[1 << 18];
        var random = new System.Random(7);
        for (int i = 0; i < values.Length; i++) values[i] = (uint)random.Next(1 << 20);
        var packed = PackedInput.TryPack(values, 20)!;
        Assert.Equal(655_360, packed.PackedBytes); // against 1,048,576 bytes as uint[]
        Assert.Equal(values, packed.Unpack());
    }
}
