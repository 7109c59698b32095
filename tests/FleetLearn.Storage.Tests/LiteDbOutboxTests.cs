using FleetLearn.Core.Model;
using FleetLearn.Storage;

namespace FleetLearn.Storage.Tests;

public sealed class LiteDbOutboxTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("fl-outbox-").FullName;

    private string DbPath => Path.Combine(_dir, "agent.db");

    private static OutboxItem Item(long round, byte fill = 1) =>
        new(Guid.NewGuid(), "v1", round, $"fleetlearn/v1/f/vehicles/v1/up/update", Enumerable.Repeat(fill, 1000).ToArray(), DateTimeOffset.UnixEpoch.AddDays(30000));

    [Fact]
    public void Enqueue_ThenReopen_ItemsSurvive()
    {
        var a = Item(1);
        var b = Item(2, 7);
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
