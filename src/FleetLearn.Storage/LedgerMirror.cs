using System.Globalization;
using System.Text;
using FleetLearn.Core.Privacy;

namespace FleetLearn.Storage;

/// <summary>
/// A second, simpler copy of the privacy ledger's history beside its LiteDB file (<c>{file}.mirror</c>): one text line per
/// recorded (vehicle, round, charge), appended and fsynced <i>before</i> the LiteDB write (issue 14 item 4). Appending to a
/// file never rewrites what is already on disk, so a power cut can at worst tear the last line, which the reader skips; a
/// LiteDB checkpoint, by contrast, overwrites pages in place. When the LiteDB file no longer opens, the ledger is rebuilt
/// from here, and rounds the LiteDB file lost are restored from here: the ledger never reports less ε than was spent.
/// </summary>
internal sealed class LedgerMirror : IDisposable
{
    private readonly FileStream _file;

    private LedgerMirror(string path, FileStream file)
    {
        Path = path;
        _file = file;
    }

    /// <summary>The mirror's path.</summary>
    public string Path { get; }

    /// <summary>The mirror of the ledger at <paramref name="ledgerPath"/>.</summary>
    public static string PathFor(string ledgerPath) => ledgerPath + ".mirror";

    /// <summary>Opens (or creates) the mirror for appending; a torn last line is cut off first so that the next append starts a line.</summary>
    public static LedgerMirror Open(string ledgerPath)
    {
        string path = PathFor(ledgerPath);
        var file = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.ReadWrite);
        long keep = file.Length;
        if (keep > 0)
        {
            // Find the end of the last complete line.
            var buffer = new byte[1];
            while (keep > 0)
            {
                file.Position = keep - 1;
                file.ReadExactly(buffer);
                if (buffer[0] == (byte)'\n') break;
                keep--;
            }
            if (keep != file.Length)
            {
                file.SetLength(keep);
                file.Flush(flushToDisk: true);
            }
        }
        file.Position = keep;
        return new LedgerMirror(path, file);
    }

    /// <summary>Every complete, well-formed entry in <paramref name="ledgerPath"/>'s mirror, in order (none when there is no mirror).</summary>
    public static IReadOnlyList<(string Vehicle, long Round, PrivacyCharge Charge)> Read(string ledgerPath)
    {
        string path = PathFor(ledgerPath);
        var entries = new List<(string, long, PrivacyCharge)>();
        if (!File.Exists(path)) return entries;
        string text;
        using (var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite))
        using (var reader = new StreamReader(stream, Encoding.UTF8))
            text = reader.ReadToEnd();
        int end = text.LastIndexOf('\n');
        foreach (var line in text[..(end + 1)].Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var f = line.Split('\t');
            if (f.Length != 5) continue;
            if (!long.TryParse(f[1], NumberStyles.Integer, CultureInfo.InvariantCulture, out long round)
                || !double.TryParse(f[2], NumberStyles.Float, CultureInfo.InvariantCulture, out double q)
                || !double.TryParse(f[3], NumberStyles.Float, CultureInfo.InvariantCulture, out double sigma)
                || !int.TryParse(f[4], NumberStyles.Integer, CultureInfo.InvariantCulture, out int steps)) continue;
            try
            {
                entries.Add((f[0], round, new PrivacyCharge(q, sigma, steps)));
            }
            catch (ArgumentOutOfRangeException)
            {
                // a line no ledger could have written: skipped
            }
        }
        return entries;
    }

    /// <summary>Appends one entry and fsyncs it (<paramref name="sync"/> false: the caller syncs once after a batch with <see cref="Sync"/>).</summary>
    public void Append(string vehicle, long round, PrivacyCharge charge, bool sync = true)
    {
        var line = string.Create(CultureInfo.InvariantCulture, $"{vehicle}\t{round}\t{charge.SamplingRate:R}\t{charge.NoiseMultiplier:R}\t{charge.Steps}\n");
        _file.Write(Encoding.UTF8.GetBytes(line));
        if (sync) Sync();
    }

    /// <summary>Flushes what was appended to the disk.</summary>
    public void Sync() => _file.Flush(flushToDisk: true);

    public void Dispose() => _file.Dispose();
}
