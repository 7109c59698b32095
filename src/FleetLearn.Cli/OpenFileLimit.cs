using System.Runtime.InteropServices;

namespace FleetLearn.Cli;

/// <summary>
/// The process's open-file limit (<c>RLIMIT_NOFILE</c>) against what a simulated fleet in one process needs. An idle agent holds
/// its MQTT socket only: its outbox and privacy ledger close their files while it has no round and nothing to send (issue 16
/// item 3). An agent in a round holds about ten (LiteDB keeps two handles on each of its outbox's and its ledger's data and log
/// files, plus the ledger's mirror), and the embedded broker one socket per connected vehicle. So a process of 2,500 agents, a
/// cohort of 1,000 among them, needs about 13,500, and the broker's process for 10,000 vehicles about 11,000 (with
/// <c>--processes</c> above 1 the agents live apart from the broker). The .NET runtime already raises the soft limit to the hard one
/// when it starts; past the hard limit only a process with CAP_SYS_RESOURCE may go (up to <c>fs.nr_open</c>), and this one
/// tries. Otherwise the run stops before it starts, saying what to change, instead of failing in the middle with "Too many open
/// files", an agent database taken for a damaged one, or "Out of memory." (all three seen with 10,000 agents in 4 processes
/// under a hard limit of 20,000, when every agent held its files).
/// </summary>
internal static partial class OpenFileLimit
{
    /// <summary>Descriptors an idle simulated agent holds: its socket (measured at 1,000 agents, cohort 100: 2.0 each between rounds with the broker's end, docs/scale.md).</summary>
    public const int IdlePerAgent = 1;

    /// <summary>Descriptors an agent in a round holds: its socket and its database files (measured: 9 more than idle), and one more for a write's fsync handle.</summary>
    public const int BusyPerAgent = 11;

    /// <summary>Room for everything else a process opens (assemblies, pipes, the aggregator's files, epoll).</summary>
    public const int Reserve = 1024;

    /// <summary>
    /// What a process of <paramref name="agents"/> agents needs (<see cref="Reserve"/> included, the broker's sockets not), when a
    /// cohort of <paramref name="cohort"/> is drawn from <paramref name="vehicles"/>: as many of its agents as the cohort holds are
    /// counted busy, the others idle. Without the simulated link the aggregator takes the cohort from the first check-ins it
    /// reads, and one process's agents may be all of them (seen with 10,000 agents: the whole cohort of 1,000 in one process).
    /// </summary>
    public static long ForAgents(long agents, long vehicles, long cohort)
    {
        if (agents <= 0 || vehicles <= 0) return Reserve;
        long busy = Math.Min(Math.Min(agents, vehicles), cohort);
        return Reserve + IdlePerAgent * agents + (BusyPerAgent - IdlePerAgent) * busy;
    }

    private const int RlimitNofile = 7; // Linux, every 64-bit architecture .NET runs on

    /// <summary>
    /// Makes sure at least <paramref name="needed"/> descriptors may be open (<paramref name="what"/> says for what); writes
    /// what it raised to <paramref name="log"/>; throws <see cref="InvalidOperationException"/> when the limit stays too low.
    /// Does nothing outside 64-bit Linux.
    /// </summary>
    public static void Ensure(long needed, string what, TextWriter log)
    {
        if (!OperatingSystem.IsLinux() || !Environment.Is64BitProcess) return;
        if (GetRLimit(RlimitNofile, out var limit) != 0) return; // unknown: let the run find out
        if (limit.Current >= (ulong)needed) return;
        var raised = new RLimit { Current = (ulong)needed, Maximum = Math.Max(limit.Maximum, (ulong)needed) }; // a higher hard limit needs the privilege
        if (SetRLimit(RlimitNofile, in raised) == 0)
        {
            log.WriteLine($"open-file limit raised from {limit.Current:N0} to {raised.Current:N0} ({what} needs about {needed:N0})");
            return;
        }
        throw new InvalidOperationException(
            $"{what} needs about {needed:N0} open files, but this process may open {limit.Current:N0} (hard limit {limit.Maximum:N0}) and may not raise it: " +
            $"raise it (e.g. `ulimit -n {needed}` as root, or LimitNOFILE= in a systemd unit), or spread the agents over more --processes.");
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct RLimit
    {
        public ulong Current;
        public ulong Maximum;
    }

    [LibraryImport("libc", EntryPoint = "getrlimit")]
    private static partial int GetRLimit(int resource, out RLimit limit);

    [LibraryImport("libc", EntryPoint = "setrlimit")]
    private static partial int SetRLimit(int resource, in RLimit limit);
}
