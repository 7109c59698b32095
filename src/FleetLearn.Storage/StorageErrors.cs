namespace FleetLearn.Storage;

/// <summary>Tells a full disk apart from a damaged file: the first passes when space comes back, the second needs quarantine.</summary>
public static class StorageErrors
{
    private const int Enospc = 28, Edquot = 122; // Linux errno values; .NET on Unix puts the errno in IOException.HResult

    /// <summary>True when <paramref name="e"/> or an exception inside it says the disk (or the quota) is full.</summary>
    public static bool IsDiskFull(Exception? e)
    {
        for (; e is not null; e = e.InnerException)
        {
            if (e is IOException io && (io.HResult is Enospc or Edquot || (io.HResult & 0xFFFF) is 0x70 or 0x27 // Windows: ERROR_DISK_FULL, ERROR_HANDLE_DISK_FULL
                || io.Message.Contains("No space left on device", StringComparison.Ordinal) || io.Message.Contains("Disk quota exceeded", StringComparison.Ordinal)))
                return true;
        }
        return false;
    }
}
