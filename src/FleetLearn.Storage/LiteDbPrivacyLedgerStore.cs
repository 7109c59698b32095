using FleetLearn.Core.Privacy;
using LiteDB;

namespace FleetLearn.Storage;

/// <summary>What <see cref="LiteDbPrivacyLedgerStore.Open"/> checked when it loaded the ledger.</summary>
/// <param name="Vehicles">Vehicle documents loaded and verified.</param>
/// <param name="Rounds">Recorded rounds over all vehicles.</param>
/// <param name="RecomputedForNewSettings">Documents whose stored ε was computed under other orders/δ/conversion and was recomputed from the history.</param>
public sealed record LedgerVerification(int Vehicles, long Rounds, int RecomputedForNewSettings);

/// <summary>
/// The persistent <see cref="PrivacyLedger"/>: one LiteDB document per vehicle holding its full history of
/// (round, q, σ, steps) — the source of truth — plus the derived RDP curve and ε for inspection.
/// </summary>
/// <remarks>
/// <para><b>Ordering rule.</b> Call <see cref="Record"/> (or <see cref="TryRecord"/>) and let it return <i>before</i>
/// the vehicle's update is used (aggregator) or sent (vehicle). A crash between the record and the use then over-counts
/// ε by one participation that never happened — never the reverse.</para>
/// <para><b>Durability.</b> LiteDB 5 does not fsync its commits (LiteDB issue #2818). A killed process loses
/// nothing: committed pages sit in the OS page cache (or in the <c>-log</c> file, replayed on open) — the crash test
/// kills the process with SIGKILL to show it. A power cut or kernel crash can lose recent commits. Hence each record is
/// followed by a checkpoint (log folded into the data file) and an explicit fsync of the data file through our own
/// handle; only then does <see cref="Record"/> return. If the machine dies before that, the update has not left, so the
/// lost record is a dropout, not an under-count. What remains uncovered: a disk that acknowledges fsync without
/// persisting, and LiteDB's own torn-page risks (issues #2417, #2582) — <see cref="Open"/> refuses a ledger it cannot
/// read or verify rather than starting from zero, because an empty ledger would under-count every vehicle's ε.</para>
/// <para>Opened with <c>Connection=direct</c>: one process owns the file. Not thread-safe beyond an internal lock.</para>
/// </remarks>
public sealed class LiteDbPrivacyLedgerStore : IPrivacyLedgerView, IDisposable
{
    /// <summary>Version of the per-vehicle document layout.</summary>
    public const int SchemaVersion = 1;

    private const string CollectionName = "privacy_ledger";
    private readonly ReleasableDatabase _files; // closed while idle (Release), reopened on the next write under _gate
    private readonly PrivacyLedger _ledger; // the whole history in memory: ε is answered from here, exact, files open or not
    private LedgerMirror? _openMirror;
    private readonly object _gate = new();
    private bool _disposed;

    private LiteDbPrivacyLedgerStore(string path, ReleasableDatabase files, PrivacyLedger ledger, LedgerVerification verification, LedgerMirror? mirror)
    {
        Path = path;
        _files = files;
        _openMirror = mirror;
        _ledger = ledger;
        Verification = verification;
    }

    // Properties, not fields: each use opens the released database (and mirror) again.
    private LiteDatabase _db => _files.Database;
    private ILiteCollection<BsonDocument> _collection => _db.GetCollection<BsonDocument>(CollectionName);
    private LedgerMirror _mirror => _openMirror ??= LedgerMirror.Open(Path);

    /// <summary>Whether the database files are open now (false after <see cref="Release"/>, until the next write).</summary>
    public bool IsOpen
    {
        get
        {
            lock (_gate) return _files.IsOpen || _openMirror is not null;
        }
    }

    /// <summary>Times the ledger reopened its database after a <see cref="Release"/>.</summary>
    public int Reopens
    {
        get
        {
            lock (_gate) return _files.Reopens;
        }
    }

    /// <summary>
    /// Closes the database and its mirror while the vehicle is idle; the next <see cref="Record"/> reopens them (a plain open,
    /// not <see cref="Open"/>'s verification). Reads (ε, history) are answered from memory meanwhile.
    /// </summary>
    public void Release()
    {
        lock (_gate)
        {
            if (_disposed) return;
            try
            {
                _files.Release();
            }
            finally
            {
                _openMirror?.Dispose();
                _openMirror = null;
            }
        }
    }

    /// <summary>Path of the LiteDB data file.</summary>
    public string Path { get; }

    /// <summary>What the start-up verification found.</summary>
    public LedgerVerification Verification { get; }

    /// <summary>Where a damaged ledger file was moved by <see cref="OpenOrQuarantine"/> (null: the file opened).</summary>
    public string? Quarantined { get; private init; }

    /// <summary>
    /// Like <see cref="Open"/>, but a ledger file that no longer opens (a power cut mid-checkpoint) is moved aside and the
    /// ledger rebuilt from its mirror (<c>{file}.mirror</c>, issue 14 item 4), so that the vehicle starts and its ε is never
    /// under-counted. Without a mirror the damaged file is still refused: an empty ledger would under-count.
    /// </summary>
    public static LiteDbPrivacyLedgerStore OpenOrQuarantine(string path, PrivacyLedgerOptions options)
    {
        try
        {
            return Open(path, options);
        }
        catch (InvalidDataException) when (LedgerMirror.Read(System.IO.Path.GetFullPath(path)).Count > 0)
        {
            string moved = LiteDbFiles.Quarantine(path);
            var store = Open(path, options);
            return new LiteDbPrivacyLedgerStore(store, moved);
        }
    }

    private LiteDbPrivacyLedgerStore(LiteDbPrivacyLedgerStore opened, string quarantined)
        : this(opened.Path, opened._files, opened._ledger, opened.Verification, opened._openMirror) => Quarantined = quarantined;

    /// <summary>The ledger's budget and accounting settings.</summary>
    public PrivacyLedgerOptions Options => _ledger.Options;

    /// <summary>
    /// Opens (or creates) the ledger at <paramref name="path"/>, loads every vehicle, recomputes each one's RDP and ε
    /// from its history and checks them against the stored values; throws <see cref="InvalidDataException"/> if the
    /// file or any document is unreadable or inconsistent.
    /// </summary>
    public static LiteDbPrivacyLedgerStore Open(string path, PrivacyLedgerOptions options)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        ArgumentNullException.ThrowIfNull(options);
        string fullPath = System.IO.Path.GetFullPath(path);
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(fullPath)!);
        // Opened first and outside the damage handling below: a mirror that cannot be opened (held by another process) is an
        // error of its own, never a reason to quarantine the ledger.
        var mirror = LedgerMirror.Open(fullPath);
        bool created = LiteDbFiles.IsNew(fullPath);
        LiteDatabase db;
        try
        {
            db = LiteDbFiles.Connect(fullPath);
        }
        catch (Exception e) when (LiteDbFiles.IsDamage(e))
        {
            mirror.Dispose();
            throw new InvalidDataException($"The privacy ledger at '{fullPath}' cannot be opened ({e.Message}). Refusing to start from an empty ledger, which would under-count ε; restore the file from a backup.", e);
        }
        try
        {
            var ledger = new PrivacyLedger(options);
            var verification = Load(db, ledger, options, fullPath);
            LiteDbFiles.ReadAll(db, CollectionName); // the _id index too: the next Record looks a vehicle up through it
            if (!created) // a file this open created holds no torn page: nothing to rebuild or probe
            {
                LiteDbFiles.Rebuild(db, fullPath);
                db.Checkpoint(); // fold whatever a crashed run left in the log into the data file
                LiteDbFiles.ProbeWrite(db, CollectionName, fullPath);
            }
            var store = new LiteDbPrivacyLedgerStore(fullPath, new ReleasableDatabase(fullPath, "privacy ledger", db), ledger, verification, mirror);
            store.Reconcile(LedgerMirror.Read(fullPath));
            store.FlushToDisk();
            return store;
        }
        catch (Exception e) when (LiteDbFiles.IsDamage(e) && e is not InvalidDataException)
        {
            mirror.Dispose();
            db.Dispose();
            throw new InvalidDataException($"The privacy ledger at '{fullPath}' is unreadable ({e.Message}); refusing to start from zero.", e);
        }
        catch
        {
            mirror.Dispose();
            db.Dispose();
            throw;
        }
    }

    /// <summary>Every vehicle with at least one recorded round.</summary>
    public IReadOnlyList<VehiclePrivacyState> Vehicles()
    {
        lock (_gate) return [.. _ledger.Vehicles];
    }

    /// <summary>The vehicle's state (empty with ε = 0 if unknown).</summary>
    public VehiclePrivacyState Get(string vehicleId)
    {
        lock (_gate) return _ledger.Get(vehicleId);
    }

    /// <summary>ε the vehicle has spent.</summary>
    public double EpsilonOf(string vehicleId)
    {
        lock (_gate) return _ledger.EpsilonOf(vehicleId);
    }

    /// <summary>Whether the next round keeps the vehicle within ε_max (<see cref="PrivacyLedger.CanParticipate"/>).</summary>
    public bool CanParticipate(string vehicleId, PrivacyCharge next)
    {
        lock (_gate) return _ledger.CanParticipate(vehicleId, next);
    }

    /// <summary>Records a round unconditionally and makes it durable before returning (see the ordering rule).</summary>
    public VehiclePrivacyState Record(string vehicleId, long round, PrivacyCharge charge)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            LiteDbFiles.EnsureSpace(Path, 0);
            int before = _ledger.Get(vehicleId).Participations;
            var state = _ledger.Record(vehicleId, round, charge);
            if (state.Participations != before) Persist(state, round, charge);
            return state;
        }
    }

    /// <summary>Records a round only if it keeps the vehicle within ε_max, durably; false (nothing recorded) otherwise.</summary>
    public bool TryRecord(string vehicleId, long round, PrivacyCharge charge, out VehiclePrivacyState state)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            LiteDbFiles.EnsureSpace(Path, 0);
            int before = _ledger.Get(vehicleId).Participations;
            if (!_ledger.TryRecord(vehicleId, round, charge, out state)) return false;
            if (state.Participations != before) Persist(state, round, charge);
            return true;
        }
    }

    /// <summary>Checkpoints and closes the database.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            try
            {
                _files.Dispose();
            }
            finally
            {
                _openMirror?.Dispose();
            }
        }
    }

    /// <summary>Makes the ledger hold every round the mirror holds (a write the LiteDB file lost) and the mirror every round the ledger holds.</summary>
    private void Reconcile(IReadOnlyList<(string Vehicle, long Round, PrivacyCharge Charge)> mirrored)
    {
        var inMirror = mirrored.Select(e => (e.Vehicle, e.Round)).ToHashSet();
        foreach (var state in _ledger.Vehicles.ToList())
        {
            for (int i = 0; i < state.Rounds.Count; i++)
            {
                if (!inMirror.Contains((state.VehicleId, state.Rounds[i]))) _mirror.Append(state.VehicleId, state.Rounds[i], state.Charges[i], sync: false);
            }
        }
        _mirror.Sync();
        foreach (var (vehicle, round, charge) in mirrored)
        {
            int before = _ledger.Get(vehicle).Participations;
            var state = _ledger.Record(vehicle, round, charge);
            if (state.Participations != before) _collection.Upsert(ToDocument(state, Options));
        }
        _db.Checkpoint();
    }

    // If this throws, the in-memory ledger already holds the round: it over-counts until restart, and the caller,
    // seeing the exception, must not use or send the update.
    private void Persist(VehiclePrivacyState state, long round, PrivacyCharge charge)
    {
        _mirror.Append(state.VehicleId, round, charge); // first: the mirror is never behind the LiteDB file
        var existing = _collection.FindById(state.VehicleId);
        if (existing is not null && existing["rounds"].AsArray.Count > state.Participations)
            throw new InvalidOperationException($"Vehicle '{state.VehicleId}': the stored ledger holds more rounds than memory; ε must never decrease.");
        _collection.Upsert(ToDocument(state, Options));
        _db.Checkpoint();
        FlushToDisk();
    }

    // LiteDB does not fsync (issue #2818): fsync the data file ourselves after the checkpoint.
    private void FlushToDisk()
    {
        using var stream = new FileStream(Path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete, bufferSize: 1);
        stream.Flush(flushToDisk: true);
    }

    private static BsonDocument ToDocument(VehiclePrivacyState state, PrivacyLedgerOptions options)
    {
        var rounds = new BsonArray(state.Rounds.Select(r => new BsonValue(r)));
        var q = new BsonArray(state.Charges.Select(c => new BsonValue(c.SamplingRate)));
        var sigma = new BsonArray(state.Charges.Select(c => new BsonValue(c.NoiseMultiplier)));
        var steps = new BsonArray(state.Charges.Select(c => new BsonValue(c.Steps)));
        return new BsonDocument
        {
            ["_id"] = state.VehicleId,
            ["schema"] = SchemaVersion,
            ["rounds"] = rounds,
            ["q"] = q,
            ["sigma"] = sigma,
            ["steps"] = steps,
            ["orders"] = new BsonArray(options.Orders.Select(o => new BsonValue(o))),
            ["rdp"] = new BsonArray(state.Rdp.Select(r => new BsonValue(r))),
            ["delta"] = options.Delta,
            ["conversion"] = options.Conversion.ToString(),
            ["epsilon"] = state.Epsilon,
            ["order"] = state.Spent.Order,
        };
    }

    private static LedgerVerification Load(LiteDatabase db, PrivacyLedger ledger, PrivacyLedgerOptions options, string path)
    {
        int vehicles = 0, recomputed = 0;
        long rounds = 0;
        IEnumerable<BsonDocument> documents;
        try
        {
            documents = db.GetCollection<BsonDocument>(CollectionName).FindAll().ToList();
        }
        catch (LiteException e)
        {
            throw new InvalidDataException($"The privacy ledger at '{path}' is unreadable ({e.Message}); refusing to start from zero.", e);
        }
        foreach (var doc in documents.Where(d => !LiteDbFiles.IsProbe(d)))
        {
            string id = doc["_id"].IsString ? doc["_id"].AsString : throw Bad(path, doc["_id"].ToString(), "the id is not a string");
            try
            {
                if (doc["schema"].AsInt32 != SchemaVersion) throw Bad(path, id, $"schema {doc["schema"]} is not {SchemaVersion}");
                var r = doc["rounds"].AsArray.Select(v => v.AsInt64).ToArray();
                var q = doc["q"].AsArray.Select(v => v.AsDouble).ToArray();
                var sigma = doc["sigma"].AsArray.Select(v => v.AsDouble).ToArray();
                var steps = doc["steps"].AsArray.Select(v => v.AsInt32).ToArray();
                if (q.Length != r.Length || sigma.Length != r.Length || steps.Length != r.Length) throw Bad(path, id, "history arrays differ in length");
                var charges = new PrivacyCharge[r.Length];
                for (int i = 0; i < r.Length; i++) charges[i] = new PrivacyCharge(q[i], sigma[i], steps[i]);
                var state = ledger.Restore(id, r, charges);

                var storedOrders = doc["orders"].AsArray.Select(v => v.AsDouble).ToArray();
                bool sameSettings = storedOrders.SequenceEqual(options.Orders) && doc["delta"].AsDouble == options.Delta
                    && doc["conversion"].AsString == options.Conversion.ToString();
                if (sameSettings)
                {
                    // Same arithmetic, same order of additions: the recomputed values must match bit for bit.
                    var storedRdp = doc["rdp"].AsArray.Select(v => v.AsDouble).ToArray();
                    if (!storedRdp.SequenceEqual(state.Rdp) || doc["epsilon"].AsDouble != state.Epsilon)
                        throw Bad(path, id, $"stored ε {doc["epsilon"].AsDouble} does not match ε {state.Epsilon} recomputed from its history");
                }
                else
                {
                    recomputed++;
                }
                vehicles++;
                rounds += r.Length;
            }
            catch (Exception e) when (e is InvalidCastException or ArgumentException or NullReferenceException or InvalidOperationException)
            {
                throw Bad(path, id, e.Message, e);
            }
        }
        return new LedgerVerification(vehicles, rounds, recomputed);
    }

    private static InvalidDataException Bad(string path, string id, string why, Exception? inner = null)
        => new($"The privacy ledger at '{path}' has an invalid document for vehicle '{id}': {why}. Refusing to start (an under-counted ε cannot be undone).", inner);
}
