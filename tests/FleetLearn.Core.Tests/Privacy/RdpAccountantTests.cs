using FleetLearn.Core.Privacy;

namespace FleetLearn.Core.Tests.Privacy;

public sealed class RdpAccountantTests
{
    private static void AssertRelative(double expected, double actual, double rtol)
        => Assert.True(Math.Abs(actual - expected) <= rtol * Math.Abs(expected), $"expected {expected:R}, got {actual:R} (rtol {rtol})");

    // TF-Privacy rdp_accountant_test.testComputeRdpSequence.
    [Fact]
    public void ComputeRdp_TfPrivacySequenceVector_MatchesToRtol1e4()
    {
        double[] orders = [1.5, 2.5, 5, 50, 100];
        double[] expected = [6.5007e-04, 1.0854e-03, 2.1808e-03, 2.3846e-02, 1.6742e+02];
        var rdp = RdpAccountant.ComputeRdp(0.01, 2.5, 50, orders);
        for (int i = 0; i < orders.Length; i++) AssertRelative(expected[i], rdp[i], 1e-4);
    }

    // TF-Privacy rdp_accountant_test.testComputeRdpScalar.
    [Fact]
    public void ComputeRdp_TfPrivacyScalarVector_Equals0Point07737()
        => AssertRelative(0.07737, RdpAccountant.ComputeRdp(0.1, 2, 10, 5), 1e-4);

    // TF-Privacy rdp_accountant_test.testComputeRdpNoSampling: q = 1 is the plain Gaussian mechanism α/(2σ²).
    [Fact]
    public void ComputeRdp_NoSampling_EqualsAlphaOverTwoSigmaSquared()
        => Assert.Equal(0.1, RdpAccountant.ComputeRdp(1, 10, 1, 20), 15);

    [Fact]
    public void ComputeRdp_ZeroSamplingRate_IsZero()
        => Assert.Equal(0.0, RdpAccountant.ComputeRdp(0, 1, 100, 8));

    [Fact]
    public void ComputeRdp_FractionalOrderBetweenIntegers_LiesBetweenNeighbours()
    {
        // RDP is non-decreasing in α: the two-series expression must agree with the integer closed form's ordering.
        double r4 = RdpAccountant.ComputeRdp(0.05, 1.1, 1, 4), r45 = RdpAccountant.ComputeRdp(0.05, 1.1, 1, 4.5), r5 = RdpAccountant.ComputeRdp(0.05, 1.1, 1, 5);
        Assert.True(r4 < r45 && r45 < r5, $"{r4} < {r45} < {r5}");
        // And the fractional series at α = 4 + 1e-9 agrees with the integer form at 4.
        AssertRelative(r4, RdpAccountant.ComputeRdp(0.05, 1.1, 1, 4 + 1e-9), 1e-6);
    }

    [Fact]
    public void GetEpsilon_ClassicConversion_IsNeverSmallerThanImproved()
    {
        var improved = RdpAccountant.GetEpsilon(0.01, 1.0, 1000, 1e-5);
        var classic = RdpAccountant.GetEpsilon(0.01, 1.0, 1000, 1e-5, conversion: RdpConversion.Classic);
        Assert.True(classic.Epsilon > improved.Epsilon, $"classic {classic.Epsilon} vs improved {improved.Epsilon}");
    }

    [Theory]
    [InlineData(0.01, 1.0, 1000, 1e-5)]
    [InlineData(0.1, 0.8, 100, 1e-6)]
    [InlineData(1.0, 5.0, 10, 1e-5)]
    [InlineData(0.001, 0.6, 10000, 1e-5)]
    public void GetNoiseMultiplier_InvertsGetEpsilon_To1e4(double q, double sigma, long steps, double delta)
    {
        double eps = RdpAccountant.GetEpsilon(q, sigma, steps, delta).Epsilon;
        double recovered = RdpAccountant.GetNoiseMultiplier(q, eps, steps, delta);
        AssertRelative(sigma, recovered, 1e-4);
        Assert.True(RdpAccountant.GetEpsilon(q, recovered, steps, delta).Epsilon <= eps, "the returned σ must meet the target");
    }

    [Fact]
    public void GetEpsilon_MoreSteps_GivesMoreEpsilon()
    {
        double previous = 0;
        foreach (long steps in new long[] { 1, 10, 100, 1000, 10000 })
        {
            double eps = RdpAccountant.GetEpsilon(0.01, 1.0, steps, 1e-5).Epsilon;
            Assert.True(eps > previous, $"steps {steps}: {eps} ≤ {previous}");
            previous = eps;
        }
    }

    [Fact]
    public void GetEpsilon_MoreNoise_GivesLessEpsilon()
    {
        double previous = double.PositiveInfinity;
        foreach (double sigma in new[] { 0.5, 0.7, 1.0, 1.5, 2.0, 4.0, 8.0 })
        {
            double eps = RdpAccountant.GetEpsilon(0.01, sigma, 1000, 1e-5).Epsilon;
            Assert.True(eps < previous, $"σ {sigma}: {eps} ≥ {previous}");
            previous = eps;
        }
    }

    [Fact]
    public void DefaultOrders_StartWithOpacusGridAndEndAt512()
    {
        var orders = RdpAccountant.DefaultOrders;
        Assert.Equal(1.1, orders[0], 12);
        Assert.Equal(10.9, orders[98], 12);
        Assert.Equal(12.0, orders[99]);
        Assert.Equal(63.0, orders[150]);
        Assert.Equal([64.0, 128.0, 256.0, 512.0], orders.Skip(151));
    }

    [Theory]
    [InlineData(-0.1, 1.0)]
    [InlineData(1.1, 1.0)]
    [InlineData(0.5, 0.0)]
    [InlineData(0.5, -1.0)]
    [InlineData(double.NaN, 1.0)]
    public void ComputeRdp_InvalidParameters_Throws(double q, double sigma)
        => Assert.Throws<ArgumentOutOfRangeException>(() => RdpAccountant.ComputeRdp(q, sigma, 1, 2.0));
}
