using FleetLearn.Core.Federated;
using FleetLearn.Core.Random;

namespace FleetLearn.Core.Tests.Federated;

public sealed class PartitionerTests
{
    private static byte[] Labels(int n, int classes, ulong seed)
    {
        var rng = new DeterministicRandom(seed);
        return Enumerable.Range(0, n).Select(_ => (byte)rng.NextInt(classes)).ToArray();
    }

    private static void AssertIsPartition(int[][] parts, int n)
    {
        var all = parts.SelectMany(p => p).Order().ToArray();
        Assert.Equal(Enumerable.Range(0, n), all);
    }

    [Fact]
    public void Iid_EqualSizes_EveryRowOnce_DeterministicPerSeed()
    {
        var labels = Labels(1003, 10, 1);
        var parts = Partitioner.Split(labels, 10, PartitionScheme.Parse("iid"), 7);
        AssertIsPartition(parts, 1003);
        Assert.All(parts, p => Assert.InRange(p.Length, 100, 101));
        Assert.Equal(parts, Partitioner.Split(labels, 10, new PartitionScheme.Iid(), 7));
        Assert.NotEqual(parts, Partitioner.Split(labels, 10, new PartitionScheme.Iid(), 8));
    }

    [Fact]
    public void Shards_BalancedLabels_GiveEachVehicleAtMostTwoLabels()
    {
        // 100 vehicles × 2 shards over 10 balanced classes of 600 rows: each shard is one label.
        var labels = Enumerable.Range(0, 6000).Select(i => (byte)(i % 10)).ToArray();
        var parts = Partitioner.Split(labels, 100, PartitionScheme.Parse("shards"), 3);
        AssertIsPartition(parts, 6000);
        Assert.All(parts, p => Assert.Equal(60, p.Length));
        Assert.All(parts, p => Assert.InRange(p.Select(r => labels[r]).Distinct().Count(), 1, 2));
    }

    [Fact]
    public void Dirichlet_SmallAlpha_IsSkewed_LargeAlpha_IsNearIid()
    {
        var labels = Labels(20000, 10, 2);
        double MeanMaxShare(double alpha)
        {
            var parts = Partitioner.Split(labels, 20, PartitionScheme.Parse(FormattableString.Invariant($"dirichlet:{alpha}")), 5);
            AssertIsPartition(parts, 20000);
            return parts.Where(p => p.Length > 0).Average(p => Partitioner.Histogram(labels, p, 10).Max() / (double)p.Length);
        }
        Assert.True(MeanMaxShare(0.1) > 0.6, "α = 0.1 should concentrate most of a vehicle's data in one class");
        Assert.True(MeanMaxShare(1000) < 0.15, "α = 1000 should be close to uniform (max share ≈ 0.1)");
    }

    [Theory]
    [InlineData("shard")]
    [InlineData("dirichlet:-1")]
    [InlineData("dirichlet:x")]
    public void Parse_Bad_ClearError(string text)
    {
        var e = Assert.Throws<FormatException>(() => PartitionScheme.Parse(text));
        Assert.Contains("dirichlet:α", e.Message, StringComparison.Ordinal);
    }
}
