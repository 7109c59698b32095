using CsCheck;
using FleetLearn.Core.Federated;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Core.Tests.Federated;

public sealed class PlaintextUpdateCheckTests
{
    [Fact]
    public void Check_ValuesNear1e38_RejectedWithAFiniteNorm()
    {
        var delta = Enumerable.Repeat(3e38f, 100_000).ToArray();
        var check = PlaintextUpdateCheck.Check(delta, maxNorm: 10);
        Assert.Equal(UpdateVerdict.NormExceeded, check.Verdict);
        Assert.True(double.IsFinite(check.Norm));
        Assert.InRange(check.Norm, 9e40, 1e41);
    }

    [Theory]
    [InlineData(float.NaN)]
    [InlineData(float.PositiveInfinity)]
    [InlineData(float.NegativeInfinity)]
    public void Check_NonFinite_Rejected(float bad)
    {
        var delta = new float[10];
        delta[7] = bad;
        Assert.Equal(UpdateVerdict.NonFinite, PlaintextUpdateCheck.Check(delta, 10).Verdict);
    }

    [Fact]
    public void Check_AtTheBound_Accepted()
    {
        var delta = new float[] { 3, 4 };
        Assert.True(PlaintextUpdateCheck.Check(delta, 5).IsAccepted);
        Assert.Equal(UpdateVerdict.NormExceeded, PlaintextUpdateCheck.Check(delta, 4.99).Verdict);
    }

    [Fact]
    public void Fold_OnlyAcceptedUpdates_NeverOverflowsEvenAgainstHostileValues()
    {
        // Hostile vehicles send values anywhere in float's range; the honest ones are small. With the bound and the sum
        // check in force, whatever gets folded leaves a finite mean.
        var value = Gen.OneOf(Gen.Float[-1f, 1f], Gen.Float[-3.4e38f, 3.4e38f], Gen.Const(float.NaN), Gen.Const(float.PositiveInfinity));
        Gen.Select(value.Array[16].Array[1, 40], Gen.Double[1, 1e4]).Sample((updates, weight) =>
        {
            const double bound = 1e6;
            Assert.True(PlaintextUpdateCheck.SumIsSafe(updates.Length, weight, bound));
            var aggregator = new WeightedMeanAggregator(16);
            foreach (var u in updates)
            {
                if (PlaintextUpdateCheck.Check(u, bound).IsAccepted) aggregator.Add(u, weight);
            }
            if (aggregator.Count == 0) return;
            var mean = new float[16];
            aggregator.Complete(mean);
            Assert.All(mean, v => Assert.True(float.IsFinite(v)));
        }, iter: 2000);
    }

    [Fact]
    public void SumIsSafe_HugeCohortWeightAndBound_False() => Assert.False(PlaintextUpdateCheck.SumIsSafe(1_000_000, 1e30, 1e9));

    [Fact]
    public void DeviceKeyValidation_Garbage_SaysWhy()
    {
        Assert.NotNull(DeviceKeyValidation.Check([]));
        Assert.NotNull(DeviceKeyValidation.Check([0x30, 0x03, 0x02, 0x01, 0x00]));
        using var key = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256);
        var spki = key.ExportSubjectPublicKeyInfo();
        Assert.Null(DeviceKeyValidation.Check(spki));
        Assert.Contains("after", DeviceKeyValidation.Check([.. spki, 0])!, StringComparison.Ordinal);
        using var rsa = System.Security.Cryptography.RSA.Create(2048);
        Assert.NotNull(DeviceKeyValidation.Check(rsa.ExportSubjectPublicKeyInfo()));
    }

    [Fact]
    public void CheckSumOfSquares_SameVerdictsAsTheValuesCheck()
    {
        Gen.Float.Array[1, 300].Sample(values =>
        {
            var fromValues = PlaintextUpdateCheck.Check(values, 1000);
            var fromSquares = PlaintextUpdateCheck.CheckSumOfSquares(FleetLearn.Core.Numerics.VectorMath.SumOfSquares(values), 1000);
            Assert.Equal(fromValues, fromSquares);
        });
        Assert.Equal(new UpdateCheck(UpdateVerdict.NonFinite, double.NaN, "the update holds NaN or ∞"), PlaintextUpdateCheck.CheckSumOfSquares(double.PositiveInfinity, 10));
        Assert.Equal(new UpdateCheck(UpdateVerdict.NormExceeded, 2, "‖Δ‖₂ = 2 exceeds the bound 1"), PlaintextUpdateCheck.CheckSumOfSquares(4, 1));
        Assert.Equal(new UpdateCheck(UpdateVerdict.Accepted, 0.5, null), PlaintextUpdateCheck.CheckSumOfSquares(0.25, 1));
    }
}
