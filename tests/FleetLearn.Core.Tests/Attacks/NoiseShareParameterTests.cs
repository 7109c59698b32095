using FleetLearn.Core.SecureAggregation;

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
}
