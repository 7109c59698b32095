using System.Diagnostics;
using System.Globalization;

namespace FleetLearn.Simulation;

/// <summary>
/// A child process hosting a range of the simulated vehicles (<c>--processes</c>), and what it reported when it stopped. The
/// parent stops it by closing its standard input: the child waits (up to 10 s) for its agents' outboxes to empty, writes one
/// <see cref="PendingLinePrefix"/> line on its standard output, and exits.
/// </summary>
public sealed class AgentProcess(Process process) : IDisposable
{
    /// <summary>The line a stopping child writes: this prefix, then the messages still unacknowledged in its agents' outboxes.</summary>
    public const string PendingLinePrefix = "pending-in-outboxes ";

    /// <summary>The line a child writes once every agent it hosts has started (and connected, or waited its turn): this prefix, then their number.</summary>
    public const string StartedLinePrefix = "agents-started ";

    private readonly TaskCompletionSource<int> _started = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _pending = -1;

    /// <summary>Completes with the number of agents once the child reported them started.</summary>
    public Task<int> Started => _started.Task;

    /// <summary>The line a child writes when its <paramref name="agents"/> agents have started.</summary>
    public static string StartedLine(int agents) => StartedLinePrefix + agents.ToString(CultureInfo.InvariantCulture);

    /// <summary>The OS process.</summary>
    public Process Process => process;

    /// <summary>Messages the child's agents still held when it stopped; null until it reported.</summary>
    public int? PendingInOutboxes => Volatile.Read(ref _pending) is >= 0 and var pending ? pending : null;

    /// <summary>The line a stopping child writes for <paramref name="pending"/> unacknowledged messages.</summary>
    public static string PendingLine(int pending) => PendingLinePrefix + pending.ToString(CultureInfo.InvariantCulture);

    /// <summary>One line of the child's standard output: its report is kept, anything else ignored.</summary>
    public void OnOutput(string? line)
    {
        if (line is not null && line.StartsWith(StartedLinePrefix, StringComparison.Ordinal)
            && int.TryParse(line.AsSpan(StartedLinePrefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out int agents))
            _started.TrySetResult(agents);
        if (line is not null && line.StartsWith(PendingLinePrefix, StringComparison.Ordinal)
            && int.TryParse(line.AsSpan(PendingLinePrefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out int pending))
            Volatile.Write(ref _pending, pending);
    }

    /// <summary>Asks the child to stop (closes its standard input) and waits up to <paramref name="timeout"/> for it to exit; kills it after that.</summary>
    /// <returns>Whether it exited by itself.</returns>
    public async Task<bool> StopAsync(TimeSpan timeout)
    {
        if (process.HasExited) return true;
        try
        {
            process.StandardInput.Close();
        }
        catch (Exception e) when (e is IOException or InvalidOperationException)
        {
            // its end is gone already: it is exiting
        }
        try
        {
            await process.WaitForExitAsync().WaitAsync(timeout).ConfigureAwait(false); // its redirected output is read to the end too
            return true;
        }
        catch (TimeoutException)
        {
            process.Kill(entireProcessTree: true);
            return false;
        }
    }

    /// <summary>Kills the child if it still runs, and releases the process handle.</summary>
    public void Dispose()
    {
        try
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
            // never started, or gone
        }
        process.Dispose();
    }
}
