using LiteDB;

namespace FleetLearn.Storage;

/// <summary>Shared LiteDB handling: direct connection, checkpoint + fsync after each durable write (LiteDB issue #2818).</summary>
internal static class LiteDbFiles
{
    /// <summary>Opens <paramref name="fullPath"/> as the stores do (direct connection: one process, one writer), without <see cref="Open"/>'s checks.</summary>
    public static LiteDatabase Connect(string fullPath) => new(new ConnectionString { Filename = fullPath, Connection = ConnectionType.Direct });

    public static LiteDatabase Open(string path, string what)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        string fullPath = System.IO.Path.GetFullPath(path);
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(fullPath)!);
        try
        {
            var db = Connect(fullPath);
            try
            {
                db.Checkpoint(); // fold whatever a crashed run left in the log into the data file
                // Touch every collection's pages now: a damaged file otherwise fails later, deep in a read, without its name.
                foreach (var name in db.GetCollectionNames().ToList()) _ = db.GetCollection(name).Count();
                return db;
            }
            catch
            {
                db.Dispose();
                throw;
            }
        }
        catch (Exception e) when (IsDamage(e))
        {
            throw new InvalidDataException($"The {what} at '{fullPath}' cannot be opened ({e.Message}); it is damaged or not a LiteDB file. Restore it from a backup or move it aside.", e);
        }
    }

    /// <summary>
    /// What LiteDB throws for a damaged or foreign file: its own errors, and whatever its page decoder trips over. A full disk
    /// is not damage: the file is fine and must not be moved to quarantine (<see cref="StorageErrors.IsDiskFull"/>).
    /// </summary>
    public static bool IsDamage(Exception e) => !StorageErrors.IsDiskFull(e) && e is LiteException or IOException or InvalidCastException or ArgumentException or IndexOutOfRangeException
        or InvalidOperationException or FormatException or ArithmeticException or KeyNotFoundException or NullReferenceException or NotSupportedException
        or NotImplementedException; // LiteDB's query executor on a torn page of a kind it does not know (one torn image in PowerLossTests)

    private const string ProbeId = "~probe";

    /// <summary>Kept free beside every write: LiteDB's checkpoint copies the log into the data file, which can grow by as much again.</summary>
    private const long Reserve = 1 << 20;

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, DriveInfo?> Mounts = new(StringComparer.Ordinal);

    /// <summary>
    /// Throws a disk-full <see cref="IOException"/> before a write of about <paramref name="bytes"/> when the file system of
    /// <paramref name="path"/> has less than twice that plus 1 MiB free. Once LiteDB 5 has failed one write for lack of
    /// space, its writer keeps that error and every later write fails too, even after space is back (found by the
    /// disk-full fault tests). So a write that would not fit is not attempted: the caller sees "disk full", and the store
    /// keeps working once space is back. A file system that fills between this check and the write can still break the
    /// store until the next start.
    /// </summary>
    public static void EnsureSpace(string path, long bytes)
    {
        long needed = 2 * bytes + Reserve;
        if (FreeBytes(path) is { } free && free < needed)
            throw new IOException($"No space left on device: {free} bytes free on the file system of '{path}', {needed} kept for the next write.", 28);
    }

    private static long? FreeBytes(string path)
    {
        string dir = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path)) ?? "/";
        var drive = Mounts.GetOrAdd(dir, d =>
        {
            try
            {
                // The mount with the longest root that holds the folder (DriveInfo.GetDrives lists the mount table on Linux).
                return DriveInfo.GetDrives().Where(m => IsUnder(d, m.RootDirectory.FullName)).MaxBy(m => m.RootDirectory.FullName.Length);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                return null;
            }
        });
        try
        {
            return drive?.AvailableFreeSpace;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null; // unknown: the write is tried
        }
    }

    private static bool IsUnder(string dir, string root) =>
        dir == root.TrimEnd('/') || dir.StartsWith(root.EndsWith('/') ? root : root + "/", StringComparison.Ordinal) || root == "/";

    /// <summary>
    /// True when neither the data file at <paramref name="path"/> nor LiteDB's <c>-log</c> file beside it exists: the open about to
    /// happen creates them, so they hold no page an earlier power cut could have torn, and the start-up repairs (<see cref="Rebuild"/>,
    /// <see cref="ProbeWrite"/>: three checkpoints and fsyncs) have nothing to repair. A simulated fleet opens a thousand such files at once.
    /// </summary>
    public static bool IsNew(string path)
    {
        string full = System.IO.Path.GetFullPath(path);
        string log = System.IO.Path.Combine(System.IO.Path.GetDirectoryName(full)!, System.IO.Path.GetFileNameWithoutExtension(full) + "-log" + System.IO.Path.GetExtension(full));
        return !File.Exists(full) && !File.Exists(log);
    }

    /// <summary>
    /// Rewrites the whole file from the documents just read back (LiteDB's <c>Rebuild</c>) and makes it durable: a page torn by
    /// a power cut can read back fine and still hold a broken free-space count that fails a later update in place ("length
    /// must be always lower than current free space"; found by the torn-write property test), and only fresh pages are sure
    /// not to. The files it is used for (a vehicle's outbox and ledger, an aggregator's ledger) are small.
    /// </summary>
    public static void Rebuild(LiteDatabase db, string path)
    {
        db.Rebuild();
        Durable(db, path);
    }

    /// <summary>
    /// Reads every document of <paramref name="collection"/> by a scan and again through its <c>_id</c> index, so that a torn
    /// data or index page fails here, at start-up, and not at the first lookup (found by the torn-write property test).
    /// </summary>
    public static List<BsonDocument> ReadAll(LiteDatabase db, string collection)
    {
        var documents = db.GetCollection<BsonDocument>(collection);
        var all = documents.FindAll().Where(d => !IsProbe(d)).ToList();
        foreach (var doc in all)
            if (documents.FindById(doc["_id"]) is null) throw new LiteException(0, $"document {doc["_id"]} of {collection} is missing from its index");
        return all;
    }

    /// <summary>True for the probe document (left behind only if the process died between its write and its delete).</summary>
    public static bool IsProbe(BsonDocument document) => document["_id"] is { IsString: true } id && id.AsString == ProbeId;

    /// <summary>
    /// Writes and deletes a probe document in <paramref name="collection"/> and makes it durable: a file torn by a power cut
    /// can read back fine and still fail its next write deep in LiteDB ("slot position must be empty before use"), so the
    /// write path is tried at start-up, where a failure can still send the file to quarantine.
    /// </summary>
    public static void ProbeWrite(LiteDatabase db, string collection, string path)
    {
        var probes = db.GetCollection<BsonDocument>(collection);
        var id = new BsonValue(ProbeId);
        probes.Upsert(new BsonDocument { ["_id"] = id, ["probe"] = new byte[64] });
        probes.Delete(id);
        Durable(db, path);
    }

    /// <summary>
    /// Moves a damaged database (and LiteDB's <c>-log</c> file beside it) aside under <c>{file}.corrupt-{UTC time}</c>, kept
    /// for diagnosis, so that a fresh file can take its place; returns the quarantined data file's path.
    /// </summary>
    public static string Quarantine(string path)
    {
        string full = System.IO.Path.GetFullPath(path);
        string stamp = DateTime.UtcNow.ToString("yyyyMMdd'T'HHmmssfff", System.Globalization.CultureInfo.InvariantCulture);
        string target = $"{full}.corrupt-{stamp}";
        File.Move(full, target);
        string log = System.IO.Path.Combine(System.IO.Path.GetDirectoryName(full)!, System.IO.Path.GetFileNameWithoutExtension(full) + "-log" + System.IO.Path.GetExtension(full));
        if (File.Exists(log)) File.Move(log, target + "-log");
        return target;
    }

    /// <summary>Folds the log into the data file and fsyncs it: only then is a write durable across a power cut.</summary>
    public static void Durable(LiteDatabase db, string path)
    {
        db.Checkpoint();
        using var stream = new FileStream(System.IO.Path.GetFullPath(path), FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete, bufferSize: 1);
        stream.Flush(flushToDisk: true);
    }
}
