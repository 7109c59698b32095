using FleetLearn.Core.Federated;
using FleetLearn.Core.Rounds;

namespace FleetLearn.Core.Tests.Rounds;

/// <summary>A secure buffer group's mean applied with the group's staleness weight, against hand computations.</summary>
public sealed class SecureBufferStepTests
{
    private static readonly RoundRules Rules = new() { CohortSize = 3, MinParticipants = 2, MaxWeight = 100 };

    private static RoundApplied Group(params float[] mean) => new()
    {
        Round = 7, Contributors = ["a", "b", "c"], Silent = [], TrainLoss = 0.5, ClosedAt = DateTimeOffset.UnixEpoch, Parameters = mean,
    };

    [Fact]
    public void Apply_StaleByThree_AddsHalfTheMeanWithFedAvg()
    {
        // τ = 12 − 9 = 3: s(3) = 1/√4 = 0.5; FedAvg with server learning rate 1 adds the combined update.
        var outcome = SecureBufferStep.Apply(Rules, StrategyCatalog.Parse("fedavg", null), [1f, 2f], Group(4f, -8f), groupVersion: 9, version: 12, maxStaleness: 10, DateTimeOffset.UnixEpoch);
        var applied = Assert.IsType<RoundApplied>(outcome);
        Assert.Equal(13, applied.Round);
        Assert.Equal([3f, -2f], applied.Parameters);
        Assert.Equal(["a", "b", "c"], applied.Contributors);
    }

    [Fact]
    public void Apply_Fresh_AddsTheWholeMean()
    {
        var outcome = SecureBufferStep.Apply(Rules, StrategyCatalog.Parse("fedavg", null), [1f, 2f], Group(4f, -8f), groupVersion: 5, version: 5, maxStaleness: 0, DateTimeOffset.UnixEpoch);
        Assert.Equal([5f, -6f], Assert.IsType<RoundApplied>(outcome).Parameters);
    }

    [Fact]
    public void Apply_PastMaxStaleness_RefusedWithTheReason()
    {
        var outcome = SecureBufferStep.Apply(Rules, StrategyCatalog.Parse("fedavg", null), [1f, 2f], Group(4f, -8f), groupVersion: 1, version: 4, maxStaleness: 2, DateTimeOffset.UnixEpoch);
        var aborted = Assert.IsType<RoundAborted>(outcome);
        Assert.Equal("the group trained on version 1, 3 behind version 4: the maximum staleness is 2", aborted.Reason);
    }

    [Fact]
    public void Apply_FewerThanTheMinimum_NotReleased()
    {
        var group = Group(4f, -8f) with { Contributors = ["a"] };
        var outcome = SecureBufferStep.Apply(Rules, StrategyCatalog.Parse("fedavg", null), [1f, 2f], group, 0, 0, 10, DateTimeOffset.UnixEpoch);
        Assert.Equal("1 updates < minimum 2", Assert.IsType<RoundAborted>(outcome).Reason);
    }

    [Fact]
    public void GroupMeanStrategy_StepIsTheCombinedUpdate()
    {
        var strategy = new GroupMeanStrategy(StrategyCatalog.Parse("fedavgm:0.9", 0.5f));
        float[] global = [10f, 10f];
        strategy.ApplyUpdate(global, [0.25f, -1f]);
        Assert.Equal([0.25f, -1f], global);
        Assert.Equal(1f, strategy.ServerLearningRate);
    }
}
