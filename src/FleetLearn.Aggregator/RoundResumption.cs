using System.Security.Cryptography;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Model;
using FleetLearn.Core.Rounds;
using FleetLearn.Storage;
using FleetLearn.Transport.Mqtt;
using Microsoft.Extensions.Logging;

namespace FleetLearn.Aggregator;

/// <summary>Decides at start-up whether the round an earlier run left open can be resumed, from its stored signed plan (issue 14 item 1).</summary>
internal static class RoundResumption
{
    /// <summary>
    /// The verified plan of open round <paramref name="open"/> when it can be resumed from the model the aggregator starts
    /// with; otherwise null and <paramref name="reason"/> says why the round is recorded as aborted instead.
    /// </summary>
    public static RoundPlan? Check(LiteDbRoundStore store, RoundRecord open, ECDsa signingKey, string fleet, Checkpoint model, out string reason)
    {
        var signedPlan = store.SignedPlan(open.Round) ?? [];
        reason = "";
        if (signedPlan.Length == 0)
        {
            reason = "aggregator restarted mid-round (no signed plan stored for it)";
            return null;
        }
        RoundPlan plan;
        try
        {
            plan = RoundPlanCodec.Verify(signedPlan, signingKey, fleet);
        }
        catch (WireFormatException e)
        {
            reason = $"aggregator restarted mid-round; its stored plan does not verify with this signing key and fleet ({e.Message})";
            return null;
        }
        if (plan.Shards is not null)
            reason = "the coordinator restarted mid-round; a sharded round is not resumed (its shards' parts lived in their memory), so it is aborted and no ε is charged";
        else if (plan.Protection?.DeviceKeys is not null)
            reason = RoundCoordinator.SecureRestartReason;
        else if (plan.ModelVersion != model.Version || plan.ModelSha256 != RoundPlanCodec.HashModel(model.ToBytes()))
            reason = $"aggregator restarted mid-round; the round started from model {plan.ModelVersion}, the newest stored model is {model.Version}";
        return reason.Length == 0 ? plan : null;
    }

    /// <summary>Reopens the plaintext round a previous run left open, from its stored plan and the journal of what it had folded.</summary>
    public static (OpenedRound, RoundRecord, IReadOnlyList<RoundEffect>) Reopen(LiteDbRoundStore store, AggregatorOptions options, AggregatorRandomness random, FleetRoster roster,
        RoundRecord record, RoundPlan plan, Checkpoint model, IFederatedStrategy strategy, ECDsa key, TimeProvider time, ILogger logger)
    {
        var journal = store.JournalOf(record.Round);
        var opened = RoundOpening.Resume(options, random, roster, plan, store.SignedPlan(record.Round)!, model, strategy, key, journal, time, out var replayed);
        logger.LogWarning("aggregator: round {Round} was open when the previous run stopped; resumed with the {Count} updates it had folded ({Vehicles}).",
            record.Round, journal.Count, string.Join(", ", journal.Select(u => u.Vehicle)));
        return (opened, record, replayed);
    }
}
