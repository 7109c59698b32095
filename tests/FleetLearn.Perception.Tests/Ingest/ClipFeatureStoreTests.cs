using System.Security.Cryptography;
using System.Text;
using CsCheck;
using FleetLearn.Perception.Ingest;
using Microsoft.Extensions.Time.Testing;

namespace FleetLearn.Perception.Tests.Ingest;

public sealed class ClipFeatureStoreTests : IDisposable
{
    private const int F = 4;
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("fleetlearn-clipstore-");

    public void Dispose() => _dir.Delete(true);

    private static string Hash(string name) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(name)));

    private ClipFeatureStore Open(long quota = 1 << 20, TimeSpan? maxAge = null, TimeProvider? time = null, List<string>? log = null) =>
        ClipFeatureStore.Open(_dir.FullName, "backbone-a", F, quota, maxAge, time, log is null ? null : log.Add);

    private static (float[] Features, int[] Labels, LabelSource[] Sources) Clip(int frames, int seed)
    {
        var features = Enumerable.Range(0, frames * F).Select(i => (float)(seed * 1000 + i)).ToArray();
        var labels = Enumerable.Range(0, frames).Select(i => i % 3 == 2 ? -1 : (seed + i) % 10).ToArray();
        var sources = labels.Select(l => l < 0 ? LabelSource.None : LabelSource.Sidecar).ToArray();
        return (features, labels, sources);
    }

    private static void Add(ClipFeatureStore store, string name, int frames, int seed)
    {
        var (f, l, s) = Clip(frames, seed);
        Assert.True(store.Add(Hash(name), name, f, l, s));
    }

    [Fact]
    public void Add_ThenReopen_SameFramesLabelsAndSources()
    {
        var (f, l, s) = Clip(5, 3);
        using (var store = Open()) Assert.True(store.Add(Hash("a"), "a.mp4", f, l, s));
        using var again = Open();
        var clip = Assert.Single(again.ReadAll());
        Assert.Equal(Hash("a"), clip.Hash);
        Assert.Equal("a.mp4", clip.Source);
        Assert.Equal(f, clip.Features);
        Assert.Equal(l, clip.Labels);
        Assert.Equal(s, clip.LabelSources);
        Assert.Equal(new FeatureStoreStats(1, 5, l.Count(x => x >= 0), again.Stats.Bytes), again.Stats);
    }

    [Fact]
    public void Add_SameClipTwice_StoredOnce()
    {
        using var store = Open();
        Add(store, "a", 4, 1);
        var (f, l, s) = Clip(4, 1);
        Assert.False(store.Add(Hash("a"), "copy-of-a.mp4", f, l, s));
        Assert.Equal(1, store.Stats.Clips);
        Assert.Single(Directory.GetFiles(_dir.FullName, "*.clip"));
    }

    [Fact]
    public void Add_OverQuota_OldestEvictedFirst_AndNotIngestedAgain()
    {
        var time = new FakeTimeProvider(DateTimeOffset.Parse("2026-01-01T00:00:00Z", System.Globalization.CultureInfo.InvariantCulture));
        long clipBytes;
        using (var probe = ClipFeatureStore.Open(Path.Combine(_dir.FullName, "probe"), "backbone-a", F, 1 << 20))
        {
            var (f, l, s) = Clip(10, 0);
            probe.Add(Hash("probe"), "a", f, l, s);
            clipBytes = probe.Stats.Bytes;
        }
        using var store = Open(quota: clipBytes * 3, time: time);
        foreach (var name in new[] { "a", "b", "c" })
        {
            Add(store, name, 10, name[0]);
            time.Advance(TimeSpan.FromMinutes(1));
        }
        Assert.Equal(3, store.Stats.Clips);
        Add(store, "d", 10, 'd');
        Assert.Equal(3, store.Stats.Clips);
        Assert.False(store.Contains(Hash("a"))); // the oldest went
        Assert.True(store.Contains(Hash("b")) && store.Contains(Hash("c")) && store.Contains(Hash("d")));
        Assert.True(store.Stats.Bytes <= store.QuotaBytes);
        Assert.Equal(1, store.Evicted);
        Assert.True(store.HasSeen(Hash("a"))); // still lying in the recorder's folder: not ingested again
        var (f2, l2, s2) = Clip(10, 'a');
        Assert.False(store.Add(Hash("a"), "a", f2, l2, s2));
    }

    [Fact]
    public void Evict_PastAgeLimit_Removed()
    {
        var time = new FakeTimeProvider(DateTimeOffset.Parse("2026-01-01T00:00:00Z", System.Globalization.CultureInfo.InvariantCulture));
        using var store = Open(maxAge: TimeSpan.FromDays(7), time: time);
        Add(store, "old", 3, 1);
        time.Advance(TimeSpan.FromDays(5));
        Add(store, "new", 3, 2);
        time.Advance(TimeSpan.FromDays(3)); // old: 8 days, new: 3 days
        Assert.Equal(1, store.Evict());
        Assert.Equal([Hash("new")], store.Clips);
    }

    [Fact]
    public void Open_LeftoverTempFileOfAKilledIngest_RemovedOthersKept()
    {
        using (var store = Open()) Add(store, "a", 3, 1);
        File.WriteAllBytes(Path.Combine(_dir.FullName, Hash("b") + ".tmp"), new byte[123]); // what kill -9 mid-write leaves
        var log = new List<string>();
        using var again = Open(log: log);
        Assert.Equal(1, again.Repaired);
        Assert.Equal([Hash("a")], again.Clips);
        Assert.Empty(Directory.GetFiles(_dir.FullName, "*.tmp"));
        Assert.Contains(log, l => l.Contains("did not finish", StringComparison.Ordinal));
        Assert.False(again.HasSeen(Hash("b"))); // so it is ingested again
    }

    [Fact]
    public void Open_OtherBackbone_ClipsDropped()
    {
        using (var store = Open()) Add(store, "a", 3, 1);
        using var other = ClipFeatureStore.Open(_dir.FullName, "backbone-b", F, 1 << 20);
        Assert.Equal(0, other.Stats.Clips);
        Assert.Equal(1, other.Repaired);
    }

    [Fact]
    public void Open_SecondProcessOnSameStore_ClearError()
    {
        using var store = Open();
        var e = Assert.Throws<IOException>(() => Open());
        Assert.Contains("in use by another process", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Open_AnyFlippedByte_ClipDroppedNeverMisread()
    {
        var (f, l, s) = Clip(3, 5);
        using (var store = Open()) store.Add(Hash("a"), "a", f, l, s);
        string path = Directory.GetFiles(_dir.FullName, "*.clip").Single();
        var original = File.ReadAllBytes(path);
        Gen.Int[0, original.Length - 1].Select(Gen.Byte[1, 255]).Sample((offset, flip) =>
        {
            var bytes = original.ToArray();
            bytes[offset] ^= flip;
            File.WriteAllBytes(path, bytes);
            using var store = Open();
            Assert.Equal(0, store.Stats.Clips);
            Assert.False(File.Exists(path));
            File.WriteAllBytes(path, original);
        }, iter: 40, threads: 1);
    }
}
