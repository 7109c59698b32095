using FleetLearn.Core.Privacy;
using LiteDB;

namespace FleetLearn.Storage.Tests;

public sealed class LiteDbPrivacyLedgerStoreTests : IDisposable
{
    private static readonly double[] Orders = [1.5, 2, 3, 4, 6, 8, 12, 16, 32, 64];
    private readonly string _dir = Directory.CreateTempSubdirectory("fleetlearn-ledger-").FullName;

    private string DbPath => Path.Combine(_dir, "ledger.db");

    private static PrivacyLedgerOptions Options(double epsilonMax = 50) => new(epsilonMax, 1e-5, orders: Orders);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void Open_NewFile_IsEmpty()
    {
        using var store = LiteDbPrivacyLedgerStore.Open(DbPath, Options());
        Assert.Empty(store.Vehicles());
        Assert.Equal(new LedgerVerification(0, 0, 0), store.Verification);
        Assert.Equal(0.0, store.EpsilonOf("v1"));
    }

    [Fact]
    public void Record_ThenReopen_SameRoundsAndEpsilon()
    {
        VehiclePrivacyState a, b;
        using (var store = LiteDbPrivacyLedgerStore.Open(DbPath, Options()))
        {
            for (int round = 1; round <= 4; round++) store.Record("car-a", round, PrivacyCharge.Participation(3.0));
            store.Record("car-b", 2, PrivacyCharge.Participation(1.5, steps: 2));
            a = store.Get("car-a");
            b = store.Get("car-b");
        }
        using var reopened = LiteDbPrivacyLedgerStore.Open(DbPath, Options());
        Assert.Equal(new LedgerVerification(2, 5, 0), reopened.Verification);
        Assert.Equal(a.Rounds, reopened.Get("car-a").Rounds);
        Assert.Equal(a.Spent, reopened.Get("car-a").Spent);
        Assert.Equal(b.Charges, reopened.Get("car-b").Charges);
        Assert.Equal(b.Spent, reopened.Get("car-b").Spent);
        Assert.Equal(RdpAccountant.GetEpsilon(1, 3.0, 4, 1e-5, Orders).Epsilon, reopened.EpsilonOf("car-a"), 12);
    }

    [Fact]
    public void RecordAcrossReopens_EpsilonNeverDecreases()
    {
        double previous = 0;
        for (int session = 0; session < 4; session++)
        {
            using var store = LiteDbPrivacyLedgerStore.Open(DbPath, Options());
            Assert.Equal(previous, store.EpsilonOf("v"));
            for (int k = 0; k < 3; k++)
            {
                double eps = store.Record("v", session * 10 + k, PrivacyCharge.Participation(2.0)).Epsilon;
                Assert.True(eps > previous);
                previous = eps;
            }
        }
    }

    [Fact]
    public void TryRecord_OverBudget_RefusesAndPersistsNothing()
    {
        int recorded = 0;
        using (var store = LiteDbPrivacyLedgerStore.Open(DbPath, Options(epsilonMax: 3.0)))
        {
            while (store.TryRecord("v", recorded + 1, PrivacyCharge.Participation(2.0), out _)) recorded++;
            Assert.False(store.CanParticipate("v", PrivacyCharge.Participation(2.0)));
        }
        using var reopened = LiteDbPrivacyLedgerStore.Open(DbPath, Options(epsilonMax: 3.0));
        Assert.Equal(recorded, reopened.Get("v").Participations);
        Assert.False(reopened.CanParticipate("v", PrivacyCharge.Participation(2.0)));
    }

    [Fact]
    public void Open_WithOtherOrders_RecomputesFromHistory()
    {
        using (var store = LiteDbPrivacyLedgerStore.Open(DbPath, Options())) store.Record("v", 1, PrivacyCharge.Participation(2.0));
        using var reopened = LiteDbPrivacyLedgerStore.Open(DbPath, new PrivacyLedgerOptions(50, 1e-5));
        Assert.Equal(1, reopened.Verification.RecomputedForNewSettings);
        Assert.Equal(RdpAccountant.GetEpsilon(1, 2.0, 1, 1e-5).Epsilon, reopened.EpsilonOf("v"), 12);
    }

    [Fact]
    public void Open_TamperedEpsilon_RefusesToStart()
    {
        using (var store = LiteDbPrivacyLedgerStore.Open(DbPath, Options())) store.Record("v", 1, PrivacyCharge.Participation(2.0));
        using (var db = new LiteDatabase($"Filename={DbPath};Connection=direct"))
        {
            var col = db.GetCollection<BsonDocument>("privacy_ledger");
            var doc = col.FindById("v");
            doc["epsilon"] = 0.001;
            col.Update(doc);
        }
        var e = Assert.Throws<InvalidDataException>(() => LiteDbPrivacyLedgerStore.Open(DbPath, Options()));
        Assert.Contains("'v'", e.Message);
    }

    [Fact]
    public void Open_TruncatedHistory_RefusesToStart()
    {
        using (var store = LiteDbPrivacyLedgerStore.Open(DbPath, Options()))
        {
            store.Record("v", 1, PrivacyCharge.Participation(2.0));
            store.Record("v", 2, PrivacyCharge.Participation(2.0));
        }
        using (var db = new LiteDatabase($"Filename={DbPath};Connection=direct"))
        {
            var col = db.GetCollection<BsonDocument>("privacy_ledger");
            var doc = col.FindById("v");
            doc["sigma"].AsArray.RemoveAt(1);
            col.Update(doc);
        }
        Assert.Throws<InvalidDataException>(() => LiteDbPrivacyLedgerStore.Open(DbPath, Options()));
    }

    [Fact]
    public void Open_GarbageFile_RefusesToStart()
    {
        File.WriteAllBytes(DbPath, Enumerable.Range(0, 16384).Select(i => (byte)(i * 31)).ToArray());
        Assert.Throws<InvalidDataException>(() => LiteDbPrivacyLedgerStore.Open(DbPath, Options()));
    }
}
