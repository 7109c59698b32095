using FleetLearn.Core.Rounds;

namespace FleetLearn.Storage.Tests;

/// <summary>The aggregator's open round (signed plan) and journal of folded updates survive a reopen; a close compacts them to ids.</summary>
public sealed class RoundJournalTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("fl-journal-").FullName;

    private string DbPath => Path.Combine(_dir, "aggregator.db");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static RoundRecord Open(long round) => new(round, round - 1, null, RoundStatus.Open, 3, 0, double.NaN, DateTimeOffset.UnixEpoch, null);

    [Fact]
    public void Journal_Reopened_SamePlanAndUpdatesInFoldOrder()
    {
        var updates = Enumerable.Range(0, 3).Select(i => new JournaledUpdate($"car-{2 - i}", Guid.NewGuid(), [(byte)i, 7, 7], 0.5 * i)).ToArray();
        using (var store = LiteDbRoundStore.Open(DbPath))
        {
            store.SaveOpenRound(Open(4), [1, 2, 3]);
            foreach (var u in updates) store.Journal(4, u);
            store.Journal(5, new JournaledUpdate("car-9", Guid.NewGuid(), [9], 0)); // another round's entry is not mixed in
        }
        using (var store = LiteDbRoundStore.Open(DbPath))
        {
            Assert.Equal(RoundStatus.Open, Assert.Single(store.Rounds()).Status);
            Assert.Equal([1, 2, 3], store.SignedPlan(4));
            var journal = store.JournalOf(4);
            Assert.Equal(updates.Select(u => (u.Vehicle, u.UpdateId, u.TrainLoss)), journal.Select(u => (u.Vehicle, u.UpdateId, u.TrainLoss)));
            Assert.Equal(updates.Select(u => u.Envelope), journal.Select(u => u.Envelope));
            Assert.Equal(updates.Select(u => u.UpdateId).ToHashSet(), store.UpdateIdsOf(4));
            Assert.Equal(["car-0", "car-1", "car-2"], store.VehiclesOf(4).Order(StringComparer.Ordinal));
        }
    }

    [Fact]
    public void Journal_FedBuffEntries_KeepTheirLeaseVersionAndSlotAcrossAReopen()
    {
        var updates = new[]
        {
            new JournaledUpdate("car-a", Guid.NewGuid(), [1], 0.25, LeaseVersion: 6, Slot: 3),
            new JournaledUpdate("car-b", Guid.NewGuid(), [2], 0.5, LeaseVersion: 7, Slot: ulong.MaxValue),
            new JournaledUpdate("car-c", Guid.NewGuid(), [3], 0.75), // a synchronous round's: no lease
        };
        using (var store = LiteDbRoundStore.Open(DbPath))
            foreach (var u in updates) store.Journal(8, u);
        using (var reopened = LiteDbRoundStore.Open(DbPath))
            Assert.Equal(updates.Select(u => (u.Vehicle, u.LeaseVersion, u.Slot)), reopened.JournalOf(8).Select(u => (u.Vehicle, u.LeaseVersion, u.Slot)));
    }

    [Fact]
    public void CompactJournal_AfterClose_PlanAndBytesGoneIdsKeptForThreeRounds()
    {
        using var store = LiteDbRoundStore.Open(DbPath);
        var ids = new Dictionary<long, Guid>();
        for (long round = 1; round <= 5; round++)
        {
            store.SaveOpenRound(Open(round), [(byte)round], ["car-0", "car-late"]);
            store.Journal(round, new JournaledUpdate("car-0", ids[round] = Guid.NewGuid(), new byte[1000], 0));
            store.SaveRound(Open(round) with { Status = RoundStatus.Aborted });
            store.CompactJournal(round);
            Assert.Null(store.SignedPlan(round));
            Assert.Empty(store.JournalOf(round));            // the bytes are gone
            Assert.Equal([ids[round]], store.UpdateIdsOf(round)); // the ids answer resends as duplicates
            Assert.Equal(["car-0", "car-late"], store.VehiclesOf(round).Order(StringComparer.Ordinal)); // the cohort still passes the chunk layer's check
        }
        Assert.Empty(store.UpdateIdsOf(1));
        Assert.Empty(store.UpdateIdsOf(2));
        Assert.Empty(store.VehiclesOf(2));
        Assert.Equal([ids[3]], store.UpdateIdsOf(3));
    }
}
