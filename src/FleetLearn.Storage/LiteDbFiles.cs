using LiteDB;

namespace FleetLearn.Storage;

/// <summary>Shared LiteDB handling: direct connection, checkpoint + fsync after each durable write (LiteDB issue #2818).</summary>
internal static class LiteDbFiles
{
    public static LiteDatabase Open(string path, string what)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        string fullPath = System.IO.Path.GetFullPath(path);
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(fullPath)!);
        try
        {
            var db = new LiteDatabase(new ConnectionString { Filename = fullPath, Connection = ConnectionType.Direct });
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

    /// <summary>What LiteDB throws for a damaged or foreign file: its own errors, and whatever its page decoder trips over.</summary>
    public static bool IsDamage(Exception e) => e is LiteException or IOException or InvalidCastException or ArgumentException or IndexOutOfRangeException
        or InvalidOperationException or FormatException or OverflowException or KeyNotFoundException or NullReferenceException;

    /// <summary>Folds the log into the data file and fsyncs it: only then is a write durable across a power cut.</summary>
    public static void Durable(LiteDatabase db, string path)
    {
        db.Checkpoint();
        using var stream = new FileStream(System.IO.Path.GetFullPath(path), FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete, bufferSize: 1);
        stream.Flush(flushToDisk: true);
    }
}
