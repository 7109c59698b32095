using FleetLearn.Storage;
using Microsoft.Extensions.Logging;

namespace FleetLearn.Aggregator;

/// <summary>Runs a store write until it succeeds while the disk is full: the worker pauses, and acknowledges nothing it has not stored.</summary>
/// <remarks>
/// A full disk is not a reason to drop or refuse anything. An update is acknowledged only after its journal entry is
/// durable, so while the disk is full the worker waits here: it reads no more messages, the inbox fills, and the broker
/// holds the rest (back-pressure, see "Bounded inbox"). Vehicles keep their updates in their outboxes and resend them.
/// Once space is back the same write goes through and the round carries on. Every write retried here can be repeated
/// safely: the journal may hold one update twice (replay answers the second Duplicate), and ledger charges are idempotent
/// per vehicle and round.
/// </remarks>
internal static class DiskFullRetry
{
    /// <summary>Runs <paramref name="write"/>, retrying every <paramref name="pause"/> (1 s) while it fails because the disk is full.</summary>
    public static void Run(Action write, string what, ILogger logger, CancellationToken cancellationToken, TimeSpan? pause = null)
    {
        for (int attempt = 0; ; attempt++)
        {
            try
            {
                write();
                if (attempt > 0) logger.LogWarning("aggregator: disk space is back; {What} stored after {Attempts} attempts.", what, attempt + 1);
                return;
            }
            catch (Exception e) when (StorageErrors.IsDiskFull(e) && !cancellationToken.IsCancellationRequested)
            {
                if (attempt % 60 == 0)
                    logger.LogError("aggregator: disk full; {What} waits for space (retried every second; nothing is acknowledged meanwhile): {Error}", what, e.Message);
                cancellationToken.WaitHandle.WaitOne(pause ?? TimeSpan.FromSeconds(1));
            }
        }
    }
}
