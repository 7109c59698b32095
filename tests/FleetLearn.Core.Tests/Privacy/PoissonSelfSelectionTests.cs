using FleetLearn.Core.Privacy;

namespace FleetLearn.Core.Tests.Privacy;

public sealed class PoissonSelfSelectionTests
{
    [Fact]
    public void Decide_FrequencyIsQ_AndEdgesAreExact()
    {
        const int n = 200_000;
        int hits = Enumerable.Range(0, n).Count(_ => PoissonSelfSelection.Decide(0.1));
        Assert.InRange(hits / (double)n, 0.1 - 6 * Math.Sqrt(0.09 / n), 0.1 + 6 * Math.Sqrt(0.09 / n));
        Assert.True(PoissonSelfSelection.Decide(1));
        Assert.False(PoissonSelfSelection.Decide(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => PoissonSelfSelection.Decide(1.5));
    }

    [Fact]
    public void Describe_NamesWhichEpsilon()
    {
        Assert.Equal("per vehicle, q = 1", PoissonSelfSelection.Describe(SamplingAssumption.PerParticipation, 0.1));
        Assert.Equal("fleet, Poisson-sampled q = 0.1", PoissonSelfSelection.Describe(SamplingAssumption.UniformPoisson, 0.1));
    }
}
