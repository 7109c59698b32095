using FleetLearn.Core.Model;
using FleetLearn.Storage;

namespace FleetLearn.Storage.Tests;

public sealed class LiteDbOutboxTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("fl-outbox-").FullName;

    private string DbPath => Path.Combine(_dir, "agent.db");

    private static OutboxItem Item(long round, byte fill = 1) =>
        new(Guid.NewGuid(), "v1", round, $"fleetlearn/v1/f/vehicles/v1/up/update", Enumerable.Repeat(fill, 1000).ToArray(), DateTimeOffset.UnixEpoch.AddDays(30000));

    /// <summary>An item whose payload goes to a file (over <see cref="LiteDbOutbox.InlinePayloadBytes"/>).</summary>
    private static OutboxItem Large(long round, byte fill = 1) => Item(round) with { Payload = Enumerable.Repeat(fill, Big).ToArray() };

    private const int Big = LiteDbOutbox.InlinePayloadBytes + 1000;

    [Fact]
    public void Enqueue_ThenReopen_ItemsSurvive()
    {
        var a = Item(1);
        var b = Large(2, 7); // one in its document, one in a file
        using (var outbox = LiteDbOutbox.Open(DbPath))
        {
            outbox.Enqueue(a);
            outbox.Enqueue(b);
            outbox.SetState("last-round", 2);
        }
        using var reopened = LiteDbOutbox.Open(DbPath);
        var pending = reopened.Pending();
        Assert.Equal([a.UpdateId, b.UpdateId], pending.Select(p => p.UpdateId));
        Assert.Equal(b.Payload, pending[1].Payload);
        Assert.Equal(2, reopened.GetState("last-round"));
    }

    [Fact]
    public void Acknowledge_RemovesOnlyThatItem_AndSecondAckIsHarmless()
    {
        using var outbox = LiteDbOutbox.Open(DbPath);
        var a = Item(1);
        var b = Item(1);
        outbox.Enqueue(a);
        outbox.Enqueue(b);
        Assert.True(outbox.Acknowledge(a.UpdateId));
        Assert.False(outbox.Acknowledge(a.UpdateId));
        Assert.Equal([b.UpdateId], outbox.Pending().Select(p => p.UpdateId));
    }

    [Fact]
    public void Enqueue_SameUpdateIdTwice_KeepsOne()
    {
        using var outbox = LiteDbOutbox.Open(DbPath);
        var a = Item(1);
        outbox.Enqueue(a);
        outbox.Enqueue(a with { Attempts = 3 });
        Assert.Equal(1, outbox.Count);
    }

    [Fact]
    public void DropExpired_RemovesPastDeadline()
    {
        using var outbox = LiteDbOutbox.Open(DbPath);
        var now = DateTimeOffset.UtcNow;
        outbox.Enqueue(Item(1) with { ExpiresAt = now.AddSeconds(-1) });
        outbox.Enqueue(Item(2) with { ExpiresAt = now.AddHours(1) });
        Assert.Equal(1, outbox.DropExpired(now));
        Assert.Equal(2, Assert.Single(outbox.Pending()).Round);
    }

    [Fact]
    public void Enqueue_PayloadLivesInAFileBesideTheDatabase_NotInTheDocument()
    {
        var a = Large(1, 9) with { Payload = Enumerable.Range(0, 300_000).Select(i => (byte)i).ToArray() };
        using var outbox = LiteDbOutbox.Open(DbPath);
        outbox.Enqueue(a);
        string file = Assert.Single(Directory.GetFiles(outbox.PayloadFolder));
        Assert.Equal(a.Payload, File.ReadAllBytes(file));
        Assert.True(new FileInfo(DbPath).Length < 200_000, $"the database holds {new FileInfo(DbPath).Length} bytes for a 300,000-byte payload");
        Assert.Equal(a.Payload, outbox.Find(a.UpdateId)!.Payload);
        var entry = Assert.Single(outbox.Entries());
        Assert.Equal((a.UpdateId, a.Topic, 300_000L, a.ExpiresAt), (entry.UpdateId, entry.Topic, entry.Length, entry.ExpiresAt));
    }

    [Fact]
    public void Acknowledge_AndDropExpired_DeleteThePayloadFiles()
    {
        using var outbox = LiteDbOutbox.Open(DbPath);
        var now = DateTimeOffset.UtcNow;
        var acked = Large(1);
        var expired = Large(1) with { ExpiresAt = now.AddSeconds(-1) };
        var waiting = Large(2, 5);
        outbox.Enqueue(acked);
        outbox.Enqueue(expired);
        outbox.Enqueue(waiting);
        Assert.Equal(3, Directory.GetFiles(outbox.PayloadFolder).Length);
        Assert.True(outbox.Acknowledge(acked.UpdateId));
        Assert.Equal(1, outbox.DropExpired(now));
        string left = Assert.Single(Directory.GetFiles(outbox.PayloadFolder));
        Assert.StartsWith(waiting.UpdateId.ToString("N"), Path.GetFileName(left), StringComparison.Ordinal);
    }

    [Fact]
    public void Enqueue_SameUpdateIdWithOtherBytes_ReplacesPayloadAndItsFile()
    {
        using var outbox = LiteDbOutbox.Open(DbPath);
        var a = Large(1, 1);
        outbox.Enqueue(a);
        outbox.Enqueue(a with { Payload = Enumerable.Repeat((byte)7, Big).ToArray() });
        Assert.Equal(Enumerable.Repeat((byte)7, Big), outbox.Find(a.UpdateId)!.Payload);
        Assert.Single(Directory.GetFiles(outbox.PayloadFolder));
    }

    [Fact]
    public void Enqueue_SmallPayload_StaysInItsDocument_NoFile()
    {
        using var outbox = LiteDbOutbox.Open(DbPath);
        var small = Item(1) with { Payload = Enumerable.Repeat((byte)2, LiteDbOutbox.InlinePayloadBytes).ToArray() };
        outbox.Enqueue(small);
        outbox.KeepAfterAcknowledgement(small.UpdateId);
        Assert.Empty(Directory.GetFiles(outbox.PayloadFolder));
        Assert.Equal(small.Payload, outbox.Find(small.UpdateId)!.Payload);
        Assert.True(outbox.Acknowledge(small.UpdateId));
        Assert.Null(outbox.ReadKept(small.UpdateId)); // only a file is kept: the sender holds a small message itself
    }

    /// <summary>A power cut after a document but before its payload reached the disk, or a file damaged later: the message is dropped at open, never sent.</summary>
    [Theory]
    [InlineData("missing")]
    [InlineData("truncated")]
    [InlineData("flipped")]
    [InlineData("longer")]
    public void Open_PayloadFileMissingTruncatedOrCorrupt_DropsThatMessageWithAWarning(string damage)
    {
        var bad = Large(1, 3);
        var good = Large(2, 4);
        string folder;
        using (var outbox = LiteDbOutbox.Open(DbPath))
        {
            outbox.Enqueue(bad);
            outbox.Enqueue(good);
            folder = outbox.PayloadFolder;
        }
        string file = Directory.GetFiles(folder).Single(f => Path.GetFileName(f).StartsWith(bad.UpdateId.ToString("N"), StringComparison.Ordinal));
        Damage(file, damage);
        var warnings = new List<string>();
        using var reopened = LiteDbOutbox.Open(DbPath, warnings.Add);
        Assert.Equal([good.UpdateId], reopened.Pending().Select(p => p.UpdateId));
        Assert.Equal(good.Payload, reopened.Pending()[0].Payload);
        string warning = Assert.Single(warnings);
        Assert.Contains($"message {bad.UpdateId} of round 1", warning, StringComparison.Ordinal);
        Assert.Contains(damage switch
        {
            "missing" => "is missing",
            "truncated" => $"has {Big - 1} bytes, not the {Big} written",
            "longer" => $"has {Big + 1} bytes, not the {Big} written",
            _ => "fails its SHA-256 check",
        }, warning, StringComparison.Ordinal);
        Assert.Equal(1, reopened.Count);
        Assert.Single(Directory.GetFiles(folder)); // the damaged file went with its document
    }

    [Fact]
    public void Find_PayloadFileDamagedWhileOpen_DropsThatMessageWithAWarning()
    {
        var warnings = new List<string>();
        using var outbox = LiteDbOutbox.Open(DbPath, warnings.Add);
        var a = Large(1, 3);
        outbox.Enqueue(a);
        Damage(Assert.Single(Directory.GetFiles(outbox.PayloadFolder)), "truncated");
        Assert.Null(outbox.Find(a.UpdateId));
        Assert.Equal(0, outbox.Count);
        Assert.Contains($"has {Big - 1} bytes, not the {Big} written; it is not sent", Assert.Single(warnings), StringComparison.Ordinal);
    }

    /// <summary>A power cut after a payload file but before its document (or a crash before an acknowledged item's file was deleted): the file is swept at open.</summary>
    [Fact]
    public void Open_OrphanPayloadFilesAndTempFiles_AreDeleted()
    {
        var kept = Large(1);
        string folder;
        using (var outbox = LiteDbOutbox.Open(DbPath))
        {
            outbox.Enqueue(kept);
            folder = outbox.PayloadFolder;
        }
        File.WriteAllBytes(Path.Combine(folder, Guid.NewGuid().ToString("N") + "-0011223344556677.bin"), new byte[500]);
        File.WriteAllBytes(Path.Combine(folder, Guid.NewGuid().ToString("N") + "-0011223344556677.bin.tmp"), new byte[50]);
        var warnings = new List<string>();
        using var reopened = LiteDbOutbox.Open(DbPath, warnings.Add);
        string left = Assert.Single(Directory.GetFiles(folder));
        Assert.StartsWith(kept.UpdateId.ToString("N"), Path.GetFileName(left), StringComparison.Ordinal);
        Assert.Equal(kept.Payload, Assert.Single(reopened.Pending()).Payload);
        Assert.Empty(warnings);
    }

    [Fact]
    public void KeepAfterAcknowledgement_PayloadReadableAfterAck_UntilTheNextKeepOrReopen()
    {
        var first = Large(1, 1);
        var second = Large(1, 2);
        string folder;
        using (var outbox = LiteDbOutbox.Open(DbPath))
        {
            folder = outbox.PayloadFolder;
            outbox.Enqueue(first);
            outbox.KeepAfterAcknowledgement(first.UpdateId);
            Assert.True(outbox.Acknowledge(first.UpdateId));
            Assert.Equal(first.Payload, outbox.ReadKept(first.UpdateId));
            Assert.Null(outbox.ReadKept(second.UpdateId));
            outbox.Enqueue(second);
            outbox.KeepAfterAcknowledgement(second.UpdateId);
            Assert.Null(outbox.ReadKept(first.UpdateId));
            Assert.True(outbox.Acknowledge(second.UpdateId));
            Assert.Equal(second.Payload, outbox.ReadKept(second.UpdateId));
            Assert.Single(Directory.GetFiles(folder)); // the first one's file went when the second was kept
        }
        using var reopened = LiteDbOutbox.Open(DbPath);
        Assert.Null(reopened.ReadKept(second.UpdateId));
        Assert.Empty(Directory.GetFiles(folder)); // named by no document: swept
    }

    private static void Damage(string file, string how)
    {
        var bytes = File.ReadAllBytes(file);
        switch (how)
        {
            case "missing": File.Delete(file); break;
            case "truncated": File.WriteAllBytes(file, bytes[..^1]); break;
            case "longer": File.WriteAllBytes(file, [.. bytes, 0]); break;
            default:
                bytes[bytes.Length / 2] ^= 0x10;
                File.WriteAllBytes(file, bytes);
                break;
        }
    }

    [Fact]
    public void RoundStore_ModelAndRounds_SurviveReopen()
    {
        var spec = ModelSpec.Parse("4-3-2");
        var model = new Checkpoint(spec, 5, ModelInitializer.Initialize(spec, 1));
        var t = DateTimeOffset.FromUnixTimeMilliseconds(1_700_000_000_000);
        string path = Path.Combine(_dir, "agg.db");
        using (var store = LiteDbRoundStore.Open(path))
        {
            store.SaveModel(model with { Version = 4 });
            store.SaveModel(model);
            store.SaveRound(new RoundRecord(5, 4, 5, RoundStatus.Applied, 3, 3, 0.5, t, t.AddSeconds(1)));
            store.SaveRound(new RoundRecord(6, 5, null, RoundStatus.Open, 3, 0, double.NaN, t.AddSeconds(2), null));
        }
        using var reopened = LiteDbRoundStore.Open(path);
        var latest = reopened.LatestModel();
        Assert.NotNull(latest);
        Assert.Equal(5, latest.Version);
        Assert.Equal(model.Parameters, latest.Parameters);
        var rounds = reopened.Rounds();
        Assert.Equal([5L, 6L], rounds.Select(r => r.Round));
        Assert.Equal(RoundStatus.Open, rounds[1].Status);
        Assert.Null(rounds[1].ModelVersionOut);
    }

    [Fact]
    public void RoundStore_SaveModelAndRound_BothStoredOrOnFailureNeither()
    {
        var spec = ModelSpec.Parse("4-3-2");
        var t = DateTimeOffset.FromUnixTimeMilliseconds(1_700_000_000_000);
        string path = Path.Combine(_dir, "agg.db");
        using (var store = LiteDbRoundStore.Open(path))
        {
            store.SaveModel(new Checkpoint(spec, 0, ModelInitializer.Initialize(spec, 1)));
            store.SaveRound(new RoundRecord(1, 0, null, RoundStatus.Open, 2, 0, double.NaN, t, null));
            var model1 = new Checkpoint(spec, 1, ModelInitializer.Initialize(spec, 2));
            store.SaveModelAndRound(model1, new RoundRecord(1, 0, 1, RoundStatus.Applied, 2, 2, 0.4, t, t.AddSeconds(1)));
            Assert.Throws<ArgumentException>(() => store.SaveModelAndRound(model1 with { Version = 3 }, new RoundRecord(2, 1, 2, RoundStatus.Applied, 2, 2, 0.3, t, t)));

            // A record LiteDB refuses (over its 16 MiB document limit) after the model's chunks went in: the transaction
            // rolls the model back too, so no model 2 exists without the round that made it.
            var tooBig = new RoundRecord(2, 1, 2, RoundStatus.Applied, 2, 2, 0.3, t, t, Note: new string('x', 17 << 20));
            var refused = Assert.ThrowsAny<Exception>(() => store.SaveModelAndRound(new Checkpoint(spec, 2, ModelInitializer.Initialize(spec, 3)), tooBig));
            Assert.Contains("Document size", refused.Message, StringComparison.Ordinal); // refused at the record, after the upload
        }
        using var reopened = LiteDbRoundStore.Open(path);
        Assert.Equal(1, reopened.LatestModel()!.Version);
        var round = Assert.Single(reopened.Rounds());
        Assert.Equal((RoundStatus.Applied, 1L, 2), (round.Status, round.ModelVersionOut!.Value, round.Participants));
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}
