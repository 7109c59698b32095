using System.Globalization;

namespace FleetLearn.Simulation;

/// <summary>Peak resident memory of this and other processes, as the kernel counts it (Linux's <c>VmHWM</c>).</summary>
public static class ProcessMemory
{
    /// <summary>
    /// The most resident memory process <paramref name="pid"/> has held so far, in bytes (<c>VmHWM</c> of
    /// <c>/proc/PID/status</c>: what <c>/usr/bin/time -v</c> reports as the maximum resident set size); null where there is no
    /// such file (not Linux, or the process is gone). Read it before the process exits.
    /// </summary>
    public static long? PeakResidentBytes(int pid)
    {
        string path = $"/proc/{pid.ToString(CultureInfo.InvariantCulture)}/status";
        try
        {
            foreach (var line in File.ReadLines(path))
            {
                if (!line.StartsWith("VmHWM:", StringComparison.Ordinal)) continue;
                var kb = line["VmHWM:".Length..].Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries)[0];
                return long.Parse(kb, NumberStyles.None, CultureInfo.InvariantCulture) * 1024;
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
        return null;
    }
}
