using FleetLearn.Core.Privacy;
using FleetLearn.Core.Rounds;

namespace FleetLearn.Core.Tests.Rounds;

/// <summary>
/// A vehicle's evaluation report is a release of its data: noised at vehicle level and charged to its own ledger before it
/// leaves, once per round, never past the budget, and never exact when the vehicle's data is under DP.
/// </summary>
public sealed class EvaluationReleaseTests
{
    private const string Vehicle = "car-0";

    private static (PrivacyLedger Ledger, PrivacyLedgerAccount Account) Ledger(double budget = double.MaxValue)
    {
        var ledger = new PrivacyLedger(new PrivacyLedgerOptions(budget, 1e-5));
        return (ledger, new PrivacyLedgerAccount(ledger, Vehicle));
    }

    [Fact]
    public void Decide_WithEpsilon_ChargedToTheVehicleLedgerUnderTheRoundsReleaseId()
    {
        var (ledger, account) = Ledger();
        double expected = ledger.Preview(Vehicle, PrivateCount.LaplaceCharge(1.0)).Epsilon;

        var decision = EvaluationRelease.Decide(3, count: 50, correct: 40, epsilon: 1.0, privateFleet: true, account, new SeededNoiseSource(1));

        Assert.True(decision.Send);
        Assert.True(decision.Noised);
        Assert.Equal(PrivateCount.LaplaceCharge(1.0), decision.Charge);
        var state = ledger.Get(Vehicle);
        Assert.Equal([PrivateCount.ReleaseId(3)], state.Rounds);
        Assert.Equal([PrivateCount.LaplaceCharge(1.0)], state.Charges);
        Assert.Equal(expected, state.Epsilon);
        Assert.Equal(Math.Clamp(decision.ReportedCorrect / 50.0, 0, 1), decision.ReportedAccuracy);
    }

    [Fact]
    public void Decide_SameRoundTwice_SecondWithheldAndChargedOnce()
    {
        var (ledger, account) = Ledger();
        EvaluationRelease.Decide(4, 50, 40, 1.0, true, account, new SeededNoiseSource(1));
        double spent = ledger.EpsilonOf(Vehicle);

        var again = EvaluationRelease.Decide(4, 50, 40, 1.0, true, account, new SeededNoiseSource(2));

        Assert.False(again.Send);
        Assert.Contains("the report of round 4 was already released", again.Withheld, StringComparison.Ordinal);
        Assert.Single(ledger.Get(Vehicle).Rounds);
        Assert.Equal(spent, ledger.EpsilonOf(Vehicle));
    }

    [Fact]
    public void Decide_ChargeWouldExceedTheBudget_WithheldAndNothingRecorded()
    {
        var (ledger, account) = Ledger(budget: 0.5);

        var decision = EvaluationRelease.Decide(1, 50, 40, 1.0, true, account, new SeededNoiseSource(1));

        Assert.False(decision.Send);
        Assert.Contains("would exceed the vehicle's budget", decision.Withheld, StringComparison.Ordinal);
        Assert.Empty(ledger.Get(Vehicle).Rounds);
    }

    [Fact]
    public void Decide_NoEpsilon_ExactOnlyWhenTheVehiclesDataIsNotUnderDp()
    {
        var (ledger, account) = Ledger();

        var underDp = EvaluationRelease.Decide(1, 50, 40, null, privateFleet: true, account, new SeededNoiseSource(1));
        var plain = EvaluationRelease.Decide(1, 50, 40, null, privateFleet: false, account, new SeededNoiseSource(1));

        Assert.False(underDp.Send);
        Assert.Contains("Agent:EvaluationEpsilon is not set", underDp.Withheld, StringComparison.Ordinal);
        Assert.True(plain.Send);
        Assert.False(plain.Noised);
        Assert.Equal(0.8, plain.ReportedAccuracy);
        Assert.Empty(ledger.Get(Vehicle).Rounds);
    }

    [Fact]
    public void Decide_NoiseIsAtVehicleLevel_CountSpreadIsSqrt2TimesNOverEpsilon()
    {
        // Discrete Laplace at t = ε/n: variance 2e^-t/(1 − e^-t)², ≈ 2(n/ε)²; per example (t = ε) it would be ≈ 0.7 here.
        const int n = 40, draws = 4000;
        const double epsilon = 2.0;
        var (_, account) = Ledger();
        var noise = new SeededNoiseSource(7);
        double sum = 0, squares = 0;
        for (int r = 0; r < draws; r++)
        {
            double z = EvaluationRelease.Decide(r, n, 20, epsilon, true, account, noise).ReportedCorrect - 20;
            sum += z;
            squares += z * z;
        }
        double t = epsilon / n, expectedVariance = 2 * Math.Exp(-t) / Math.Pow(1 - Math.Exp(-t), 2);
        double mean = sum / draws, std = Math.Sqrt(squares / draws - mean * mean);

        Assert.InRange(std / Math.Sqrt(expectedVariance), 0.9, 1.1);
        Assert.InRange(mean, -4 * Math.Sqrt(expectedVariance / draws), 4 * Math.Sqrt(expectedVariance / draws));
    }

    [Theory]
    [InlineData(0, 1)]
    [InlineData(5, 6)]
    [InlineData(5, -1)]
    public void Decide_CountsOutOfRange_Throw(int count, int correct)
    {
        var (_, account) = Ledger();
        Assert.ThrowsAny<ArgumentOutOfRangeException>(() => EvaluationRelease.Decide(1, count, correct, 1.0, true, account, new SeededNoiseSource(1)));
    }
}
