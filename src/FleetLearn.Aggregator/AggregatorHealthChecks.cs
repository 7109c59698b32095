using FleetLearn.Storage;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;

namespace FleetLearn.Aggregator;

/// <summary>Ready while the worker runs rounds (it stops being ready when it has finished them or stopped).</summary>
internal sealed class WorkerHealthCheck(AggregatorStatus status) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
        Task.FromResult(status.Running
            ? HealthCheckResult.Healthy(status.Activity)
            : HealthCheckResult.Unhealthy($"worker not running: {(status.Done.Task.IsCompleted ? "its rounds are done" : status.Activity)}"));
}

/// <summary>Ready while the broker connection is up (as the worker reports it; before it reports, while the worker that connected runs).</summary>
internal sealed class BrokerHealthCheck(AggregatorStatus status) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
        Task.FromResult(status.BrokerConnected switch
        {
            true => HealthCheckResult.Healthy("connected to the broker"),
            false => HealthCheckResult.Unhealthy("not connected to the broker (reconnecting)"),
            null when status.Running => HealthCheckResult.Healthy("connected to the broker at start"),
            null => HealthCheckResult.Unhealthy("not connected to the broker yet"),
        });
}

/// <summary>Ready while a file can be created and synced next to the round store (a full or read-only disk fails it).</summary>
internal sealed class StoreHealthCheck(IOptions<AggregatorOptions> options) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        string database = Path.GetFullPath(options.Value.DatabasePath);
        string folder = Path.GetDirectoryName(database) ?? ".";
        try
        {
            using (var probe = new FileStream(Path.Combine(folder, $".fleetlearn-health-{Guid.NewGuid():N}"), FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.DeleteOnClose))
            {
                probe.WriteByte(1);
                probe.Flush(flushToDisk: true);
            }
            if (File.Exists(database) && File.GetAttributes(database).HasFlag(FileAttributes.ReadOnly))
                return Task.FromResult(HealthCheckResult.Unhealthy($"{database} is read-only"));
            return Task.FromResult(HealthCheckResult.Healthy($"{folder} writable"));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return Task.FromResult(HealthCheckResult.Unhealthy($"cannot write next to {database}: {e.Message}"));
        }
    }
}

/// <summary>
/// Ready unless a round has stayed open longer than its deadlines allow (cohort wait, update deadline and the
/// secure-aggregation phases, with a minute's grace): a worker that stopped closing rounds is stuck.
/// </summary>
internal sealed class RoundProgressHealthCheck(AggregatorStatus status, IOptions<AggregatorOptions> options, TimeProvider time) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var o = options.Value;
        var open = status.Rounds.Where(r => r.Status == RoundStatus.Open).OrderBy(r => r.Round).LastOrDefault();
        if (open is null) return Task.FromResult(HealthCheckResult.Healthy(status.CurrentRound == 0 ? "no round open yet" : "between rounds"));
        var limit = StallLimit(o);
        var age = time.GetUtcNow() - open.StartedAt;
        return Task.FromResult(age <= limit
            ? HealthCheckResult.Healthy($"round {open.Round} open for {age.TotalSeconds:F0} s")
            : HealthCheckResult.Unhealthy($"round {open.Round} open for {age.TotalSeconds:F0} s, longer than its deadlines allow ({limit.TotalSeconds:F0} s)"));
    }

    /// <summary>The longest a healthy round stays open: cohort wait + update deadline + four secure-aggregation phases + 1 min.</summary>
    internal static TimeSpan StallLimit(AggregatorOptions o) => o.CohortWait + o.RoundTimeout + 4 * o.PhaseTimeout + TimeSpan.FromMinutes(1);
}
