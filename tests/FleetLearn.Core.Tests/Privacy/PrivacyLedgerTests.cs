using FleetLearn.Core.Privacy;

namespace FleetLearn.Core.Tests.Privacy;

public sealed class PrivacyLedgerTests
{
    private static readonly double[] Orders = [1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64];

    private static PrivacyLedger NewLedger(double epsilonMax = 4.0, SamplingAssumption sampling = SamplingAssumption.PerParticipation)
        => new(new PrivacyLedgerOptions(epsilonMax, 1e-5, sampling, Orders));

    [Fact]
    public void Record_KParticipations_EqualsAccountantWithQOne()
    {
        var ledger = NewLedger(epsilonMax: 100);
        for (int round = 1; round <= 5; round++) ledger.Record("v1", round, PrivacyCharge.Participation(3.0));
        var expected = RdpAccountant.GetEpsilon(1.0, 3.0, 5, 1e-5, Orders);
        Assert.Equal(expected.Epsilon, ledger.EpsilonOf("v1"), 12);
        Assert.Equal(expected.Order, ledger.Get("v1").Spent.Order);
        Assert.Equal(5, ledger.Get("v1").Participations);
        Assert.Equal(0.0, ledger.EpsilonOf("v2"));
    }

    [Fact]
    public void Record_EachRound_EpsilonNeverDecreases()
    {
        var ledger = NewLedger(epsilonMax: 100);
        double previous = 0;
        for (int round = 0; round < 20; round++)
        {
            double eps = ledger.Record("v", round, PrivacyCharge.Participation(1 + round % 3)).Epsilon;
            Assert.True(eps > previous, $"round {round}: {eps} ≤ {previous}");
            previous = eps;
        }
    }

    [Fact]
    public void Record_SameRoundTwice_IsIdempotent()
    {
        var ledger = NewLedger();
        var first = ledger.Record("v", 7, PrivacyCharge.Participation(5.0));
        var second = ledger.Record("v", 7, PrivacyCharge.Participation(5.0));
        Assert.Same(first, second);
        Assert.Equal(1, second.Participations);
    }

    [Fact]
    public void Record_SameRoundDifferentCharge_Throws()
    {
        var ledger = NewLedger();
        ledger.Record("v", 7, PrivacyCharge.Participation(5.0));
        Assert.Throws<InvalidOperationException>(() => ledger.Record("v", 7, PrivacyCharge.Participation(4.0)));
    }

    [Fact]
    public void TryRecord_NextRoundWouldExceedBudget_RefusesAndRecordsNothing()
    {
        var ledger = NewLedger(epsilonMax: 4.0);
        var charge = PrivacyCharge.Participation(2.0);
        int recorded = 0;
        while (ledger.TryRecord("v", recorded, charge, out _)) recorded++;
        var state = ledger.Get("v");
        Assert.Equal(recorded, state.Participations);
        Assert.True(state.Epsilon <= 4.0);
        Assert.False(ledger.CanParticipate("v", charge));
        Assert.True(ledger.Preview("v", charge).Epsilon > 4.0);
        Assert.True(recorded > 0);
        // Exactly where the accountant crosses the budget.
        Assert.True(RdpAccountant.GetEpsilon(1, 2.0, recorded, 1e-5, Orders).Epsilon <= 4.0);
        Assert.True(RdpAccountant.GetEpsilon(1, 2.0, recorded + 1, 1e-5, Orders).Epsilon > 4.0);
    }

    [Fact]
    public void Record_AmplifiedChargeWithoutUniformSampling_Throws()
        => Assert.Throws<ArgumentException>(() => NewLedger().Record("v", 1, new PrivacyCharge(0.01, 1.0)));

    [Fact]
    public void Record_AmplifiedChargeWithUniformPoisson_UsesQ()
    {
        var ledger = NewLedger(sampling: SamplingAssumption.UniformPoisson);
        for (int round = 0; round < 100; round++) ledger.Record("v", round, new PrivacyCharge(0.01, 1.0));
        Assert.Equal(RdpAccountant.GetEpsilon(0.01, 1.0, 100, 1e-5, Orders).Epsilon, ledger.EpsilonOf("v"), 10);
    }

    [Fact]
    public void Restore_History_RecomputesSameState()
    {
        var ledger = NewLedger(epsilonMax: 100);
        for (int round = 0; round < 6; round++) ledger.Record("v", round * 3, PrivacyCharge.Participation(2.5, steps: 1 + round % 2));
        var original = ledger.Get("v");
        var restored = NewLedger(epsilonMax: 100).Restore("v", original.Rounds, original.Charges);
        Assert.Equal(original.Rdp, restored.Rdp);
        Assert.Equal(original.Spent, restored.Spent);
    }

    [Fact]
    public void Restore_HistoryMissingRecordedRounds_Throws()
    {
        var ledger = NewLedger(epsilonMax: 100);
        ledger.Record("v", 1, PrivacyCharge.Participation(2.0));
        ledger.Record("v", 2, PrivacyCharge.Participation(2.0));
        Assert.Throws<InvalidOperationException>(() => ledger.Restore("v", [1], [PrivacyCharge.Participation(2.0)]));
    }

    [Fact]
    public void Restore_DuplicateRound_Throws()
        => Assert.Throws<InvalidDataException>(() => NewLedger().Restore("v", [1, 1], [PrivacyCharge.Participation(2.0), PrivacyCharge.Participation(2.0)]));
}
