using FleetLearn.Core.Privacy;

namespace FleetLearn.Storage.Tests;

/// <summary>Stores released while the vehicle is idle (issue 16 item 3): files closed, every operation reopens, nothing lost.</summary>
public sealed class ReleaseTests : IDisposable
{
    private static readonly double[] Orders = [1.5, 2, 3, 4, 6, 8, 12, 16, 32, 64];
    private readonly string _dir = Directory.CreateTempSubdirectory("fl-release-").FullName;

    private string OutboxPath => Path.Combine(_dir, "vehicle-1.db");

    private string LedgerPath => Path.Combine(_dir, "vehicle-1-privacy.db");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static PrivacyLedgerOptions Options() => new(50, 1e-5, orders: Orders);

    private static OutboxItem Item(long round, byte fill = 1) =>
        new(Guid.NewGuid(), "v1", round, "fleetlearn/v1/f/vehicles/v1/up/update", Enumerable.Repeat(fill, 1000).ToArray(), DateTimeOffset.UnixEpoch.AddDays(30000));

    /// <summary>Descriptors this process holds on files in the test folder (data, log, mirror), read from /proc/self/fd (Linux).</summary>
    private int Handles()
    {
        Assert.True(OperatingSystem.IsLinux(), "reads /proc/self/fd");
        int n = 0;
        foreach (var fd in Directory.EnumerateFileSystemEntries("/proc/self/fd"))
        {
            string? target;
            try
            {
                target = new FileInfo(fd).LinkTarget;
            }
            catch (IOException)
            {
                continue; // closed while listed
            }
            if (target is not null && target.StartsWith(_dir + "/", StringComparison.Ordinal)) n++;
        }
        return n;
    }

    [Fact]
    public void Outbox_Release_ClosesItsFiles_AndEveryOperationReopensAndSeesTheData()
    {
        var a = Item(1);
        using var outbox = LiteDbOutbox.Open(OutboxPath);
        outbox.Enqueue(a);
        outbox.SetState("last-round", 7);
        Assert.True(Handles() >= 2, $"{Handles()} handles while open");

        outbox.Release();
        Assert.Equal(0, Handles());
        Assert.False(outbox.IsOpen);
        // What the idle vehicle reads all the time is answered from memory: no reopen.
        Assert.Equal(1, outbox.Count);
        Assert.Equal(7, outbox.GetState("last-round"));
        Assert.Equal(0, outbox.Reopens);
        Assert.Equal(0, Handles());

        Assert.Equal([a.UpdateId], outbox.Pending().Select(i => i.UpdateId));
        Assert.Equal(1, outbox.Reopens);
        outbox.Release();
        Assert.Equal(a.Payload, outbox.Find(a.UpdateId)!.Payload);
        outbox.Release();
        outbox.RecordAttempt(a.UpdateId);
        outbox.Release();
        Assert.Equal(1, outbox.Find(a.UpdateId)!.Attempts);
        outbox.Release();
        Assert.True(outbox.Acknowledge(a.UpdateId));
        Assert.Equal(0, outbox.Count);
        outbox.Release();
        Assert.Equal(0, outbox.DropExpired(DateTimeOffset.UnixEpoch.AddDays(40000)));
        Assert.Equal(5, outbox.Reopens); // one per call after a release: Pending, Find, RecordAttempt, Find, Acknowledge (DropExpired: known empty)
        Assert.Equal(0, Handles());
    }

    [Fact]
    public void Outbox_ReleasedEmpty_AnswersWhatAnIdleVehicleAsksWithoutReopening()
    {
        using (var first = LiteDbOutbox.Open(OutboxPath))
            first.SetState("last-round", 4);
        using var outbox = LiteDbOutbox.Open(OutboxPath); // a start: the counter is in the file, not yet read by this instance
        outbox.Release();
        Assert.Equal(0, Handles());
        Assert.Equal(4, outbox.GetState("last-round"));
        Assert.Null(outbox.GetState("samples-at-last-round")); // in neither the file nor the side copy
        Assert.Equal(0, outbox.Count);
        Assert.Empty(outbox.Pending());
        Assert.Null(outbox.Find(Guid.NewGuid()));
        Assert.Equal(0, outbox.DropExpired(DateTimeOffset.UnixEpoch.AddDays(40000)));
        Assert.Equal(0, outbox.Reopens);
        Assert.Equal(0, Handles());

        outbox.SetState("samples-at-last-round", 120); // a write reopens; the value is remembered and on disk
        Assert.Equal(1, outbox.Reopens);
        outbox.Release();
        Assert.Equal(120, outbox.GetState("samples-at-last-round"));
        Assert.Equal(1, outbox.Reopens);
    }

    [Fact]
    public void Outbox_WriteAfterRelease_IsOnDisk_ForAnotherInstance()
    {
        var a = Item(1);
        var b = Item(2, 9);
        using (var outbox = LiteDbOutbox.Open(OutboxPath))
        {
            outbox.Enqueue(a);
            outbox.Release();
            outbox.Enqueue(b); // reopens
            outbox.SetState("last-round", 2);
            Assert.Equal(2, outbox.Count); // the remembered count was forgotten by the write
            outbox.Release();
            Assert.Equal(0, Handles());

            // While this one is released, a second instance (the full verification of a start) reads what it wrote.
            using var other = LiteDbOutbox.Open(OutboxPath);
            Assert.Equal([a.UpdateId, b.UpdateId], other.Pending().Select(i => i.UpdateId));
            Assert.Equal(b.Payload, other.Find(b.UpdateId)!.Payload);
            Assert.Equal(2, other.GetState("last-round"));
        }
        Assert.Equal(0, Handles());
    }

    [Fact]
    public void Outbox_CounterWrittenWhileOpen_ThenReleased_IsReadFromMemoryAndFile()
    {
        using var outbox = LiteDbOutbox.Open(OutboxPath);
        outbox.SetState("a", 1);
        outbox.Release();
        outbox.SetState("b", 2); // reopens; the file now holds a counter the release did not see
        outbox.Release();
        Assert.Equal(1, outbox.GetState("a"));
        Assert.Equal(2, outbox.GetState("b"));
        Assert.Null(outbox.GetState("c"));
        Assert.Equal(1, outbox.Reopens);
        File.Delete(OutboxPath + ".state"); // the side copy gone: what is answered came from the file or from memory
        Assert.Equal(2, outbox.GetState("b"));
    }

    [Fact]
    public async Task Outbox_ReleasedWhileOthersWrite_Reopens_AndLosesNothing()
    {
        using var outbox = LiteDbOutbox.Open(OutboxPath);
        var items = Enumerable.Range(1, 40).Select(r => Item(r, (byte)r)).ToList();
        using var stop = new CancellationTokenSource();
        var releaser = Task.Run(() =>
        {
            while (!stop.IsCancellationRequested) outbox.Release();
        });
        await Task.WhenAll(items.Select(i => Task.Run(() =>
        {
            outbox.Enqueue(i);
            outbox.SetState("last-round", i.Round);
        })));
        await stop.CancelAsync();
        await releaser;
        Assert.Equal(40, outbox.Count);
        Assert.Equal(items.Select(i => i.UpdateId).Order(), outbox.Pending().Select(i => i.UpdateId).Order());
        Assert.InRange(outbox.GetState("last-round")!.Value, 1, 40);
    }

    [Fact]
    public void Ledger_Release_ClosesDatabaseAndMirror_EpsilonAnsweredExactly_RecordReopens()
    {
        using var store = LiteDbPrivacyLedgerStore.Open(LedgerPath, Options());
        store.Record("v1", 1, PrivacyCharge.Participation(3.0));
        double before = store.EpsilonOf("v1");
        Assert.True(Handles() >= 3, $"{Handles()} handles while open"); // data, log, mirror

        store.Release();
        Assert.Equal(0, Handles());
        Assert.False(store.IsOpen);
        Assert.Equal(before, store.EpsilonOf("v1"));
        Assert.Equal([1L], store.Get("v1").Rounds);
        Assert.True(store.CanParticipate("v1", PrivacyCharge.Participation(3.0)));
        Assert.Equal(0, store.Reopens);
        Assert.Equal(0, Handles());

        Assert.True(store.TryRecord("v1", 2, PrivacyCharge.Participation(3.0), out var state));
        Assert.Equal(1, store.Reopens);
        Assert.Equal(RdpAccountant.GetEpsilon(1, 3.0, 2, 1e-5, Orders).Epsilon, state.Epsilon, 12);
        store.Release();
        store.Record("v1", 3, PrivacyCharge.Participation(3.0));
        double after = store.EpsilonOf("v1");
        store.Release();
        Assert.Equal(0, Handles());

        // The mirror got every round, and a start (full verification) reads the same ε.
        Assert.Equal(3, File.ReadAllLines(LedgerPath + ".mirror").Length);
        using var other = LiteDbPrivacyLedgerStore.Open(LedgerPath, Options());
        Assert.Equal(new LedgerVerification(1, 3, 0), other.Verification);
        Assert.Equal(after, other.EpsilonOf("v1"));
    }

    [Fact]
    public void Release_AfterDispose_IsHarmless_AndUseThrows()
    {
        var outbox = LiteDbOutbox.Open(OutboxPath);
        var ledger = LiteDbPrivacyLedgerStore.Open(LedgerPath, Options());
        outbox.Release();
        ledger.Release();
        outbox.Dispose();
        ledger.Dispose();
        outbox.Release();
        ledger.Release();
        Assert.Throws<ObjectDisposedException>(() => outbox.Count);
        Assert.Throws<ObjectDisposedException>(() => outbox.Enqueue(Item(1)));
        Assert.Throws<ObjectDisposedException>(() => ledger.Record("v1", 1, PrivacyCharge.Participation(3.0)));
        Assert.Equal(0, Handles());
    }
}
