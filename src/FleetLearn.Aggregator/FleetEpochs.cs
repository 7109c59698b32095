using System.Globalization;
using FleetLearn.Core.Rounds;
using FleetLearn.Storage;
using FleetLearn.Transport.Mqtt;
using Microsoft.Extensions.Logging;

namespace FleetLearn.Aggregator;

/// <summary>
/// The aggregator's fleet epoch (<see cref="FleetEpoch"/>) kept in the round store, and the checks every uplink envelope
/// passes against it and against the open round's signed plan (issue 14 item 2, issue 15 item 5).
/// </summary>
internal sealed class FleetEpochs(LiteDbRoundStore store, ILogger logger, long highestRound)
{
    private const string EpochMeta = "epoch";

    /// <summary>
    /// An aggregator shard's view for <paramref name="plan"/>: the coordinator's epoch and round, taken from its signed plan
    /// (the coordinator detects rollbacks; a shard's own store knows no rounds, and must not read the plan as one).
    /// </summary>
    public static FleetEpochs ForShard(LiteDbRoundStore store, ILogger logger, RoundPlan plan)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(plan);
        store.SetMeta(EpochMeta, plan.Epoch.ToString(CultureInfo.InvariantCulture));
        return new FleetEpochs(store, logger, plan.Round - 1);
    }

    /// <summary>The epoch state.</summary>
    public FleetEpoch State { get; } = new(long.Parse(store.GetMeta(EpochMeta) ?? "0", CultureInfo.InvariantCulture), highestRound);

    /// <summary>The epoch as the envelope carries it.</summary>
    public ushort Wire => (ushort)State.Epoch;

    /// <summary>The round whose plan was announced last, and that plan's tag.</summary>
    public (long Round, ulong Tag) Plan { get; private set; }

    /// <summary>Records the round now running and its signed plan.</summary>
    public void Announce(long round, byte[] signedPlan)
    {
        State.Opened(round);
        Plan = (round, Envelope.TagOf(signedPlan));
    }

    /// <summary>Weighs a vehicle's report (its last round, its epoch); a rollback raises the epoch durably and is logged.</summary>
    public void Observe(long round, long epoch, string source)
    {
        if (State.Observe(round, epoch, source) is not { } why) return;
        store.SetMeta(EpochMeta, State.Epoch.ToString(CultureInfo.InvariantCulture));
        logger.LogError("aggregator: {Why}.", why);
    }

    /// <summary>The refusal of an uplink envelope produced under another epoch or another plan of the open round's number, or null.</summary>
    public Admission? Check(Envelope update)
    {
        if (update.Epoch > State.Epoch)
        {
            Observe(update.Round, update.Epoch, $"{update.Vehicle}'s {update.Kind} envelope");
            return Admission.Rejected(RejectReasons.WrongEpoch, $"sent under epoch {update.Epoch}, newer than this database's: the fleet moves to epoch {State.Epoch}");
        }
        if (update.Epoch != 0 && update.Epoch < State.Epoch)
            return Admission.Rejected(RejectReasons.WrongEpoch, $"sent under epoch {update.Epoch}; the fleet runs epoch {State.Epoch}");
        if (update.PlanTag != 0 && update.Round == Plan.Round && update.PlanTag != Plan.Tag)
            return Admission.Rejected(RejectReasons.PlanMismatch, string.Create(CultureInfo.InvariantCulture,
                $"answers another plan for round {update.Round} (plan tag {update.PlanTag:x16}; this round's is {Plan.Tag:x16}): another aggregator instance or a restored database announced it"));
        return null;
    }
}
