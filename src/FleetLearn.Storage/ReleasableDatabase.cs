using LiteDB;

namespace FleetLearn.Storage;

/// <summary>A store's LiteDB database that can be closed while the store is idle and reopens on its next use (issue 16 item 3).</summary>
/// <remarks>
/// <para>An idle simulated vehicle otherwise keeps two descriptors on each of its LiteDB files (<c>Connection=direct</c> holds
/// the data and the log file open) for its whole life: 10,000 vehicles in 4 processes needed more than a process may open.</para>
/// <para>Not thread-safe: the store calls it under its own lock, so a <see cref="Release"/> racing another caller's use is simply
/// followed by a reopen. A reopen is a plain LiteDB open: the store verified the file (scan, rebuild, probe write) when it first
/// opened it in this process, and since then only this store wrote it (one writer per file: direct mode, <see cref="DatabaseLock"/>)
/// and closed it cleanly, log folded in. A file that fails to reopen is reported as damaged (<see cref="InvalidDataException"/>);
/// it is not quarantined mid-run: that stays the start's decision.</para>
/// <para>Values the store remembers (<see cref="Recall{T}"/>) let an idle store answer its frequent reads (a count, a counter)
/// without reopening. They stay exact because this store is the file's only writer: every write it makes updates or forgets them.</para>
/// </remarks>
internal sealed class ReleasableDatabase : IDisposable
{
    private readonly string _path;
    private readonly string _what;
    private readonly Dictionary<string, object?> _remembered = new(StringComparer.Ordinal);
    private LiteDatabase? _db;
    private bool _disposed;

    /// <summary>Wraps <paramref name="opened"/>, the database the store opened and verified at <paramref name="path"/>.</summary>
    public ReleasableDatabase(string path, string what, LiteDatabase opened)
    {
        _path = System.IO.Path.GetFullPath(path);
        _what = what;
        _db = opened;
    }

    /// <summary>The database, reopened first if it was released.</summary>
    public LiteDatabase Database
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _db ??= Reopen();
        }
    }

    /// <summary>Whether the files are open now.</summary>
    public bool IsOpen => _db is not null;

    /// <summary>Times the database was reopened after a release.</summary>
    public int Reopens { get; private set; }

    /// <summary>Times the database was released.</summary>
    public int Releases { get; private set; }

    /// <summary>The remembered value of <paramref name="key"/>, else <paramref name="read"/>'s (which may reopen the database), remembered.</summary>
    public T Recall<T>(string key, Func<T> read)
    {
        if (_remembered.TryGetValue(key, out var value)) return (T)value!;
        T fresh = read();
        _remembered[key] = fresh;
        return fresh;
    }

    /// <summary>Remembers <paramref name="value"/> for <paramref name="key"/> (the store just wrote it).</summary>
    public void Remember(string key, object? value) => _remembered[key] = value;

    /// <summary>The remembered value of <paramref name="key"/>, or null when none is.</summary>
    public object? Known(string key) => _remembered.GetValueOrDefault(key);

    /// <summary>
    /// Remembers every value stored under keys starting with <paramref name="prefix"/> (<paramref name="stored"/>: all of them, read
    /// from the file), so that <see cref="KnowsAll"/> says a key not remembered is not in the file either.
    /// </summary>
    public void RememberAll(string prefix, IEnumerable<(string Key, object? Value)> stored)
    {
        foreach (var (key, value) in stored) _remembered.TryAdd(prefix + key, value);
        _remembered[prefix + "*"] = true;
    }

    /// <summary>Whether <see cref="RememberAll"/> remembered every value under <paramref name="prefix"/> (until <c>Forget(prefix + "*")</c>).</summary>
    public bool KnowsAll(string prefix) => _remembered.ContainsKey(prefix + "*");

    /// <summary>Forgets <paramref name="key"/> (the store just changed what it was computed from).</summary>
    public void Forget(string key) => _remembered.Remove(key);

    /// <summary>Folds the log into the data file and closes both; the next <see cref="Database"/> reopens. A no-op when released.</summary>
    public void Release()
    {
        if (_db is not { } db) return;
        _db = null; // whatever happens below, the next use opens afresh
        Releases++;
        try
        {
            db.Checkpoint();
        }
        finally
        {
            db.Dispose();
        }
    }

    private LiteDatabase Reopen()
    {
        try
        {
            var db = LiteDbFiles.Connect(_path);
            Reopens++;
            return db;
        }
        catch (Exception e) when (LiteDbFiles.IsDamage(e))
        {
            throw new InvalidDataException($"The {_what} at '{_path}' no longer opens after it was released while idle ({e.Message}); it is damaged. Restart the vehicle: the start moves a damaged file aside.", e);
        }
    }

    /// <summary>Checkpoints and closes the database for good.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        Release();
    }
}
