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
            db.Checkpoint(); // fold whatever a crashed run left in the log into the data file
            return db;
        }
        catch (Exception e) when (e is LiteException or IOException or InvalidCastException)
        {
            throw new InvalidDataException($"The {what} at '{fullPath}' cannot be opened ({e.Message}).", e);
        }
    }

    /// <summary>Folds the log into the data file and fsyncs it: only then is a write durable across a power cut.</summary>
    public static void Durable(LiteDatabase db, string path)
    {
        db.Checkpoint();
        using var stream = new FileStream(System.IO.Path.GetFullPath(path), FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete, bufferSize: 1);
        stream.Flush(flushToDisk: true);
    }
}
