namespace FleetLearn.Cli;

/// <summary>Checks a command's output paths before any work is done, so a bad --out never costs a finished run.</summary>
internal static class CliOutput
{
    /// <summary>Names a run's results carry; a folder holding one of them may be replaced by <see cref="ReplaceRun"/>.</summary>
    private static readonly string[] RunMarkers = ["rounds.csv", "report.html", "model.ckpt", "mqtt"];

    /// <summary>
    /// Makes sure <paramref name="path"/> is (or can become) a folder this process can write: an existing file, a
    /// parent that is a file or a read-only place is refused naming <paramref name="option"/> and the path.
    /// </summary>
    public static void CheckFolder(string? path, string option = "--out")
    {
        if (path is null) return;
        if (string.IsNullOrWhiteSpace(path)) throw new ArgumentException($"{option} '': expected a folder.");
        if (File.Exists(path)) throw new ArgumentException($"{option} '{path}' is a file; expected a folder (created when missing).");
        try
        {
            Directory.CreateDirectory(path);
            string probe = Path.Combine(path, $".fleetlearn-write-check-{Environment.ProcessId}");
            File.WriteAllBytes(probe, []);
            File.Delete(probe);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException)
        {
            throw new ArgumentException($"{option} '{path}': cannot write there ({e.Message}).", e);
        }
    }

    /// <summary>Makes sure <paramref name="path"/> can be written as a file: not a folder, its folder writable.</summary>
    public static void CheckFile(string path, string option = "--out")
    {
        ArgumentNullException.ThrowIfNull(path);
        if (string.IsNullOrWhiteSpace(path)) throw new ArgumentException($"{option} '': expected a file name.");
        if (Directory.Exists(path)) throw new ArgumentException($"{option} '{path}' is a folder; expected a file name (e.g. {Path.Combine(path, "model.onnx")}).");
        string folder = Path.GetDirectoryName(Path.GetFullPath(path))!;
        CheckFolder(folder, $"{option} '{path}': folder");
    }

    /// <summary>
    /// Empties the folder of a previous run (rounds.csv, report.html, model.ckpt or mqtt/ in it) so a new run can take its
    /// place; a non-empty folder without any of them is refused, so a mistyped --out never deletes someone's files.
    /// Call only once the new run's options have been accepted.
    /// </summary>
    public static void ReplaceRun(string path, string option = "--out")
    {
        ArgumentNullException.ThrowIfNull(path);
        var folder = new DirectoryInfo(path);
        if (!folder.Exists || !folder.EnumerateFileSystemInfos().Any()) return;
        if (!RunMarkers.Any(m => File.Exists(Path.Combine(path, m)) || Directory.Exists(Path.Combine(path, m))))
            throw new ArgumentException($"{option} '{path}' holds files that are not a FleetLearn run's results ({string.Join(", ", RunMarkers)}); not replacing them: pick another --out.");
        foreach (var entry in folder.EnumerateFileSystemInfos())
        {
            if (entry is DirectoryInfo d) d.Delete(recursive: true);
            else entry.Delete();
        }
    }
}
