using System.Globalization;
using FleetLearn.Aggregator;
using FleetLearn.EdgeAgent;

namespace FleetLearn.Simulation;

/// <summary>One line of what a large MQTT simulation holds and resends, for its progress output (the profile in docs/scale.md).</summary>
internal static class ScaleProbe
{
    /// <summary>Process RSS, managed heap (and its large-object part), the aggregator's inbox and duplicates, and the agents' sends and resends.</summary>
    public static string Line(AggregatorStatus status)
    {
        var gc = GC.GetGCMemoryInfo();
        long loh = gc.GenerationInfo.Length > 3 ? gc.GenerationInfo[3].SizeAfterBytes : 0;
        using var self = System.Diagnostics.Process.GetCurrentProcess();
        return string.Create(CultureInfo.InvariantCulture,
            $"rss {Gib(self.WorkingSet64)}, gen2 GCs {GC.CollectionCount(2)}, heap {Gib(GC.GetTotalMemory(false))} (loh {Gib(loh)}, committed {Gib(gc.TotalCommittedBytes)}), aggregator read {status.BytesUp / 1e6:F1} MB, inbox {status.InboxBytes / 1e6:F0} MB, duplicates {status.DuplicateUpdates}; agents sent {UplinkMetrics.Sends} ({UplinkMetrics.SentBytes / 1e6:F0} MB), resent {UplinkMetrics.Resends} ({UplinkMetrics.ResentBytes / 1e6:F0} MB), paced {UplinkMetrics.Paced}");
    }

    private static string Gib(long bytes) => (bytes / (double)(1L << 30)).ToString("F2", CultureInfo.InvariantCulture) + " GiB";
}
