using CsCheck;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Federated.Strategies;
using FleetLearn.Testing;

namespace FleetLearn.Core.Tests.Federated;

public sealed class StrategyTests
{
    private static float[] Aggregate(IFederatedStrategy s, params (float[] Delta, double Weight)[] updates)
    {
        var agg = s.CreateAggregator(updates[0].Delta.Length);
        foreach (var (d, w) in updates) agg.Add(d, w);
        var combined = new float[updates[0].Delta.Length];
        agg.Complete(combined);
        return combined;
    }

    [Fact]
    public void FedAvg_WeightedMean_IsExact()
    {
        var s = StrategyCatalog.Parse("fedavg");
        var combined = Aggregate(s, ([1f, 2f], 1), ([4f, -2f], 3));
        Assert.Equal([3.25f, -1f], combined);
        var global = new float[] { 10f, 10f };
        s.ApplyUpdate(global, combined);
        Assert.Equal([13.25f, 9f], global);
    }

    [Fact]
    public void FedAvg_ServerLearningRate_ScalesTheStep()
    {
        var s = StrategyCatalog.Parse("fedavg", serverLearningRate: 0.5f);
        var global = new float[] { 1f };
        s.ApplyUpdate(global, [2f]);
        Assert.Equal(2f, global[0]);
    }

    [Fact]
    public void FedAdam_FirstTwoSteps_MatchHandComputation()
    {
        // Reddi et al. 2021 Alg. 2 with η = 0.01, β1 = 0.9, β2 = 0.99, τ = 1e-3, m0 = 0, v0 = τ².
        var s = StrategyCatalog.Parse("fedadam");
        var w = new float[] { 0.5f };
        s.ApplyUpdate(w, [0.2f]);
        // m1 = 0.1·0.2 = 0.02; v1 = 0.99·1e-6 + 0.01·0.04 = 4.0099e-4; step = 0.01·0.02/(√v1 + 1e-3)
        double m1 = 0.02, v1 = 0.99e-6 + 0.01 * 0.04;
        double w1 = 0.5 + 0.01 * m1 / (Math.Sqrt(v1) + 1e-3);
        Assert.Equal(w1, w[0], 6);
        s.ApplyUpdate(w, [-0.1f]);
        double m2 = 0.9 * m1 + 0.1 * -0.1, v2 = 0.99 * v1 + 0.01 * 0.01;
        double w2 = w1 + 0.01 * m2 / (Math.Sqrt(v2) + 1e-3);
        Assert.Equal(w2, w[0], 6);
        Assert.Equal(0.50951, w1, 5); // = 0.5 + 0.01·0.02/0.021025
    }

    [Fact]
    public void FedYogi_And_FedAdagrad_SecondMoments_MatchHandComputation()
    {
        var yogi = StrategyCatalog.Parse("fedyogi");
        var ada = StrategyCatalog.Parse("fedadagrad");
        var wy = new float[] { 0f };
        var wa = new float[] { 0f };
        yogi.ApplyUpdate(wy, [0.3f]);
        ada.ApplyUpdate(wa, [0.3f]);
        double tau2 = 1e-6, d2 = 0.09;
        double vYogi = tau2 - 0.01 * d2 * Math.Sign(tau2 - d2); // v grows by 0.01·Δ² when v < Δ²
        double vAda = tau2 + d2;
        Assert.Equal(0.01 * 0.03 / (Math.Sqrt(vYogi) + 1e-3), wy[0], 6);
        Assert.Equal(0.01 * 0.03 / (Math.Sqrt(vAda) + 1e-3), wa[0], 6);
    }

    [Fact]
    public void FedAvgM_TwoSteps_AccumulateVelocity()
    {
        var s = StrategyCatalog.Parse("fedavgm:0.9");
        var w = new float[] { 0f };
        s.ApplyUpdate(w, [1f]);   // v = 1, w = 1
        s.ApplyUpdate(w, [1f]);   // v = 1.9, w = 2.9
        Assert.Equal(2.9f, w[0], 5);
        Assert.Equal("fedavgm:0.9", s.Name);
    }

    [Fact]
    public void FedProx_ExposesMuForTheLocalObjective()
    {
        Assert.Equal(0.1f, StrategyCatalog.Parse("fedprox:0.1").ProximalMu);
        Assert.Equal(0f, StrategyCatalog.Parse("fedavg").ProximalMu);
    }

    [Fact]
    public void MultiKrum_LeavesOutTheUpdatesFarFromTheCluster()
    {
        // Ten honest updates around (1, 1) and two attackers far away; f = 0.2·12 = 2, so the ten closest are averaged.
        var rng = new System.Random(4);
        (float[] Delta, double Weight)[] updates = [.. Enumerable.Range(0, 10).Select(_ => (new[] { 1f + (float)(rng.NextDouble() - 0.5) * 0.1f, 1f + (float)(rng.NextDouble() - 0.5) * 0.1f }, 1.0))
            .Append((new[] { -100f, 100f }, 1.0)).Append((new[] { 50f, 50f }, 1.0))];
        var combined = Aggregate(StrategyCatalog.Parse("multikrum:0.2"), updates);
        Assert.InRange(combined[0], 0.95f, 1.05f);
        Assert.InRange(combined[1], 0.95f, 1.05f);
        var krum = new MultiKrumAggregator(2, 0.2);
        foreach (var (d, w) in updates) krum.Add(d, w);
        krum.Complete(new float[2]);
        Assert.Equal(Enumerable.Range(0, 10), krum.Selected);
        Assert.False(krum.IsStreaming);
        Assert.Equal("multikrum:0.2", StrategyCatalog.Parse("multikrum").Name);
    }

    [Fact]
    public void MultiKrum_NoByzantine_IsTheMean()
    {
        var combined = Aggregate(StrategyCatalog.Parse("multikrum:0"), ([1f], 1), ([2f], 1), ([6f], 1));
        Assert.Equal(3f, combined[0], 5);
    }

    [Fact]
    public void Median_And_TrimmedMean_IgnoreAnOutlier()
    {
        (float[], double)[] updates = [([1f], 1), ([2f], 1), ([3f], 1), ([4f], 1), ([1000f], 1)];
        Assert.Equal(3f, Aggregate(StrategyCatalog.Parse("median"), updates)[0]);
        Assert.Equal(3f, Aggregate(StrategyCatalog.Parse("trimmed:0.2"), updates)[0]);
        Assert.Equal(2.5f, Aggregate(StrategyCatalog.Parse("median"), ([1f], 1), ([2f], 1), ([3f], 1), ([4f], 1))[0]);
        Assert.False(StrategyCatalog.Parse("median").CreateAggregator(1).IsStreaming);
        Assert.True(StrategyCatalog.Parse("fedavg").CreateAggregator(1).IsStreaming);
    }

    [Fact]
    public void NormBounding_ScalesABoostedUpdateDownToTheBound()
    {
        var s = StrategyCatalog.Parse("normbound:1");
        // Update of norm 5 is scaled to norm 1: (0.6, 0.8); the small one stays. Equal weights.
        var combined = Aggregate(s, ([3f, 4f], 1), ([0.2f, 0f], 1));
        Assert.Equal(0.4f, combined[0], 6);
        Assert.Equal(0.4f, combined[1], 6);
    }

    [Theory]
    [InlineData("fedfoo", "Unknown strategy 'fedfoo'")]
    [InlineData("fedprox:abc", "must be a number")]
    [InlineData("trimmed:0.7", "within [0, 0.49]")]
    public void Parse_Bad_ClearError(string text, string expected)
    {
        var e = Assert.Throws<FormatException>(() => StrategyCatalog.Parse(text));
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Catalog_ListsEveryStrategy()
    {
        Assert.Equal(["fedadagrad[:τ]", "fedadam[:τ]", "fedavg", "fedavgm:β", "fedprox:μ", "fedyogi[:τ]", "median", "multikrum:β", "normbound:M", "trimmed:β"], StrategyCatalog.Usages);
        Assert.IsType<FedAdam>(StrategyCatalog.Parse("FedAdam"));
    }

    [Fact]
    public void Aggregator_RejectsWrongLengthAndBadWeightAndEmptyCompletion()
    {
        var agg = new WeightedMeanAggregator(3);
        Assert.Throws<ArgumentException>(() => agg.Add(new float[2], 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => agg.Add(new float[3], double.NaN));
        Assert.Throws<InvalidOperationException>(() => agg.Complete(new float[3]));
    }

    [Fact]
    public void Aggregators_UpdateInSegments_FoldExactlyAsTheArray()
    {
        Gen.Select(Gen.Float[-2f, 2f].Array[3, 200].Array[1, 5], Gen.Int[0, 800].Array[0, 6], Gen.Double[0.5, 3]).Sample((raw, cuts, bound) =>
        {
            int dim = raw[0].Length;
            var updates = raw.Select(u => u.Length >= dim ? u[..dim] : [.. u, .. new float[dim - u.Length]]).ToArray();
            IUpdateAggregator[] Pair() => [new WeightedMeanAggregator(dim, bound), new CoordinateWiseAggregator(dim, null)];
            var (fromArrays, fromSegments) = (Pair(), Pair());
            for (int k = 0; k < 2; k++)
            {
                for (int i = 0; i < updates.Length; i++)
                {
                    fromArrays[k].Add(updates[i], 1 + i);
                    var bytes = System.Runtime.InteropServices.MemoryMarshal.AsBytes(updates[i].AsSpan()).ToArray();
                    fromSegments[k].Add(new FleetLearn.Core.Numerics.FloatSegments(Segments.Cut(bytes, cuts)), 1 + i);
                }
                var (a, b) = (new float[dim], new float[dim]);
                fromArrays[k].Complete(a);
                fromSegments[k].Complete(b);
                Assert.Equal(a, b);
            }
        }, iter: 200);
    }
}
