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

/// <summary>What the outbox knows of a waiting message without reading its payload.</summary>
/// <param name="UpdateId">Identity of the update.</param>
/// <param name="Topic">MQTT topic to publish to.</param>
/// <param name="Length">Payload bytes.</param>
/// <param name="ExpiresAt">Phase deadline.</param>
/// <param name="Attempts">Sends recorded so far.</param>
public sealed record OutboxEntry(Guid UpdateId, string Topic, long Length, DateTimeOffset ExpiresAt, int Attempts);

/// <summary>
/// The vehicle's durable outbox: an update is written here before its first send and leaves only when the aggregator
/// acknowledges it (or its deadline passes). Resends are harmless because the aggregator dedupes. A payload over
/// <see cref="InlinePayloadBytes"/> is a file beside the database (<see cref="OutboxPayloadFiles"/>), written and fsynced before the
/// LiteDB document (<c>Connection=direct</c>) that names it with its length and SHA-256; a smaller one lies in its document; every enqueue and acknowledgement is checkpointed and fsynced before returning, as the
/// privacy ledger does (LiteDB does not fsync, issue #2818). A write lost to a power cut before that is a dropout — the update was
/// not yet sent — never a corruption: a document whose file is missing, short or fails its hash is dropped with a warning, never
/// sent, and a file no document names is deleted at open. Also holds the agent's small key/value state (last round completed).
/// Thread-safe through one lock.
/// </summary>
public sealed class LiteDbOutbox : IDisposable
{
    /// <summary>Largest payload accepted (a sanity bound: the largest message a vehicle sends is a masked input of a few MB).</summary>
    public const int MaxPayloadBytes = 15 << 20;

    /// <summary>
    /// Payloads up to this size stay in their LiteDB document (the key-phase messages: one fsync each); larger ones (masked inputs,
    /// plaintext updates) go to a file. A small document costs LiteDB's page cache little; the file's own fsyncs (file and folder)
    /// would double the cost of the thousands of small writes a key phase makes.
    /// </summary>
    public const int InlinePayloadBytes = 64 << 10;

    private readonly ReleasableDatabase _database; // closed while idle (Release), reopened on the next use under _gate
    private readonly OutboxPayloadFiles _files;
    private readonly Action<string> _warn;
    private readonly object _gate = new();
    private (Guid Id, PayloadFile File)? _kept; // a payload kept readable after its acknowledgement (KeepAfterAcknowledgement)
    private bool _disposed;

    private LiteDbOutbox(string path, LiteDatabase db, Action<string>? warn)
    {
        Path = path;
        _database = new ReleasableDatabase(path, "outbox", db);
        _files = new OutboxPayloadFiles(path);
        _warn = warn ?? (_ => { });
    }

    // Properties, not fields: each use opens the released database again.
    private LiteDatabase _db => _database.Database;
    private ILiteCollection<BsonDocument> _items => _db.GetCollection<BsonDocument>("outbox");
    private ILiteCollection<BsonDocument> _state => _db.GetCollection<BsonDocument>("agent_state");

    /// <summary>Data file path.</summary>
    public string Path { get; }

    /// <summary>The folder of the payload files, beside the data file.</summary>
    public string PayloadFolder => _files.Folder;

    /// <summary>
    /// Opens or creates the outbox at <paramref name="path"/>; throws <see cref="InvalidDataException"/> when unreadable. A document
    /// whose payload file is missing, short or fails its hash is dropped and reported to <paramref name="warn"/>; payload files that no
    /// document names (a crash between a file and its document, an acknowledgement's leftover) are deleted.
    /// </summary>
    public static LiteDbOutbox Open(string path, Action<string>? warn = null)
    {
        bool created = LiteDbFiles.IsNew(path);
        var db = LiteDbFiles.Open(path, "outbox");
        LiteDbOutbox outbox;
        try
        {
            outbox = new LiteDbOutbox(System.IO.Path.GetFullPath(path), db, warn);
            var named = new HashSet<string>(StringComparer.Ordinal);
            foreach (var doc in LiteDbFiles.ReadAll(db, "outbox")) // every document reads back, by scan and through the _id index
            {
                _ = ToEntry(doc);
                if (FileOf(doc) is not { } file) continue; // a small payload, stored in the document (or one written before payload files)
                if (outbox._files.TryRead(file, out string? problem) is null) outbox.Drop(doc, problem!);
                else named.Add(file.Name);
            }
            foreach (var doc in LiteDbFiles.ReadAll(db, "agent_state")) _ = doc["value"].AsInt64;
            if (!created) // a file this open created holds no torn page: nothing to rebuild or probe
            {
                LiteDbFiles.Rebuild(db, outbox.Path);
                LiteDbFiles.ProbeWrite(db, "outbox", outbox.Path);
                LiteDbFiles.ProbeWrite(db, "agent_state", outbox.Path);
            }
            outbox._files.DeleteOrphans(named);
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
    /// stays charged in the ledger; their payload files, named by no document now, are deleted), and the durable counters come
    /// back from their side copy (<c>{file}.state</c>), so a round already joined is never joined again.
    /// </summary>
    public static LiteDbOutbox OpenOrQuarantine(string path, Action<string>? warn = null)
    {
        try
        {
            return Open(path, warn);
        }
        catch (InvalidDataException)
        {
            string moved = LiteDbFiles.Quarantine(path);
            var outbox = Open(path, warn);
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
                return _database.Recall("count", () => _items.Count()); // every write below forgets it: an idle outbox answers without reopening
            }
        }
    }

    /// <summary>Whether the database files are open now (false after <see cref="Release"/>, until the next use).</summary>
    public bool IsOpen
    {
        get
        {
            lock (_gate) return _database.IsOpen;
        }
    }

    /// <summary>Times the outbox reopened its files after a <see cref="Release"/>.</summary>
    public int Reopens
    {
        get
        {
            lock (_gate) return _database.Reopens;
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
            if (_disposed || !_database.IsOpen) return;
            // Read now, while open: an idle vehicle's count is polled, and its check-in reads the counters.
            _database.Recall("count", () => _items.Count());
            _database.RememberAll("state:", _state.FindAll().Where(d => !LiteDbFiles.IsProbe(d)).Select(d => (d["_id"].AsString, (object?)(long?)d["value"].AsInt64)));
            _database.Release();
        }
    }

    /// <summary>Stores <paramref name="item"/> durably (its payload file first, then its document); enqueuing the same update id again replaces it (idempotent).</summary>
    public void Enqueue(OutboxItem item)
    {
        ArgumentNullException.ThrowIfNull(item);
        if (item.Payload.Length > MaxPayloadBytes) throw new ArgumentException($"Outbox payload of {item.Payload.Length} bytes exceeds {MaxPayloadBytes}.");
        ObjectDisposedException.ThrowIf(_disposed, this);
        LiteDbFiles.EnsureSpace(Path, item.Payload.Length);
        PayloadFile? file = item.Payload.Length > InlinePayloadBytes ? _files.Write(item.UpdateId, item.Payload) : null; // durable before any document names it
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var previous = _items.FindById(new BsonValue(item.UpdateId)) is { } old ? FileOf(old) : null;
            _database.Forget("count");
            _items.Upsert(ToDocument(item, file));
            LiteDbFiles.Durable(_db, Path);
            if (previous is { } p && p.Name != file?.Name && _kept?.File.Name != p.Name) _files.Delete(p.Name);
        }
    }

    /// <summary>Every waiting item with its payload, oldest round first; an item whose payload file fails its check is dropped (a warning), not returned.</summary>
    public IReadOnlyList<OutboxItem> Pending()
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_database.Known("count") is 0) return []; // known empty: no reopen
            var items = new List<OutboxItem>();
            foreach (var doc in _items.FindAll().Where(d => !LiteDbFiles.IsProbe(d)).ToList())
                if (Read(doc) is { } item) items.Add(item);
            return [.. items.OrderBy(i => i.Round).ThenBy(i => i.UpdateId)];
        }
    }

    /// <summary>Every waiting item without reading its payload, oldest round first.</summary>
    public IReadOnlyList<OutboxEntry> Entries()
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return [.. _items.FindAll().Where(d => !LiteDbFiles.IsProbe(d)).OrderBy(d => d["round"].AsInt64).ThenBy(d => d["_id"].AsGuid).Select(ToEntry)];
        }
    }

    /// <summary>Removes an acknowledged item and its payload file; false when it was not there (e.g. a duplicate ack).</summary>
    public bool Acknowledge(Guid updateId)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            LiteDbFiles.EnsureSpace(Path, 0);
            if (_items.FindById(new BsonValue(updateId)) is not { } doc) return false;
            _database.Forget("count");
            _items.Delete(new BsonValue(updateId));
            LiteDbFiles.Durable(_db, Path);
            if (FileOf(doc) is { } file && _kept?.Id != updateId) _files.Delete(file.Name); // a crash before this leaves an orphan, swept at open
            return true;
        }
    }

    /// <summary>
    /// Keeps the payload of <paramref name="updateId"/> readable through <see cref="ReadKept"/> after its acknowledgement, until
    /// another item is kept or the outbox is opened again (the file of an acknowledged item is named by no document then, and swept).
    /// One item at a time: the vehicle's last secure-aggregation message, resent to ask the aggregator again, without holding it in memory.
    /// </summary>
    public void KeepAfterAcknowledgement(Guid updateId)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_kept is { } old && old.Id != updateId && _items.FindById(new BsonValue(old.Id)) is null) _files.Delete(old.File.Name);
            _kept = _items.FindById(new BsonValue(updateId)) is { } doc && FileOf(doc) is { } file ? (updateId, file) : null;
        }
    }

    /// <summary>The kept payload of <paramref name="updateId"/> (<see cref="KeepAfterAcknowledgement"/>), or null when it is not the kept one or its file fails its check (a warning).</summary>
    public byte[]? ReadKept(Guid updateId)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_kept is not { } kept || kept.Id != updateId) return null;
            var bytes = _files.TryRead(kept.File, out string? problem);
            if (bytes is null) _warn($"outbox '{Path}': the kept message {updateId} cannot be sent again: {problem}.");
            return bytes;
        }
    }

    /// <summary>The waiting item with <paramref name="updateId"/>, or null (an index lookup: no scan of the other items); an item whose payload file fails its check is dropped (a warning).</summary>
    public OutboxItem? Find(Guid updateId)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_database.Known("count") is 0) return null;
            return _items.FindById(new BsonValue(updateId)) is { } doc ? Read(doc) : null;
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

    /// <summary>Drops items whose deadline passed, with their payload files; returns how many.</summary>
    public int DropExpired(DateTimeOffset now)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_database.Known("count") is 0) return 0;
            var expired = _items.Find(Query.LT("expires", now.ToUnixTimeMilliseconds())).ToList();
            if (expired.Count == 0) return 0; // nothing to write (a full disk is no reason to fail here)
            LiteDbFiles.EnsureSpace(Path, 0);
            _database.Forget("count");
            foreach (var doc in expired) _items.Delete(doc["_id"]);
            LiteDbFiles.Durable(_db, Path);
            foreach (var doc in expired)
            {
                if (FileOf(doc) is not { } file) continue;
                _files.Delete(file.Name);
                if (_kept?.Id == doc["_id"].AsGuid) _kept = null;
            }
            return expired.Count;
        }
    }

    /// <summary>Reads a durable counter (e.g. the last round trained), or null; a counter the file lost is read from its side copy.</summary>
    public long? GetState(string key)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _database.Recall("state:" + key, () => (_database.KnowsAll("state:") ? null : _state.FindById(key)?["value"].AsInt64) ?? ReadSideCopy().GetValueOrDefault(key));
        }
    }

    /// <summary>Writes a durable counter.</summary>
    public void SetState(string key, long value)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            LiteDbFiles.EnsureSpace(Path, 0);
            _database.Forget("state:" + key);
            _database.Forget("state:*"); // no longer sure the remembered counters are all the file holds: a write that fails below leaves it to the file
            _state.Upsert(new BsonDocument { ["_id"] = key, ["value"] = value });
            LiteDbFiles.Durable(_db, Path);
            WriteSideCopy(key, value);
            _database.Remember("state:" + key, (long?)value);
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
            _database.Dispose();
        }
    }

    /// <summary>The item of <paramref name="doc"/> with its payload, or null after dropping a document whose payload file fails its check.</summary>
    private OutboxItem? Read(BsonDocument doc)
    {
        byte[]? payload;
        if (FileOf(doc) is { } file)
        {
            payload = _files.TryRead(file, out string? problem);
            if (payload is null)
            {
                Drop(doc, problem!);
                return null;
            }
        }
        else payload = doc["payload"].AsBinary; // a small payload, or one written before payload files
        return new OutboxItem(doc["_id"].AsGuid, doc["vehicle"].AsString, doc["round"].AsInt64, doc["topic"].AsString, payload,
            DateTimeOffset.FromUnixTimeMilliseconds(doc["expires"].AsInt64), doc["attempts"].AsInt32);
    }

    /// <summary>Deletes a document whose payload cannot be sent as written: the message is a dropout, never a corrupt send.</summary>
    private void Drop(BsonDocument doc, string problem)
    {
        _warn($"outbox '{Path}': message {doc["_id"].AsGuid} of round {doc["round"].AsInt64} ({doc["topic"].AsString}) dropped: {problem}; it is not sent.");
        _database.Forget("count");
        _items.Delete(doc["_id"]);
        LiteDbFiles.Durable(_db, Path);
        if (FileOf(doc) is { } file) _files.Delete(file.Name);
    }

    private static PayloadFile? FileOf(BsonDocument doc) =>
        doc["file"].IsString ? new PayloadFile(doc["file"].AsString, doc["length"].AsInt64, doc["sha256"].AsBinary) : null;

    private static OutboxEntry ToEntry(BsonDocument d) => new(d["_id"].AsGuid, d["topic"].AsString,
        FileOf(d)?.Length ?? d["payload"].AsBinary.Length, DateTimeOffset.FromUnixTimeMilliseconds(d["expires"].AsInt64), d["attempts"].AsInt32);

    private static BsonDocument ToDocument(OutboxItem item, PayloadFile? file)
    {
        var doc = new BsonDocument
        {
            ["_id"] = item.UpdateId,
            ["vehicle"] = item.Vehicle,
            ["round"] = item.Round,
            ["topic"] = item.Topic,
            ["expires"] = item.ExpiresAt.ToUnixTimeMilliseconds(),
            ["attempts"] = item.Attempts,
        };
        if (file is { } f)
        {
            doc["file"] = f.Name;
            doc["length"] = f.Length;
            doc["sha256"] = f.Sha256;
        }
        else doc["payload"] = item.Payload;
        return doc;
    }
}
