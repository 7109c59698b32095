using System.Security.Cryptography;
using FleetLearn.Core.Model;
using FleetLearn.Core.Rounds;
using FleetLearn.Storage;
using FleetLearn.Transport.Mqtt;

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
        if (plan.Protection?.DeviceKeys is not null)
            reason = RoundCoordinator.SecureRestartReason;
        else if (plan.ModelVersion != model.Version || plan.ModelSha256 != RoundPlanCodec.HashModel(model.ToBytes()))
            reason = $"aggregator restarted mid-round; the round started from model {plan.ModelVersion}, the newest stored model is {model.Version}";
        return reason.Length == 0 ? plan : null;
    }
}
