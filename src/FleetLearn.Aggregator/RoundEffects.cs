using FleetLearn.Core.Rounds;
using FleetLearn.Storage;
using Microsoft.Extensions.Logging;

namespace FleetLearn.Aggregator;

/// <summary>Carries out a <see cref="RoundCoordinator"/> step's effects for the round pump and the secure FedBuff pump alike.</summary>
internal static class RoundEffects
{
    /// <summary>Carries out a coordinator step's effects in order: journal accepted updates, route SecAgg messages, record ledger charges.</summary>
    public static async Task CarryOutAsync(LiteDbRoundStore store, LiteDbPrivacyLedgerStore? ledger, VehicleLink link, AggregatorStatus status, ILogger logger,
        RoundCoordinator coordinator, RoundStep step, CancellationToken cancellationToken)
    {
        var routes = new List<RouteEffect>();
        foreach (var effect in step.Effects)
        {
            switch (effect)
            {
                case JournalEffect journal:
                    DiskFullRetry.Run(() => store.Journal(journal.Round, journal.Update), "the journal of an accepted update", logger, cancellationToken); // durable before the ack: "accepted" means committed
                    break;
                case RouteEffect route:
                    routes.Add(route);
                    break;
                case ChargeEffect charge when ledger is not null:
                    // The spend is recorded before the sum is used: a crash can only over-count ε, never under-count it.
                    foreach (var v in charge.Vehicles) DiskFullRetry.Run(() => status.VehicleEpsilon(v, ledger.Record(v, charge.Round, charge.Charge).Epsilon), "a ledger charge", logger, cancellationToken);
                    break;
            }
        }
        status.Activity = coordinator.Progress;
        var (phase, answered, expected) = coordinator.PhaseProgress;
        status.ReportPhase(coordinator.Round, phase, answered, expected);
        if (routes.Count > 0) await link.RouteAsync(coordinator.Round, routes, cancellationToken).ConfigureAwait(false);
    }
}
