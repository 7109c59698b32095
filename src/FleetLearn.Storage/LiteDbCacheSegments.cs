using System.Reflection;
using LiteDB;

namespace FleetLearn.Storage;

/// <summary>
/// LiteDB 5's page cache grows in segments of 12, 50, 100, 500 and 1,000 pages of 8 KiB (<c>Constants.MEMORY_SEGMENT_SIZES</c>),
/// never shrinks while the database is open, and reuses cached pages only once more of them sit unused than the next
/// segment holds. An agent's outbox writes a masked input of about 650 KB each round, so each of its files ended up with
/// segments of up to 5 MB; a process hosting hundreds of agents held that per agent (docs/scale.md). Capping the segment size
/// keeps each file's cache near the pages it uses at once. Process-wide, and only for files opened after the call: for
/// simulations hosting many agents; a vehicle runs one agent and keeps LiteDB's defaults.
/// </summary>
public static class LiteDbCacheSegments
{
    private static readonly FieldInfo Field = typeof(LiteDatabase).Assembly.GetType("LiteDB.Constants")?.GetField("MEMORY_SEGMENT_SIZES", BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static)
        ?? throw new InvalidOperationException($"LiteDB {typeof(LiteDatabase).Assembly.GetName().Version} has no Constants.MEMORY_SEGMENT_SIZES; its cache segments cannot be capped.");

    /// <summary>LiteDB's own segment sizes (12, 50, 100, 500, 1,000 pages).</summary>
    public static readonly IReadOnlyList<int> Default = [.. (int[])Field.GetValue(null)!];

    /// <summary>Segment sizes, in pages, for processes hosting many agents: at most 50 pages (400 KiB) per segment.</summary>
    public static readonly IReadOnlyList<int> Small = [12, 50];

    /// <summary>The segment sizes LiteDB files opened from now on in this process use.</summary>
    public static IReadOnlyList<int> Current => [.. (int[])Field.GetValue(null)!];

    /// <summary>Makes every LiteDB file opened from now on in this process grow its cache by <see cref="Small"/> segments.</summary>
    public static void UseSmall() => Use(Small);

    /// <summary>Makes every LiteDB file opened from now on in this process grow its cache by segments of <paramref name="pages"/> pages (a public static field of an internal class, set through reflection).</summary>
    public static void Use(IReadOnlyList<int> pages)
    {
        ArgumentNullException.ThrowIfNull(pages);
        if (pages.Count == 0 || pages.Any(p => p < 1)) throw new ArgumentException("Expected at least one segment size of at least one page.", nameof(pages));
        Field.SetValue(null, pages.ToArray());
    }
}
