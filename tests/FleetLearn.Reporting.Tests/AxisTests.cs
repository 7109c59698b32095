using CsCheck;
using FleetLearn.Reporting.Rendering;

namespace FleetLearn.Reporting.Tests;

public sealed class AxisTests
{
    [Theory]
    [InlineData(0.13, 0.2)]
    [InlineData(0.7, 1.0)]
    [InlineData(1.0, 1.0)]
    [InlineData(3.0, 5.0)]
    [InlineData(12.0, 20.0)]
    [InlineData(2.0e6, 2.0e6)]
    public void NiceStep_RoughStep_RoundsUpToOneTwoOrFive(double rough, double expected)
    {
        Assert.Equal(expected, Axis.NiceStep(rough), 9);
    }

    [Fact]
    public void Linear_AccuracyRange_SnapsToZeroAndOneWithRoundLabels()
    {
        var axis = Axis.Linear(0.1, 0.87, null, null, targetTicks: 6, integerSteps: false);

        Assert.Equal(0, axis.Min, 9);
        Assert.Equal(1, axis.Max, 9);
        Assert.Equal(["0", "0.2", "0.4", "0.6", "0.8", "1.0"], axis.Ticks.Select(t => t.Label));
    }

    [Fact]
    public void Linear_ByteCounts_UseMegaSuffix()
    {
        var axis = Axis.Linear(0, 12_000_000, null, null, targetTicks: 5, integerSteps: false);

        Assert.Contains("5M", axis.Ticks.Select(t => t.Label));
        Assert.Equal("0", axis.Ticks[0].Label);
    }

    [Theory]
    [InlineData(4)]
    [InlineData(6)]
    [InlineData(11)]
    public void Linear_Rounds1To50_EndsAtFiftyWithoutOvershoot(int target)
    {
        var axis = Axis.Linear(1, 50, null, null, target, integerSteps: true);

        Assert.Equal(0, axis.Min);
        Assert.Equal(50, axis.Max);
        Assert.Equal("50", axis.Ticks[^1].Label);
    }

    [Fact]
    public void Linear_IntegerRoundsOverShortRange_StepIsWhole()
    {
        var axis = Axis.Linear(1, 3, null, null, targetTicks: 10, integerSteps: true);

        Assert.All(axis.Ticks, t => Assert.Equal(Math.Round(t.Value), t.Value));
    }

    [Fact]
    public void Log10_LossRange_HasOneLabelledTickPerDecade()
    {
        var axis = Axis.Log10(0.02, 2.3, null, null, targetTicks: 8);

        Assert.Equal(0.01, axis.Min, 12);
        Assert.Equal(10, axis.Max, 12);
        Assert.Equal(["0.01", "0.1", "1", "10"], axis.Ticks.Where(t => t.Major).Select(t => t.Label));
        Assert.Equal(0.5, axis.Fraction(Math.Sqrt(0.01 * 10)), 9);
    }

    [Fact]
    public void Linear_AnyFiniteRange_CoversDataWithIncreasingTicksInside()
    {
        Gen.Select(Gen.Double[-1e9, 1e9], Gen.Double[0, 1e6], Gen.Int[2, 12])
            .Sample((lo, span, target) =>
            {
                var hi = lo + span;
                var axis = Axis.Linear(lo, hi, null, null, target, integerSteps: false);
                var eps = Math.Max(1e-9, Math.Abs(hi) * 1e-9);
                Assert.True(axis.Min <= lo + eps && axis.Max >= hi - eps, $"[{axis.Min}, {axis.Max}] does not cover [{lo}, {hi}]");
                Assert.True(axis.Max > axis.Min);
                Assert.InRange(axis.Ticks.Count, 2, 100);
                for (var i = 1; i < axis.Ticks.Count; i++)
                    Assert.True(axis.Ticks[i].Value > axis.Ticks[i - 1].Value);
                Assert.All(axis.Ticks, t => Assert.InRange(t.Value, axis.Min - eps, axis.Max + eps));
            });
    }
}
