using FleetLearn.Storage;
using Microsoft.Extensions.Logging;

namespace FleetLearn.EdgeAgent;

/// <summary>Closes the vehicle's database files while it is idle (issue 16 item 3): no round of its own in progress, nothing waiting in its outbox.</summary>
/// <remarks>
/// With a cohort of 1,000 out of 10,000 vehicles, nine in ten sit out each round; each held about ten descriptors on its LiteDB
/// files (data and log of the outbox and the ledger, the ledger's mirror), so a process hosting thousands ran out of files.
/// Released stores reopen on their next write; their frequent reads (ε, counters, the outbox count) are answered from memory.
/// The check runs on the agent's loop and after each check-in: a release racing a round that has just started costs that round
/// one reopen, under the store's lock, nothing more.
/// </remarks>
internal sealed class AgentIdle(LiteDbOutbox outbox, LiteDbPrivacyLedgerStore ledger, Func<bool> roundInProgress, string vehicleId, ILogger logger)
{
    /// <summary>Releases both stores when the vehicle is idle; true when they are released (or were already).</summary>
    public bool ReleaseIfIdle()
    {
        if (roundInProgress() || outbox.Count > 0) return false;
        if (!outbox.IsOpen && !ledger.IsOpen) return true;
        try
        {
            outbox.Release();
            ledger.Release();
            return true;
        }
        catch (Exception e) when (e is IOException or LiteDB.LiteException)
        {
            // Only the final checkpoint can fail here (a full disk): every write was durable already, and the next use reopens.
            logger.LogWarning("agent {Vehicle}: could not release its database files while idle ({Error}); they reopen on the next use.", vehicleId, e.Message);
            return false;
        }
    }

    /// <summary>Awaits <paramref name="checkIn"/> (which read the stores), then releases them if the vehicle is still idle.</summary>
    public async Task AfterAsync(Task checkIn)
    {
        await checkIn.ConfigureAwait(false);
        ReleaseIfIdle();
    }
}
