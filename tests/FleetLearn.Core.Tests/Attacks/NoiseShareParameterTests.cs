using FleetLearn.Core.SecureAggregation;
using FleetLearn.Core.Tests.SecureAggregation;

namespace FleetLearn.Core.Tests.Attacks;

public sealed class NoiseShareParameterTests
{
    private static SecAggParameters Parameters(int minShares) => new()
    {
        Round = 1, CohortSize = 5, Dimension = 4, BitWidth = 16, MaxInputValue = 100, RoundSeed = new byte[32], MinNoiseShares = minShares,
    };

    [Theory]
    [InlineData(0)]
    [InlineData(6)]
    public void Validate_MinNoiseSharesOutsideCohort_Rejected(int minShares)
        => Assert.Contains("Minimum noise shares", Assert.Throws<SecAggConfigurationException>(() => Parameters(minShares).Validate()).Message, StringComparison.Ordinal);

    [Fact]
    public void SecAggPlus_MinNoiseSharesAboveNeighbourhood_CompletesWithEnoughSurvivors()
    {
        // Under SecAgg+ a vehicle's request lists only its k + 1 holders; the stated |U3| is what it checks.
        using var round = new RoundDriver(n: 12, dim: 4, neighbors: 4, minNoiseShares: 11);
        round.Run(RoundDriver.DropsAt(2, 5));
        Assert.Equal(SecAggServerPhase.Completed, round.Server.Phase);
        Assert.Equal(round.PlainSum(Enumerable.Range(0, 12).Where(u => u != 5)), round.Server.Result!.Sum.ToArray());
    }

    [Fact]
    public void SecAggPlus_FewerSurvivorsThanNoiseShares_AbortsBeforeUnmasking()
    {
        using var round = new RoundDriver(n: 12, dim: 4, neighbors: 4, minNoiseShares: 11);
        var requests = round.RunToUnmasking(RoundDriver.DropsAt(2, 5, 6));
        Assert.Empty(requests);
        Assert.Contains("fewer than the 11 noise shares", round.Server.AbortReason, StringComparison.Ordinal);
    }

    [Fact]
    public void UnmaskRequest_StatesFewerSurvivorsThanItLists_VehicleAborts()
    {
        using var round = new RoundDriver(n: 5, dim: 4);
        round.RunToUnmasking();
        var forged = new UnmaskRequestMessage(RoundDriver.Round, 0, [0, 1, 2, 3, 4], [], survivorCount: 3);
        Assert.Contains("states 3 survivors but lists 5", Assert.Throws<SecAggProtocolException>(() => round.Vehicles[0].HandleUnmaskRequest(forged)).Message, StringComparison.Ordinal);
    }
}
