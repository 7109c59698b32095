using FleetLearn.Core.Privacy;

namespace FleetLearn.Core.Tests.Privacy;

public sealed class PrivateCountTests
{
    [Fact]
    public void AddDiscreteLaplace_MeanAbsoluteDeviationMatchesGeometric()
    {
        const double eps = 0.5;
        var source = new SeededNoiseSource(4);
        double sumAbs = 0;
        const int n = 100_000;
        for (int i = 0; i < n; i++) sumAbs += Math.Abs(PrivateCount.AddDiscreteLaplace(100, eps, source) - 100);
        // E|Z| = 2e^{−ε}/(1 − e^{−2ε}) for the two-sided geometric with parameter e^{−ε}.
        double expected = 2 * Math.Exp(-eps) / (1 - Math.Exp(-2 * eps));
        Assert.InRange(sumAbs / n, expected * 0.98, expected * 1.02);
    }

    [Fact]
    public void LaplaceCharge_IsGaussianOfMultiplierOneOverEpsilon_AndChargesTheLedger()
    {
        var charge = PrivateCount.LaplaceCharge(0.5);
        Assert.Equal(2.0, charge.NoiseMultiplier);
        Assert.Equal(1.0, charge.SamplingRate);
        var ledger = new PrivacyLedger(new PrivacyLedgerOptions(10, 1e-5));
        ledger.Record("car-1", 3, PrivacyCharge.Participation(1.0));
        ledger.Record("car-1", PrivateCount.ReleaseId(3), charge);
        Assert.True(ledger.EpsilonOf("car-1") > RdpAccountant.GetEpsilon(1, 1.0, 1, 1e-5).Epsilon);
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(-1.0)]
    [InlineData(double.NaN)]
    [InlineData(1e-9)]
    public void AddDiscreteLaplace_BadEpsilon_Rejected(double eps)
        => Assert.Throws<ArgumentOutOfRangeException>(() => PrivateCount.AddDiscreteLaplace(1, eps, new SeededNoiseSource(1)));
}

public sealed class MemoizedRandomizedResponseTests
{
    [Fact]
    public void Report_SameValueEveryRound_SameReportAndChargedOnce()
    {
        var rr = new MemoizedRandomizedResponse(new RandomizedResponse(10, 0.5));
        var source = new SeededNoiseSource(2);
        var ledger = new PrivacyLedger(new PrivacyLedgerOptions(100, 1e-5));
        var reports = new List<int>();
        for (int round = 0; round < 50; round++)
        {
            reports.Add(rr.Report(3, source, out bool isNew));
            if (isNew) ledger.Record("car", rr.ReleaseId(3), rr.ChargeFor());
        }
        Assert.Single(reports.Distinct());
        Assert.Single(ledger.Get("car").Rounds);
        // A restarted vehicle that restores its memo reports the same and is not charged again.
        var restored = new MemoizedRandomizedResponse(new RandomizedResponse(10, 0.5), rr.Memo);
        Assert.Equal(reports[0], restored.Report(3, new SeededNoiseSource(99), out bool again));
        Assert.False(again);
    }

    [Fact]
    public void Constructor_MemoOutsideCategories_Rejected()
        => Assert.Throws<ArgumentException>(() => new MemoizedRandomizedResponse(new RandomizedResponse(3, 1), new Dictionary<int, int> { [1] = 5 }));
}
