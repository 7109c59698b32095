using System.Diagnostics;

namespace FleetLearn.Cli.Tests.Faults;

/// <summary>
/// A small tmpfs the test mounts on a folder of its own (<c>mount -t tmpfs -o size=…</c>, root only), to fill the disk
/// under a process. <see cref="SkipReason"/> says why none could be mounted (not root, no mount permission in a container).
/// </summary>
internal sealed class Tmpfs : IDisposable
{
    private readonly string _filler;

    private Tmpfs(string folder, string? skipReason)
    {
        Folder = folder;
        SkipReason = skipReason;
        _filler = Path.Combine(folder, "filler.bin");
    }

    /// <summary>The mount point.</summary>
    public string Folder { get; }

    /// <summary>Why no tmpfs is mounted, or null.</summary>
    public string? SkipReason { get; }

    /// <summary>Mounts a tmpfs of <paramref name="megabytes"/> MiB on <paramref name="folder"/> (created).</summary>
    public static Tmpfs Mount(string folder, int megabytes)
    {
        Directory.CreateDirectory(folder);
        if (!OperatingSystem.IsLinux()) return new Tmpfs(folder, "tmpfs mounts need Linux");
        if (Environment.UserName != "root") return new Tmpfs(folder, $"mounting a tmpfs needs root (running as {Environment.UserName})");
        var (code, error) = Run("mount", "-t", "tmpfs", "-o", $"size={megabytes}m", "tmpfs", folder);
        return new Tmpfs(folder, code == 0 ? null : $"mount -t tmpfs was refused here ({error.Trim()})");
    }

    /// <summary>Fills the file system to the last byte (a filler file written until ENOSPC).</summary>
    public void Fill()
    {
        var block = new byte[64 * 1024];
        using var stream = new FileStream(_filler, FileMode.Create, FileAccess.Write, FileShare.None, 1);
        try
        {
            while (true) stream.Write(block);
        }
        catch (IOException)
        {
        }
        try
        {
            while (true) stream.Write(block, 0, 1); // the last partial block
        }
        catch (IOException)
        {
        }
    }

    /// <summary>Frees the space <see cref="Fill"/> took.</summary>
    public void Free() => File.Delete(_filler);

    public void Dispose()
    {
        if (SkipReason is null) Run("umount", "-l", Folder);
    }

    private static (int Code, string Error) Run(string file, params string[] args)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in args) info.ArgumentList.Add(a);
        using var process = Process.Start(info)!;
        string error = process.StandardError.ReadToEnd();
        process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, error);
    }
}
