using System.Text.RegularExpressions;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Core.Tests.SecureAggregation;

public sealed class SecAggProtocolTests
{
    private static IReadOnlySet<int>[] DropsAt(int phase, params int[] vehicles) => RoundDriver.DropsAt(phase, vehicles);

    // n = 7, t = 4: 0, 1 and n − t = 3 vehicles drop at each of the four phases.
    public static TheoryData<int, int[]> CompleteGraphDrops()
    {
        var data = new TheoryData<int, int[]>();
        for (int phase = 0; phase < 4; phase++)
        {
            data.Add(phase, []);
            data.Add(phase, [0]);
            data.Add(phase, [0, 3, 6]);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(CompleteGraphDrops))]
    public void Run_CompleteGraphWithDropouts_SumEqualsPlaintextSumBitForBit(int phase, int[] dropped)
    {
        using var round = new RoundDriver(n: 7, dim: 37, bitWidth: 16);
        Assert.Equal(4, round.Parameters.EffectiveThreshold);

        round.Run(DropsAt(phase, dropped));

        Assert.Equal(SecAggServerPhase.Completed, round.Server.Phase);
        var contributors = Enumerable.Range(0, 7).Where(u => phase == 3 || !dropped.Contains(u)).ToArray();
        Assert.Equal(round.PlainSum(contributors), round.Server.Result!.Sum.ToArray());
        Assert.Equal(contributors, round.Server.Result.Survivors.ToArray());
        Assert.Equal(phase == 2 ? dropped : [], round.Server.Result.Dropped.ToArray());
    }

    [Theory]
    [InlineData(0, "Round 7 aborted in AdvertiseKeys: only 3 of 7 vehicles advertised keys, fewer than the threshold t = 4.")]
    [InlineData(1, "Round 7 aborted in ShareKeys: only 3 of 7 vehicles sent their shares, fewer than the threshold t = 4.")]
    [InlineData(2, "Round 7 aborted in MaskedInputCollection: only 3 of 7 vehicles sent masked inputs, fewer than the threshold t = 4.")]
    [InlineData(3, "Round 7 aborted in Unmasking: only 3 shares of the self-mask seed of vehicle 0 arrived, fewer than the threshold t = 4 (3 of 7 survivors answered).")]
    public void Run_MoreThanNMinusTDrop_AbortsWithReason(int phase, string reason)
    {
        using var round = new RoundDriver(n: 7, dim: 5);

        round.Run(DropsAt(phase, 0, 3, 5, 6));

        Assert.Equal(SecAggServerPhase.Aborted, round.Server.Phase);
        Assert.Equal(reason, round.Server.AbortReason);
        Assert.Null(round.Server.Result);
    }

    [Theory]
    [MemberData(nameof(CompleteGraphDrops))]
    public void Run_MaliciousServerModeWithDropouts_ConsistencyRoundThenSumEqualsPlaintextSum(int phase, int[] dropped)
    {
        // Phase-3 dropouts fall silent in the ConsistencyCheck round: they are in U3 (their inputs are in the sum), never asked to unmask.
        using var round = new RoundDriver(n: 7, dim: 37, bitWidth: 16, maliciousServer: true);

        round.Run(DropsAt(phase, dropped));

        Assert.Equal(SecAggServerPhase.Completed, round.Server.Phase);
        var contributors = Enumerable.Range(0, 7).Where(u => phase == 3 || !dropped.Contains(u)).ToArray();
        Assert.Equal(round.PlainSum(contributors), round.Server.Result!.Sum.ToArray());
    }

    [Fact]
    public void Run_MaliciousServerModeTooFewSigners_AbortsBeforeAnyUnmaskRequest()
    {
        using var round = new RoundDriver(n: 7, dim: 5, bitWidth: 16, maliciousServer: true);

        var requests = round.RunToUnmasking(DropsAt(3, 0, 1, 2, 3));

        Assert.Empty(requests);
        Assert.Equal("Round 7 aborted in ConsistencyCheck: only 3 of 7 vehicles signed the survivor set, fewer than the threshold t = 4.", round.Server.AbortReason);
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public void Run_SecAggPlusMaliciousServerMode_SumEqualsPlaintextSum(int phase)
    {
        using var round = new RoundDriver(n: 12, dim: 19, bitWidth: 20, neighbors: 4, seed: 5, maliciousServer: true);
        // Against a malicious server each vehicle draws its own holders: two drops leave every vehicle t = 3 of its 5.
        int[] dropped = [1, 2];

        round.Run(DropsAt(phase, dropped));

        Assert.Equal(SecAggServerPhase.Completed, round.Server.Phase);
        var contributors = Enumerable.Range(0, 12).Where(u => phase == 3 || !dropped.Contains(u));
        Assert.Equal(round.PlainSum(contributors), round.Server.Result!.Sum.ToArray());
    }

    [Fact]
    public void Parameters_MaliciousServerWithThresholdNotAboveHalfOfHoldersPlusColluders_Rejected()
    {
        var p = new SecAggParameters
        {
            Round = 1, CohortSize = 5, Dimension = 1, BitWidth = 16, MaxInputValue = 10, RoundSeed = new byte[32], MaliciousServer = true, ColludingHolders = 1,
        };

        var e = Assert.Throws<SecAggConfigurationException>(p.Validate);

        Assert.Equal("Against a malicious server, threshold t = 3 must exceed (h + c)/2 = (5 + 1)/2 so that only one survivor set can gather t signatures.", e.Message);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void Run_SecAggPlusWithTolerableDropsInOneNeighbourhood_SumEqualsPlaintextSum(int phase)
    {
        using var round = new RoundDriver(n: 12, dim: 19, bitWidth: 20, neighbors: 4, seed: 5);
        Assert.Equal(3, round.Parameters.EffectiveThreshold);
        // H(0) has 5 holders and t = 3: two of vehicle 0's neighbours may drop.
        var dropped = round.Parameters.Graph.NeighborsOf(0).Take(2).ToArray();

        round.Run(DropsAt(phase, dropped));

        Assert.Equal(SecAggServerPhase.Completed, round.Server.Phase);
        var contributors = Enumerable.Range(0, 12).Where(u => phase == 3 || !dropped.Contains(u));
        Assert.Equal(round.PlainSum(contributors), round.Server.Result!.Sum.ToArray());
    }

    [Fact]
    public void Run_SecAggPlusNoDrops_EveryVehicleMasksWithExactlyKNeighbours()
    {
        using var round = new RoundDriver(n: 16, dim: 8, bitWidth: 32, neighbors: 6, seed: 9);

        round.Run();

        Assert.Equal(round.PlainSum(Enumerable.Range(0, 16)), round.Server.Result!.Sum.ToArray());
        for (int u = 0; u < 16; u++) Assert.Equal(6, round.Parameters.Graph.NeighborsOf(u).Length);
    }

    [Theory]
    [InlineData(1, "sent their shares")]
    [InlineData(2, "sent masked inputs")]
    public void Run_SecAggPlusNeighbourhoodLosesTooMany_AbortsNamingTheVehicle(int phase, string did)
    {
        using var round = new RoundDriver(n: 12, dim: 4, neighbors: 4, seed: 5);
        var dropped = round.Parameters.Graph.NeighborsOf(0).Take(3).ToArray();

        round.Run(DropsAt(phase, dropped));

        Assert.Equal(SecAggServerPhase.Aborted, round.Server.Phase);
        var m = Regex.Match(round.Server.AbortReason!, $@"^Round 7 aborted in \w+: only (\d) of the 5 share holders of vehicle (\d+) {did}, fewer than the threshold t = 3\.$");
        Assert.True(m.Success, round.Server.AbortReason);
        int named = int.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.Equal(int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture),
            round.Parameters.Graph.HoldersOf(named).Count(v => !dropped.Contains(v)));
    }

    [Fact]
    public void Run_FullBitWidthAndParallelServer_SumEqualsPlaintextSum()
    {
        using var round = new RoundDriver(n: 9, dim: 1031, bitWidth: 32, serverThreads: 2, seed: 3);

        round.Run(DropsAt(2, 4, 7));

        Assert.Equal(round.PlainSum(Enumerable.Range(0, 9).Where(u => u is not (4 or 7))), round.Server.Result!.Sum.ToArray());
    }
}
