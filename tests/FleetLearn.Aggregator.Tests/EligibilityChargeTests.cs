using System.Security.Cryptography;
using FleetLearn.Core.Model;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Rounds;
using FleetLearn.Storage;
using FleetLearn.Transport.Mqtt;

namespace FleetLearn.Aggregator.Tests;

/// <summary>
/// The aggregator's cohort pre-check asks each candidate's ledger for the charge the round will record: under the distributed
/// discrete Gaussian that is the σ equivalent of the noise actually added, not the nominal σ (issue 13, review of item 4).
/// </summary>
public sealed class EligibilityChargeTests : IDisposable
{
    private static readonly int Dimension = ModelSpec.Parse("8-6-3").ParameterCount;
    private readonly string _dir = Directory.CreateTempSubdirectory("eligibility-").FullName;

    private static AggregatorOptions Options() => new()
    {
        Model = "8-6-3",
        CohortSize = 20,
        OverSelection = 0.5,
        MinParticipants = 16,
        Codec = "rot+q8",
        SecureAggregation = "plus",
        Privacy = "distributed",
        ClipNorm = 1.0,
        NoiseMultiplier = 1.0,
        Delta = 1e-5,
    };

    /// <summary>What a round of <paramref name="cohortSize"/> records for each contributor (the vehicle's ledger records the same).</summary>
    private static PrivacyCharge Recorded(AggregatorOptions options, int cohortSize, long round)
    {
        var protection = AggregatorProtection.Describe(options, cohortSize, maxWeight: 1);
        return protection.Charge(protection.CreatePipeline(Dimension, cohortSize), round)!.Value;
    }

    [Fact]
    public void EligibilityCharge_DistributedDiscreteGaussian_IsTheChargeEveryCohortTheRoundCanHaveRecords()
    {
        var options = Options();
        int selection = CohortSelection.SelectionSize(options.CohortSize, options.OverSelection);

        var checkedAgainst = RoundOpening.EligibilityCharge(options, Dimension, selection);
        Assert.NotNull(checkedAgainst);

        // The σ equivalent of the discrete Gaussian is below the nominal σ here, so the two charges differ.
        Assert.True(Recorded(options, selection, 1).NoiseMultiplier < options.NoiseMultiplier);
        for (int cohort = options.MinParticipants; cohort <= selection; cohort++)
            Assert.Equal(Recorded(options, cohort, round: 7), checkedAgainst);
    }

    [Fact]
    public void Eligible_VehicleNearItsBudget_NotSelectedWhenTheRecordedChargeWouldExceedIt()
    {
        var options = Options();
        int selection = CohortSelection.SelectionSize(options.CohortSize, options.OverSelection);
        var recorded = Recorded(options, selection, 1);
        var probe = new PrivacyLedger(new PrivacyLedgerOptions(double.MaxValue, options.Delta));
        double atSigma = probe.Preview("car-0", PrivacyCharge.Participation(options.NoiseMultiplier)).Epsilon;
        double atRecorded = probe.Preview("car-0", recorded).Epsilon;
        // A budget the nominal σ fits and the recorded charge does not.
        double budget = (atSigma + atRecorded) / 2;
        Assert.True(atSigma < budget && budget < atRecorded, $"ε at σ {atSigma}, at the recorded charge {atRecorded}");
        using var store = LiteDbRoundStore.Open(Path.Combine(_dir, "round.db"));
        using var ledger = LiteDbPrivacyLedgerStore.Open(Path.Combine(_dir, "ledger.db"), new PrivacyLedgerOptions(budget, options.Delta));
        var roster = new FleetRoster(store, ledger, budget);
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        roster.CheckIn("car-0", new Checkin(10, key.ExportSubjectPublicKeyInfo()));

        var eligible = roster.Eligible(RoundOpening.EligibilityCharge(options, Dimension, selection));

        Assert.Empty(eligible);
        // Selected, it would have been charged past its budget: the ledger refuses to record that charge.
        Assert.False(ledger.TryRecord("car-0", 1, recorded, out _));
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }
}
