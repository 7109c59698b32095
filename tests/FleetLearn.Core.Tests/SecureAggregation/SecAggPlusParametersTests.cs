using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Core.Tests.SecureAggregation;

public sealed class SecAggPlusParametersTests
{
    [Fact]
    public void MissingFraction_OverSelectedSurplusCountsAsMissing_AndTheGraphGrowsForIt()
    {
        Assert.Equal(6 / 26.0, SecAggPlusParameters.MissingFraction(26, 20), 12);
        Assert.Equal(300 / 1300.0, SecAggPlusParameters.MissingFraction(1300, 1000), 12);
        Assert.Equal(SecAggPlusParameters.DefaultDropout, SecAggPlusParameters.MissingFraction(1000, 1000));
        Assert.Equal(SecAggPlusParameters.DefaultDropout, SecAggPlusParameters.MissingFraction(1020, 1000)); // 2% surplus: the dropout rate rules
        Assert.Throws<ArgumentOutOfRangeException>(() => SecAggPlusParameters.MissingFraction(0, 1));
        // Same bound, more missing vehicles: more neighbours, and the derived k meets 2^-40 at the missing fraction it was derived for.
        int k = NeighborGraph.DefaultNeighbors(1300, 300 / 1300.0)!.Value;
        Assert.True(k > NeighborGraph.DefaultNeighbors(1300)!.Value, $"k = {k}");
        Assert.True(SecAggPlusParameters.Evaluate(1300, k, (k + 1) / 2 + 1, SecAggPlusParameters.DefaultColluders, 300 / 1300.0).FailureLog2 <= -40);
    }

    [Fact]
    public void Derive_Issue13Acceptance_KWellBelowNAndFailureBelowTwoToMinus40()
    {
        var c = SecAggPlusParameters.Derive(1000, 0.05, 0.1);
        Assert.True(c.FailureLog2 <= -40, $"failure 2^{c.FailureLog2}");
        Assert.True(c.Neighbors < 200, $"k = {c.Neighbors}");
        Assert.True(c.Neighbors % 2 == 0);
        Assert.True(2 * c.Threshold > c.Neighbors + 1);
        // k is the smallest even degree that meets the target.
        var smaller = SecAggPlusParameters.Derive(1000, 0.05, 0.1, targetLog2: c.FailureLog2 + 1e-9);
        Assert.Equal(c.Neighbors, smaller.Neighbors);
        for (int t = (c.Neighbors - 2 + 1) / 2 + 1; t <= c.Neighbors - 1; t++)
            Assert.True(SecAggPlusParameters.Evaluate(1000, c.Neighbors - 2, t, 0.05, 0.1).FailureLog2 > -40);
    }

    [Fact]
    public void Evaluate_NoCollusionNoDropout_OnlyTheMajorityRuleMatters()
    {
        var c = SecAggPlusParameters.Evaluate(100, 10, 6, 0, 0);
        Assert.Equal(double.NegativeInfinity, c.FailureLog2);
    }

    [Fact]
    public void Evaluate_PartitionBound_MatchesWindowCount()
    {
        // n = 100, m = 10 removed, k = 4: two runs of two removed vertices: ≤ (n²/2)·(10·9·8·7)/(100·99·98·97).
        var c = SecAggPlusParameters.Evaluate(100, 4, 3, 0.1, 0);
        Assert.Equal(Math.Log2(100.0 * 100 / 2 * (10.0 * 9 * 8 * 7) / (100.0 * 99 * 98 * 97)), c.PartitionLog2, 9);
    }

    [Fact]
    public void Evaluate_ColludingHolders_MatchesHypergeometricTail()
    {
        // n = 20, 4 colluders, k = 4, t = 3: n·P[Hyp(19, 4, 4) ≥ 3] = 20·(C(4,3)C(15,1) + C(4,4)) / C(19,4).
        var c = SecAggPlusParameters.Evaluate(20, 4, 3, 0.2, 0);
        Assert.Equal(Math.Log2(20.0 * (4 * 15 + 1) / 3876), c.ColludingHoldersLog2, 9);
    }

    [Fact]
    public void Derive_MoreColludersOrDropouts_NeedMoreNeighbours()
    {
        int k1 = SecAggPlusParameters.Derive(1000, 0.05, 0.1).Neighbors;
        int k2 = SecAggPlusParameters.Derive(1000, 0.2, 0.1).Neighbors;
        int k3 = SecAggPlusParameters.Derive(1000, 0.05, 0.3).Neighbors;
        Assert.True(k2 > k1 && k3 > k1, $"{k1} {k2} {k3}");
    }

    [Theory]
    [InlineData(2, 0.1, 0.1)]
    [InlineData(100, 1.0, 0.0)]
    [InlineData(100, 0.5, 0.5)]
    [InlineData(100, -0.1, 0.1)]
    public void Derive_InvalidInputs_Rejected(int n, double gamma, double delta)
        => Assert.Throws<ArgumentOutOfRangeException>(() => SecAggPlusParameters.Derive(n, gamma, delta));

    [Fact]
    public void Derive_SmallCohort_FallsBackToCompleteGraphWithExactCounts()
    {
        // n = 5, one colluder and one dropout: k = 2 can be cut by removing both, so only the complete graph (k = 4) is safe.
        var c = SecAggPlusParameters.Derive(5, 0.2, 0.2);
        Assert.Equal(4, c.Neighbors);
        Assert.Equal(double.NegativeInfinity, c.FailureLog2);
        Assert.Equal(4, SecAggPlusParameters.Derive(10, 0.1, 0.1).Neighbors);
    }
}
