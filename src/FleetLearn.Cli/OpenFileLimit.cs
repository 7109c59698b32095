using System.Runtime.InteropServices;

namespace FleetLearn.Cli;

/// <summary>
/// The process's open-file limit (<c>RLIMIT_NOFILE</c>) against what a simulated fleet in one process needs. Each agent holds
/// about a dozen descriptors (its MQTT socket, and LiteDB keeps two handles on each of its outbox's and its privacy ledger's
/// data and log files, plus the ledger's mirror), and the embedded broker one socket per connected vehicle, so 2,500 agents
/// beside a broker of 10,000 need about 40,000. The .NET runtime already raises the soft limit to the hard one when it starts;
/// past the hard limit only a process with CAP_SYS_RESOURCE may go (up to <c>fs.nr_open</c>), and this one tries. Otherwise the
/// run stops before it starts, saying what to change, instead of failing in the middle with "Too many open files", an agent
/// database taken for a damaged one, or "Out of memory." (all three seen with 10,000 agents in 4 processes under a hard
/// limit of 20,000).
/// </summary>
internal static partial class OpenFileLimit
{
    /// <summary>Descriptors one simulated agent holds (measured at 500 agents: 11.4 each, sockets of both ends included).</summary>
    public const int PerAgent = 12;

    /// <summary>Room for everything else a process opens (assemblies, pipes, the aggregator's files, epoll).</summary>
    public const int Reserve = 1024;

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
