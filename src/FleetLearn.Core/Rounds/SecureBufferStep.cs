using System.Globalization;
using FleetLearn.Core.Federated;

namespace FleetLearn.Core.Rounds;

/// <summary>
/// FedBuff with a secure-aggregation group per buffer (docs/async.md): a group runs <see cref="RoundCoordinator"/>'s secure
/// round on one version with <see cref="GroupMeanStrategy"/>, so its outcome carries the group's mean (central noise already
/// added on the secure sum, members already charged); when it completes, the mean is applied to the current model with the
/// group's staleness weight s(τ) through the release every round uses. SecAgg reveals only the sum, so there is one weight per
/// group, τ counted from the group's version to its completion.
/// </summary>
public static class SecureBufferStep
{
    /// <summary>
    /// Applies <paramref name="group"/> (whose <see cref="RoundApplied.Parameters"/> is the group's mean, trained on version
    /// <paramref name="groupVersion"/>) to <paramref name="global"/> at version <paramref name="version"/>: refused as stale past
    /// <paramref name="maxStaleness"/>, else s(τ)·mean goes through <see cref="RoundPolicy.Release"/> (minimum, strategy,
    /// divergence) with no new charge and no new noise. The outcome's round is the new version.
    /// </summary>
    public static RoundOutcome Apply(RoundRules rules, IFederatedStrategy strategy, ReadOnlySpan<float> global, RoundApplied group, long groupVersion, long version, int maxStaleness, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(rules);
        ArgumentNullException.ThrowIfNull(strategy);
        ArgumentNullException.ThrowIfNull(group);
        long staleness = version - groupVersion;
        ArgumentOutOfRangeException.ThrowIfNegative(staleness);
        long next = version + 1;
        string? failure = staleness > maxStaleness
            ? string.Create(CultureInfo.InvariantCulture, $"the group trained on version {groupVersion}, {staleness} behind version {version}: the maximum staleness is {maxStaleness}")
            : null;
        var mean = group.Parameters.ToArray();
        Numerics.VectorMath.Scale(mean, (float)Staleness.Weight(Math.Min(staleness, maxStaleness)));
        var parameters = failure is null
            ? RoundPolicy.Release(rules, strategy, global, mean, group.Contributors.Count, null, null, [], [], ref failure)
            : null;
        return parameters is not null
            ? new RoundApplied { Round = next, Contributors = group.Contributors, Silent = group.Silent, TrainLoss = group.TrainLoss, UnclippedCount = group.UnclippedCount, ClosedAt = now, Parameters = parameters }
            : new RoundAborted { Round = next, Contributors = group.Contributors, Silent = group.Silent, TrainLoss = group.TrainLoss, UnclippedCount = group.UnclippedCount, ClosedAt = now, Reason = failure! };
    }
}

/// <summary>
/// The strategy a secure buffer group closes with: the real strategy's aggregator (a weighted mean) and vehicles' proximal term,
/// but its "step" returns the combined update itself, so the group's outcome is its mean for <see cref="SecureBufferStep"/>.
/// </summary>
public sealed class GroupMeanStrategy(IFederatedStrategy inner) : IFederatedStrategy
{
    /// <inheritdoc/>
    public string Name => inner.Name + " (group mean)";

    /// <inheritdoc/>
    public float ProximalMu => inner.ProximalMu;

    /// <inheritdoc/>
    public float ServerLearningRate => 1;

    /// <inheritdoc/>
    public IUpdateAggregator CreateAggregator(int dimension) => inner.CreateAggregator(dimension);

    /// <inheritdoc/>
    public void ApplyUpdate(Span<float> global, ReadOnlySpan<float> combined) => combined.CopyTo(global);
}
