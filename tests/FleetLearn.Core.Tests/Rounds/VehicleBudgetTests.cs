using FleetLearn.Core.Model;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Rounds;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Core.Tests.Rounds;

/// <summary>The vehicle's own ε budget under FedBuff, against a hand computation: what the agent and the simulators' model of its ledger share.</summary>
public sealed class VehicleBudgetTests
{
    private static readonly ModelSpec Spec = ModelSpec.Parse("2-2");

    private static RoundPlan Plan(long version) => new()
    {
        Fleet = "f",
        Round = version + 1,
        ModelVersion = version,
        ModelSpec = Spec.ToString(),
        ModelSha256 = new string('0', 64),
        ModelBytes = 100,
        Cohort = ["a"],
        Protection = new RoundProtection { Codec = "none", CodecSeed = 1000 + (ulong)version, ClipNorm = 1, Noise = "central", NoiseMultiplier = 1, UniformWeights = true, MaxWeight = 1 },
        DeadlineUnixMs = DateTimeOffset.UnixEpoch.AddHours(1).ToUnixTimeMilliseconds(),
        IssuedUnixMs = 0,
    };

    [Fact]
    public void Join_BudgetForThreeFreshContributions_FourthAssignmentDeclinedWhateverTheStaleness()
    {
        // One RDP order α = 2 and Mironov's conversion, so ε is a sum by hand: each contribution the vehicle charges is a fresh
        // Gaussian mechanism at σ = 1 (it cannot know its update's staleness when it sends), RDP α/(2σ²) = 1, and
        // ε(n) = n·1 − ln δ/(α − 1) = n + ln 10⁵ = n + 11.5129. A budget of 14.6 holds n = 3 (14.5129) and not n = 4 (15.5129).
        var ledger = new PrivacyLedgerAccount(new PrivacyLedger(new PrivacyLedgerOptions(14.6, 1e-5, orders: [2.0], conversion: RdpConversion.Classic)), "a");
        var clock = new ManualTimeProvider(DateTimeOffset.UnixEpoch);
        var profile = new VehicleProfile { VehicleId = "a", Pinned = Spec };
        var spent = new List<double>();

        for (long version = 0; version < 3; version++)
        {
            var joined = Assert.IsType<Joined>(BufferedTask.Join(Plan(version), 0, 2, profile, ledger, new(new SeededNoiseSource(1), new SeededNoiseSource(2), Guid.NewGuid()), clock));
            joined.Round.OnModel(new Checkpoint(Spec, version, new float[Spec.ParameterCount]));
            Assert.IsType<SendUpdateEffect>(joined.Round.OnTrained(new float[Spec.ParameterCount], 0.5, 10, 1)[0]); // charged, then sent
            spent.Add(ledger.Epsilon);
        }
        var fourth = BufferedTask.Join(Plan(3), 0, 2, profile, ledger, new(new SeededNoiseSource(1), new SeededNoiseSource(2), Guid.NewGuid()), clock);

        double lnInverseDelta = Math.Log(1e5);
        Assert.Equal([1 + lnInverseDelta, 2 + lnInverseDelta, 3 + lnInverseDelta], spent, (x, y) => Math.Abs(x - y) < 1e-9);
        Assert.Equal("the contribution would exceed this vehicle's ε budget (spent 14.513)", Assert.IsType<Declined>(fourth).Reason);
        Assert.Equal(VehicleBudget.Refusal(PrivacyCharge.Participation(1), ledger, 4, 3), Assert.IsType<Declined>(fourth).Reason);
    }

    [Fact]
    public void Refusal_NoChargeOrNoLedger_NeverDeclines()
    {
        var ledger = new PrivacyLedgerAccount(new PrivacyLedger(new PrivacyLedgerOptions(0.01, 1e-5)), "a");

        Assert.Null(VehicleBudget.Refusal(null, ledger, 1, 0));
        Assert.Null(VehicleBudget.Refusal(PrivacyCharge.Participation(1), null, 1, 0));
        Assert.NotNull(VehicleBudget.Refusal(PrivacyCharge.Participation(1), ledger, 1, 0));
    }

    [Theory]
    [InlineData(14.6, 14.6, true)]
    [InlineData(14.5129, 14.6, false)]
    [InlineData(100.0, null, false)]
    public void Spent_EpsilonAgainstBudget(double epsilon, double? budget, bool spent) => Assert.Equal(spent, VehicleBudget.Spent(epsilon, budget));
}
