using CsCheck;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Core.Tests.SecureAggregation;

public sealed class NeighborGraphTests
{
    [Fact]
    public void Create_Harary_IsKRegularAndSymmetric()
    {
        Gen.Select(Gen.Int[5, 200], Gen.Int[1, 10], Gen.Byte.Array[32]).Where((n, h, _) => 2 * h < n - 1).Sample((n, half, seed) =>
        {
            var g = NeighborGraph.Create(n, 2 * half, seed);
            for (int u = 0; u < n; u++)
            {
                var nb = g.NeighborsOf(u);
                Assert.Equal(2 * half, nb.Distinct().Count());
                Assert.DoesNotContain(u, nb);
                foreach (int v in nb) Assert.True(g.AreNeighbors(v, u));
                Assert.Equal(nb, Enumerable.Range(0, n).Where(v => g.AreNeighbors(u, v)).ToArray());
            }
        }, iter: 50);
    }

    [Fact]
    public void Create_SameSeed_SameGraph_OtherSeed_OtherGraph()
    {
        var a = NeighborGraph.Create(100, 8, new byte[32]);
        var b = NeighborGraph.Create(100, 8, new byte[32]);
        var seed = new byte[32];
        seed[0] = 1;
        var c = NeighborGraph.Create(100, 8, seed);

        Assert.Equal(a.NeighborsOf(17), b.NeighborsOf(17));
        Assert.NotEqual(Enumerable.Range(0, 100).SelectMany(a.NeighborsOf), Enumerable.Range(0, 100).SelectMany(c.NeighborsOf));
    }

    [Fact]
    public void Create_KAtLeastNMinusOne_IsCompleteGraph()
    {
        var g = NeighborGraph.Create(6, 6, new byte[32]);

        Assert.True(g.IsComplete);
        Assert.Equal([0, 1, 3, 4, 5], g.NeighborsOf(2));
        Assert.Equal([0, 1, 2, 3, 4, 5], g.HoldersOf(2));
    }

    [Fact]
    public void Validate_OddNeighbourCount_ThrowsConfigurationError()
    {
        var p = new SecAggParameters { Round = 1, CohortSize = 20, Dimension = 1, BitWidth = 8, MaxInputValue = 1, Neighbors = 5, RoundSeed = new byte[32] };

        var e = Assert.Throws<SecAggConfigurationException>(p.Validate);

        Assert.Equal("SecAgg+ neighbour count k = 5 must be even and ≥ 2 (Harary graph H(k, n)); use null or ≥ n − 1 = 19 for the complete graph.", e.Message);
    }
}
