using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace FleetLearn.Storage;

/// <summary>Where an outbox payload lies on disk: its file name, length and SHA-256 (kept in the outbox document that names it).</summary>
internal readonly record struct PayloadFile(string Name, long Length, byte[] Sha256);

/// <summary>
/// The outbox's payloads, one file each in <c>{database}.payloads/</c>: written atomically and durably (temp file, fsync, rename,
/// fsync of the folder) before the LiteDB document that names them, read back against their length and SHA-256.
/// </summary>
/// <remarks>
/// Why files: a 650 KB masked input written into LiteDB's pages stays in the database's page cache (about 1.5 MB an agent at 500
/// agents, growing each round: docs/scale.md); a file is read only when it is sent again, and its pages belong to the OS.
/// </remarks>
internal sealed partial class OutboxPayloadFiles
{
    private const string Extension = ".bin";
    private const string TempExtension = ".tmp";

    public OutboxPayloadFiles(string databasePath)
    {
        Folder = databasePath + ".payloads";
        Directory.CreateDirectory(Folder);
    }

    /// <summary>The folder beside the database.</summary>
    public string Folder { get; }

    /// <summary>
    /// Writes <paramref name="payload"/> of update <paramref name="updateId"/> durably and returns where it lies. The name carries the
    /// first bytes of the hash, so a second payload under the same update id never overwrites the file its document still names.
    /// </summary>
    public PayloadFile Write(Guid updateId, byte[] payload)
    {
        byte[] sha = SHA256.HashData(payload);
        string name = $"{updateId:N}-{Convert.ToHexStringLower(sha, 0, 8)}{Extension}";
        string final = System.IO.Path.Combine(Folder, name);
        string temp = final + TempExtension;
        try
        {
            using (var file = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None, bufferSize: 1))
            {
                file.Write(payload);
                file.Flush(flushToDisk: true);
            }
            File.Move(temp, final, overwrite: true);
        }
        catch
        {
            TryDelete(temp);
            throw;
        }
        SyncFolder(); // the rename itself is durable only once the folder's entry is on disk
        return new PayloadFile(name, payload.Length, sha);
    }

    /// <summary>The payload, or null with <paramref name="problem"/> set when its file is missing, short or long, or fails its SHA-256.</summary>
    public byte[]? TryRead(PayloadFile file, out string? problem)
    {
        problem = null;
        string path = System.IO.Path.Combine(Folder, file.Name);
        byte[] bytes;
        try
        {
            var info = new FileInfo(path);
            if (!info.Exists)
            {
                problem = $"its payload file {file.Name} is missing";
                return null;
            }
            if (info.Length != file.Length)
            {
                problem = $"its payload file {file.Name} has {info.Length} bytes, not the {file.Length} written";
                return null;
            }
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            problem = $"its payload file {file.Name} cannot be read ({e.Message})";
            return null;
        }
        if (bytes.Length != file.Length)
        {
            problem = $"its payload file {file.Name} has {bytes.Length} bytes, not the {file.Length} written";
            return null;
        }
        if (!CryptographicOperations.FixedTimeEquals(SHA256.HashData(bytes), file.Sha256))
        {
            problem = $"its payload file {file.Name} fails its SHA-256 check";
            return null;
        }
        return bytes;
    }

    /// <summary>Deletes a payload file (gone already: nothing to do).</summary>
    public void Delete(string name) => TryDelete(System.IO.Path.Combine(Folder, name));

    /// <summary>Deletes every file in the folder whose name is not in <paramref name="named"/> (temp files and payloads no document names); returns how many.</summary>
    public int DeleteOrphans(IReadOnlySet<string> named)
    {
        int deleted = 0;
        foreach (string path in Directory.EnumerateFiles(Folder))
        {
            if (named.Contains(System.IO.Path.GetFileName(path))) continue;
            if (TryDelete(path)) deleted++;
        }
        return deleted;
    }

    private static bool TryDelete(string path)
    {
        try
        {
            if (!File.Exists(path)) return false;
            File.Delete(path);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false; // left for the next open's orphan sweep
        }
    }

    /// <summary>fsync of the folder (POSIX: a rename is durable once the directory is). .NET opens no directory handle, hence libc.</summary>
    private void SyncFolder()
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS()) return; // NTFS journals the rename itself
        int fd = Open(Folder, 0 /* O_RDONLY */);
        if (fd < 0) throw new IOException($"Cannot open '{Folder}' to make the payload's rename durable (errno {Marshal.GetLastPInvokeError()}).");
        try
        {
            if (Fsync(fd) != 0) throw new IOException($"fsync of '{Folder}' failed (errno {Marshal.GetLastPInvokeError()}).");
        }
        finally
        {
            _ = Close(fd);
        }
    }

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);
}
