using FleetLearn.Core.Model;

namespace FleetLearn.Storage.Tests;

/// <summary>A damaged database file is refused at open with its full path in the message, never with a bare LiteDB error later.</summary>
public sealed class DamagedFileTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("fl-damaged-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static void Outbox(string path)
    {
        using var outbox = LiteDbOutbox.Open(path);
        outbox.Enqueue(new OutboxItem(Guid.NewGuid(), "v1", 1, "fleetlearn/v1/f/vehicles/v1/up/update", new byte[3000], DateTimeOffset.UnixEpoch.AddDays(30000)));
        outbox.SetState("last-round", 1);
    }

    private static void RoundStore(string path)
    {
        using var store = LiteDbRoundStore.Open(path);
        store.SaveModel(new Checkpoint(new ModelSpec([4, 3, 2]), 0, new float[new ModelSpec([4, 3, 2]).ParameterCount], "{}"));
    }

    [Theory]
    [InlineData("outbox", 0)]
    [InlineData("outbox", 1)]
    [InlineData("outbox", 2)]
    [InlineData("round store", 0)]
    [InlineData("round store", 1)]
    [InlineData("round store", 2)]
    public void Open_DamagedPages_InvalidDataExceptionNamingTheFile(string what, int page)
    {
        string path = Path.Combine(_dir, $"{what.Replace(' ', '-')}-{page}.db");
        if (what == "outbox") Outbox(path); else RoundStore(path);
        // Overwrite one 8 KiB page (0: the header; 1, 2: the collection and data pages) with seeded noise.
        var bytes = File.ReadAllBytes(path);
        var noise = new byte[8192];
        new Random(page + 17).NextBytes(noise);
        noise.AsSpan(0, Math.Min(noise.Length, bytes.Length - page * 8192)).CopyTo(bytes.AsSpan(page * 8192));
        File.WriteAllBytes(path, bytes);

        Action open = what == "outbox" ? () => LiteDbOutbox.Open(path).Dispose() : () => LiteDbRoundStore.Open(path).Dispose();
        var e = Assert.Throws<InvalidDataException>(open);
        Assert.Contains(Path.GetFullPath(path), e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Open_NotADatabase_InvalidDataExceptionNamingTheFile()
    {
        string path = Path.Combine(_dir, "random.db");
        var bytes = new byte[3 * 8192];
        new Random(5).NextBytes(bytes);
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<InvalidDataException>(() => LiteDbRoundStore.Open(path).Dispose());
        Assert.Contains(path, e.Message, StringComparison.Ordinal);
    }
}
