using CsCheck;
using FleetLearn.Perception.Features;

namespace FleetLearn.Perception.Tests.Features;

public sealed class FrameResamplerTests
{
    [Fact]
    public void Convert_GreyToRgbUpscale_ConstantStaysConstantChannelsEqual()
    {
        var resampler = new FrameResampler([1, 28, 28], [3, 224, 224]);
        Gen.Float[0f, 1f].Sample(v =>
        {
            var dst = new float[resampler.DestinationSize];
            resampler.Convert(Enumerable.Repeat(v, 784).ToArray(), dst);
            Assert.All(dst, x => Assert.Equal(v, x, 5));
        }, iter: 20);
    }

    [Fact]
    public void Convert_IntegerUpscale_BlockCentresTakeTheSourcePixel_ValuesStayInRange()
    {
        var resampler = new FrameResampler([1, 2, 2], [3, 8, 8]);
        float[] src = [0f, 1f, 0.25f, 0.5f];
        var dst = new float[resampler.DestinationSize];
        resampler.Convert(src, dst);
        Assert.Equal(0f, dst[0]); // corners clamp to the corner pixel
        Assert.Equal(1f, dst[7]);
        Assert.Equal(0.5f, dst[63]);
        Assert.All(dst, x => Assert.InRange(x, 0f, 1f));
        Assert.Equal(dst.AsSpan(0, 64).ToArray(), dst.AsSpan(128, 64).ToArray());
    }

    [Fact]
    public void Create_RgbToGrey_Refused()
    {
        var e = Assert.Throws<ArgumentException>(() => new FrameResampler([3, 4, 4], [1, 4, 4]));
        Assert.Contains("only grey → RGB", e.Message, StringComparison.Ordinal);
    }
}
