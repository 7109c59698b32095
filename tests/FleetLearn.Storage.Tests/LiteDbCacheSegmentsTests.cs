using System.Reflection;
using LiteDB;

namespace FleetLearn.Storage.Tests;

/// <summary>An outbox that writes and acknowledges a masked input each round keeps a small page cache with <see cref="LiteDbCacheSegments.Small"/> (docs/scale.md).</summary>
public sealed class LiteDbCacheSegmentsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("fl-cache-").FullName;

    public void Dispose()
    {
        LiteDbCacheSegments.Use(LiteDbCacheSegments.Default);
        Directory.Delete(_dir, recursive: true);
    }

    /// <summary>Pages of 8 KiB the outbox's LiteDB cache has allocated after six rounds of a 650 KB masked input, sent and acknowledged, and what it still reads back.</summary>
    private (int Pages, byte[] Last) SixRounds(string name)
    {
        using var outbox = LiteDbOutbox.Open(Path.Combine(_dir, name));
        byte[] last = [];
        for (int round = 1; round <= 6; round++)
        {
            var payload = new byte[650_000];
            new Random(round).NextBytes(payload);
            var id = Guid.NewGuid();
            outbox.Enqueue(new OutboxItem(id, "v1", round, "fleetlearn/v1/f/vehicles/v1/up/secagg", payload, DateTimeOffset.UnixEpoch.AddDays(30000)));
            last = outbox.Pending().Single().Payload;
            Assert.Equal(payload, last);
            outbox.Acknowledge(id);
            outbox.SetState("last-round", round);
        }
        return (CachePages(outbox), last);
    }

    private static int CachePages(LiteDbOutbox outbox)
    {
        object Field(object o, string name) => o.GetType().GetField(name, BindingFlags.NonPublic | BindingFlags.Instance)!.GetValue(o)!;
        var cache = Field(Field(Field(Field(outbox, "_db"), "_engine"), "_disk"), "_cache");
        return (int)cache.GetType().GetProperty("ExtendPages")!.GetValue(cache)!;
    }

    [Fact]
    public void Small_OutboxOfMaskedInputs_CachesAQuarterOfTheDefaultPages()
    {
        Assert.Equal([12, 50, 100, 500, 1000], LiteDbCacheSegments.Default);
        LiteDbCacheSegments.Use(LiteDbCacheSegments.Default);
        var (defaultPages, _) = SixRounds("default.db");
        LiteDbCacheSegments.UseSmall();
        Assert.Equal([12, 50], LiteDbCacheSegments.Current);
        var (smallPages, last) = SixRounds("small.db");
        Assert.Equal(650_000, last.Length);
        Assert.Equal(662, defaultPages); // 12 + 50 + 100 + 500: 5.4 MB per file
        Assert.True(smallPages <= 162, $"{smallPages} pages cached with small segments");
    }

    [Fact]
    public void Use_NoSegments_Refused() =>
        Assert.Equal("Expected at least one segment size of at least one page. (Parameter 'pages')", Assert.Throws<ArgumentException>(() => LiteDbCacheSegments.Use([])).Message);
}
