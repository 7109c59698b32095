namespace FleetLearn.Storage;

/// <summary>
/// An exclusive lock beside a database file (<c>{file}.lock</c>), held for a process's lifetime: LiteDB's direct mode lets
/// two processes open one file and overwrite each other's pages, so one writer is enforced here. The lock is an OS file
/// lock (.NET takes <c>flock(LOCK_EX)</c> for <see cref="FileShare.None"/> on Unix), released by the kernel when the
/// process dies, so a restart after <c>kill -9</c> is never locked out.
/// </summary>
public sealed class DatabaseLock : IDisposable
{
    private readonly FileStream _file;

    private DatabaseLock(FileStream file) => _file = file;

    /// <summary>Takes the lock of <paramref name="databasePath"/>, or throws <see cref="InvalidOperationException"/> naming the database when another process holds it.</summary>
    public static DatabaseLock Acquire(string databasePath, string what)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(databasePath);
        string full = Path.GetFullPath(databasePath);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        try
        {
            var file = new FileStream(full + ".lock", FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            file.SetLength(0);
            var line = System.Text.Encoding.UTF8.GetBytes($"pid {Environment.ProcessId} on {Environment.MachineName} since {DateTimeOffset.UtcNow:u}\n");
            file.Write(line);
            file.Flush();
            return new DatabaseLock(file);
        }
        catch (IOException e)
        {
            throw new InvalidOperationException(
                $"One database, one writer: another {what} process has the database '{full}' open (its lock '{full}.lock' is held). Stop that process first.", e);
        }
    }

    /// <summary>Releases the lock.</summary>
    public void Dispose() => _file.Dispose();
}
