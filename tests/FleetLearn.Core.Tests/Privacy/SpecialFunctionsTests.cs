using FleetLearn.Core.Privacy;

namespace FleetLearn.Core.Tests.Privacy;

public sealed class SpecialFunctionsTests
{
    // Independent reference: erfc by the Maclaurin series of erf (|x| ≤ 2) or Lentz's continued fraction (x ≥ 2).
    private static double ReferenceErfc(double x)
    {
        if (Math.Abs(x) <= 2)
        {
            double sum = 0, term = x;
            for (int n = 0; n < 200; n++)
            {
                sum += term / (2 * n + 1);
                term *= -x * x / (n + 1);
            }
            return 1 - 2 / Math.Sqrt(Math.PI) * sum;
        }
        if (x < 0) return 2 - ReferenceErfc(-x);
        // erfc(x) = e^(−x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + …))))
        double f = x;
        for (int k = 300; k >= 1; k--) f = x + k / 2.0 / f;
        return Math.Exp(-x * x) / Math.Sqrt(Math.PI) / f;
    }

    [Theory]
    [InlineData(-3.0)]
    [InlineData(-0.7)]
    [InlineData(0.0)]
    [InlineData(0.3)]
    [InlineData(0.46875)]
    [InlineData(1.0)]
    [InlineData(2.5)]
    [InlineData(4.0)]
    [InlineData(5.5)]
    [InlineData(12.0)]
    public void Erfc_AgainstSeriesAndContinuedFraction_Within1e13Relative(double x)
    {
        double expected = ReferenceErfc(x);
        Assert.True(Math.Abs(SpecialFunctions.Erfc(x) - expected) <= 1e-13 * expected, $"erfc({x}) = {SpecialFunctions.Erfc(x):R}, reference {expected:R}");
    }

    [Fact]
    public void Erfc_KnownValue_MatchesTable()
        => Assert.Equal(0.157299207050285130658779364917, SpecialFunctions.Erfc(1.0), 15);

    [Theory]
    [InlineData(10.0)]
    [InlineData(27.0)]
    [InlineData(100.0)]
    [InlineData(1e4)]
    public void LogErfc_LargeArgument_MatchesAsymptoticExpansion(double x)
    {
        double expected = SpecialFunctions.LogErfcAsymptotic(x);
        double actual = SpecialFunctions.LogErfc(x);
        Assert.True(double.IsFinite(actual));
        Assert.True(Math.Abs(actual - expected) <= 1e-12 * Math.Abs(expected) + 1e-10, $"log erfc({x}) = {actual:R}, asymptotic {expected:R}");
    }

    [Fact]
    public void LogErfc_ContinuousAcrossIntervalBoundary()
        => Assert.Equal(SpecialFunctions.LogErfc(4.0 - 1e-12), SpecialFunctions.LogErfc(4.0 + 1e-12), 10);

    [Theory]
    [InlineData(1e-20)]
    [InlineData(1e-9)]
    [InlineData(-0.5)]
    [InlineData(3.0)]
    public void Log1pExpm1_AreInverses(double x)
        => Assert.Equal(x, SpecialFunctions.Log1p(SpecialFunctions.Expm1(x)), Math.Abs(x) * 1e-14);

    [Fact]
    public void LogAddLogSub_RoundTrip()
    {
        double a = Math.Log(5.0), b = Math.Log(3.0);
        Assert.Equal(Math.Log(8.0), SpecialFunctions.LogAdd(a, b), 14);
        Assert.Equal(Math.Log(2.0), SpecialFunctions.LogSub(a, b), 13);
        Assert.Equal(a, SpecialFunctions.LogAdd(a, double.NegativeInfinity));
        Assert.Throws<ArithmeticException>(() => SpecialFunctions.LogSub(b, a));
    }
}
