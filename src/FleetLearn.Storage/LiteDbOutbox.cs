using LiteDB;

namespace FleetLearn.Storage;

/// <summary>One message waiting for the aggregator's application-level acknowledgement.</summary>
/// <param name="UpdateId">Identity of the update; the aggregator dedupes by (vehicle, round, update id).</param>
/// <param name="Vehicle">Sending vehicle.</param>
/// <param name="Round">Round the update belongs to.</param>
/// <param name="Topic">MQTT topic to publish to.</param>
/// <param name="Payload">Encoded envelope (chunked at send time).</param>
/// <param name="ExpiresAt">Phase deadline: after it the item is useless and is dropped.</param>
/// <param name="Attempts">Sends so far.</param>
public sealed record OutboxItem(Guid UpdateId, string Vehicle, long Round, string Topic, byte[] Payload, DateTimeOffset ExpiresAt, int Attempts = 0);

/// <summary>
/// The vehicle's durable outbox (LiteDB, <c>Connection=direct</c>): an update is written here before its first send and
/// leaves only when the aggregator acknowledges it (or its deadline passes). Resends are harmless because the
/// aggregator dedupes. Every enqueue and acknowledgement is checkpointed and fsynced before returning, as the privacy
/// ledger does (LiteDB does not fsync, issue #2818); a write lost to a power cut before that is a dropout — the update
/// was not yet sent — never a corruption. Also holds the agent's small key/value state (last round completed).
/// Thread-safe through one lock.
/// </summary>
public sealed class LiteDbOutbox : IDisposable
{
    /// <summary>Largest payload stored in one document (LiteDB's document limit is 16 MiB).</summary>
    public const int MaxPayloadBytes = 15 << 20;

    private readonly ReleasableDatabase _files; // closed while idle (Release), reopened on the next use under _gate
    private readonly object _gate = new();
    private bool _disposed;

    private LiteDbOutbox(string path, LiteDatabase db)
    {
        Path = path;
        _files = new ReleasableDatabase(path, "outbox", db);
    }

    // Properties, not fields: each use opens the released database again.
    private LiteDatabase _db => _files.Database;
    private ILiteCollection<BsonDocument> _items => _db.GetCollection<BsonDocument>("outbox");
    private ILiteCollection<BsonDocument> _state => _db.GetCollection<BsonDocument>("agent_state");

    /// <summary>Data file path.</summary>
    public string Path { get; }

    /// <summary>Opens or creates the outbox at <paramref name="path"/>; throws <see cref="InvalidDataException"/> when unreadable.</summary>
    public static LiteDbOutbox Open(string path)
    {
        var db = LiteDbFiles.Open(path, "outbox");
        var outbox = new LiteDbOutbox(System.IO.Path.GetFullPath(path), db);
        try
        {
            _ = outbox.Pending(); // verify every document reads back, by scan and through the _id index
            LiteDbFiles.ReadAll(db, "outbox");
            foreach (var doc in LiteDbFiles.ReadAll(db, "agent_state")) _ = doc["value"].AsInt64;
            LiteDbFiles.Rebuild(db, outbox.Path);
            LiteDbFiles.ProbeWrite(db, "outbox", outbox.Path);
            LiteDbFiles.ProbeWrite(db, "agent_state", outbox.Path);
        }
        catch (Exception e) when (LiteDbFiles.IsDamage(e))
        {
            db.Dispose();
            throw new InvalidDataException($"The outbox at '{path}' holds an unreadable document ({e.Message}).", e);
        }
        return outbox;
    }

    /// <summary>Where a damaged outbox file was moved by <see cref="OpenOrQuarantine"/> (null: the file opened).</summary>
    public string? Quarantined { get; private set; }

    /// <summary>
    /// Like <see cref="Open"/>, but an outbox file that no longer opens (a power cut mid-checkpoint, issue 14 item 4) is moved
    /// aside and a fresh one started, so that the vehicle starts: the updates that waited in it are lost (a dropout; their ε
    /// stays charged in the ledger), and the durable counters come back from their side copy (<c>{file}.state</c>), so a
    /// round already joined is never joined again.
    /// </summary>
    public static LiteDbOutbox OpenOrQuarantine(string path)
    {
        try
        {
            return Open(path);
        }
        catch (InvalidDataException)
        {
            string moved = LiteDbFiles.Quarantine(path);
            var outbox = Open(path);
            outbox.Quarantined = moved;
            return outbox;
        }
    }

    /// <summary>Items waiting for an acknowledgement.</summary>
    public int Count
    {
        get
        {
            lock (_gate)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                return _files.Recall("count", () => _items.Count()); // every write below forgets it: an idle outbox answers without reopening
            }
        }
    }

    /// <summary>Whether the database files are open now (false after <see cref="Release"/>, until the next use).</summary>
    public bool IsOpen
    {
        get
        {
            lock (_gate) return _files.IsOpen;
        }
    }

    /// <summary>Times the outbox reopened its files after a <see cref="Release"/>.</summary>
    public int Reopens
    {
        get
        {
            lock (_gate) return _files.Reopens;
        }
    }

    /// <summary>
    /// Closes the database files while the vehicle is idle; the next call that needs them reopens them (a plain open, not
    /// <see cref="Open"/>'s verification). Every write was already durable; what it read last (<see cref="Count"/>, the counters)
    /// is answered from memory meanwhile.
    /// </summary>
    public void Release()
    {
        lock (_gate)
        {
            if (_disposed || !_files.IsOpen) return;
            // Read now, while open: an idle vehicle's count is polled, and its check-in reads the counters.
            _files.Recall("count", () => _items.Count());
            _files.RememberAll("state:", _state.FindAll().Where(d => !LiteDbFiles.IsProbe(d)).Select(d => (d["_id"].AsString, (object?)(long?)d["value"].AsInt64)));
            _files.Release();
        }
    }

    /// <summary>Stores <paramref name="item"/> durably; enqueuing the same update id again replaces it (idempotent).</summary>
    public void Enqueue(OutboxItem item)
    {
        ArgumentNullException.ThrowIfNull(item);
        if (item.Payload.Length > MaxPayloadBytes) throw new ArgumentException($"Outbox payload of {item.Payload.Length} bytes exceeds {MaxPayloadBytes}.");
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            LiteDbFiles.EnsureSpace(Path, item.Payload.Length);
            _files.Forget("count");
            _items.Upsert(ToDocument(item));
            LiteDbFiles.Durable(_db, Path);
        }
    }

    /// <summary>Every waiting item, oldest round first.</summary>
    public IReadOnlyList<OutboxItem> Pending()
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_files.Known("count") is 0) return []; // known empty: no reopen
            return [.. _items.FindAll().Where(d => !LiteDbFiles.IsProbe(d)).Select(FromDocument).OrderBy(i => i.Round).ThenBy(i => i.UpdateId)];
        }
    }

    /// <summary>Removes an acknowledged item; false when it was not there (e.g. a duplicate ack).</summary>
    public bool Acknowledge(Guid updateId)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            LiteDbFiles.EnsureSpace(Path, 0);
            _files.Forget("count");
            bool removed = _items.Delete(new BsonValue(updateId));
            if (removed) LiteDbFiles.Durable(_db, Path);
            return removed;
        }
    }

    /// <summary>The waiting item with <paramref name="updateId"/>, or null (an index lookup: no scan of the other items).</summary>
    public OutboxItem? Find(Guid updateId)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_files.Known("count") is 0) return null;
            return _items.FindById(new BsonValue(updateId)) is { } doc ? FromDocument(doc) : null;
        }
    }

    /// <summary>Counts one more send of an item (not fsynced: losing it only under-reports attempts).</summary>
    public void RecordAttempt(Guid updateId)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            LiteDbFiles.EnsureSpace(Path, 0);
            var doc = _items.FindById(new BsonValue(updateId));
            if (doc is null) return;
            doc["attempts"] = doc["attempts"].AsInt32 + 1;
            _items.Update(doc);
        }
    }

    /// <summary>Drops items whose deadline passed; returns how many.</summary>
    public int DropExpired(DateTimeOffset now)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_files.Known("count") is 0) return 0;
            if (_items.Count(Query.LT("expires", now.ToUnixTimeMilliseconds())) == 0) return 0; // nothing to write (a full disk is no reason to fail here)
            LiteDbFiles.EnsureSpace(Path, 0);
            _files.Forget("count");
            int n = _items.DeleteMany(Query.LT("expires", now.ToUnixTimeMilliseconds()));
            if (n > 0) LiteDbFiles.Durable(_db, Path);
            return n;
        }
    }

    /// <summary>Reads a durable counter (e.g. the last round trained), or null; a counter the file lost is read from its side copy.</summary>
    public long? GetState(string key)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _files.Recall("state:" + key, () => (_files.KnowsAll("state:") ? null : _state.FindById(key)?["value"].AsInt64) ?? ReadSideCopy().GetValueOrDefault(key));
        }
    }

    /// <summary>Writes a durable counter.</summary>
    public void SetState(string key, long value)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            LiteDbFiles.EnsureSpace(Path, 0);
            _files.Forget("state:" + key);
            _files.Forget("state:*"); // no longer sure the remembered counters are all the file holds: a write that fails below leaves it to the file
            _state.Upsert(new BsonDocument { ["_id"] = key, ["value"] = value });
            LiteDbFiles.Durable(_db, Path);
            WriteSideCopy(key, value);
            _files.Remember("state:" + key, (long?)value);
        }
    }

    private string SideCopyPath => Path + ".state";

    // The counters also live in a small text file replaced atomically (write, fsync, rename): a power cut leaves the old
    // or the new copy, never a torn one, whatever it does to the LiteDB file.
    private Dictionary<string, long?> ReadSideCopy()
    {
        var values = new Dictionary<string, long?>(StringComparer.Ordinal);
        if (!File.Exists(SideCopyPath)) return values;
        foreach (var line in File.ReadAllLines(SideCopyPath))
        {
            var f = line.Split('=', 2);
            if (f.Length == 2 && long.TryParse(f[1], System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out long v)) values[f[0]] = v;
        }
        return values;
    }

    private void WriteSideCopy(string key, long value)
    {
        var values = ReadSideCopy();
        values[key] = value;
        string temp = SideCopyPath + ".tmp";
        using (var file = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            file.Write(System.Text.Encoding.ASCII.GetBytes(string.Concat(values.Select(p => string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{p.Key}={p.Value}\n")))));
            file.Flush(flushToDisk: true);
        }
        File.Move(temp, SideCopyPath, overwrite: true);
    }

    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            _files.Dispose();
        }
    }

    private static BsonDocument ToDocument(OutboxItem item) => new()
    {
        ["_id"] = item.UpdateId,
        ["vehicle"] = item.Vehicle,
        ["round"] = item.Round,
        ["topic"] = item.Topic,
        ["payload"] = item.Payload,
        ["expires"] = item.ExpiresAt.ToUnixTimeMilliseconds(),
        ["attempts"] = item.Attempts,
    };

    private static OutboxItem FromDocument(BsonDocument d) => new(
        d["_id"].AsGuid, d["vehicle"].AsString, d["round"].AsInt64, d["topic"].AsString, d["payload"].AsBinary,
        DateTimeOffset.FromUnixTimeMilliseconds(d["expires"].AsInt64), d["attempts"].AsInt32);
}
