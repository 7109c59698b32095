using System.Globalization;

namespace FleetLearn.Perception.Ingest;

/// <summary>Thrown when a sidecar annotation cannot be read; the message names the file, the line and the problem.</summary>
public sealed class ClipLabelsException(string message) : Exception(message);

/// <summary>
/// A clip's sidecar annotation: a CSV file whose header is <c>frame,class</c> (source frame index) or <c>time,class</c>
/// (seconds from the clip's start), then one row per change, in increasing order. A frame takes the class of the last row
/// at or before it (a driver-tagged event holds until the next tag); an empty class or <c>-1</c> means "unlabelled from
/// here". Lines starting with <c>#</c> are comments.
/// </summary>
/// <remarks>Sidecar file: <c>{clip}.labels.csv</c> next to a video (<c>drive.mp4.labels.csv</c>), and for an image folder
/// <c>labels.csv</c> inside it (frame = the image's index in name order).</remarks>
public sealed class ClipLabels
{
    /// <summary>Largest sidecar accepted.</summary>
    public const long MaxBytes = 16L << 20;

    private readonly double[] _keys;
    private readonly int[] _classes;

    private ClipLabels(bool byTime, double[] keys, int[] classes)
    {
        ByTime = byTime;
        _keys = keys;
        _classes = classes;
    }

    /// <summary>True when rows are keyed by time (seconds), false by frame index.</summary>
    public bool ByTime { get; }

    /// <summary>Rows in the file.</summary>
    public int Count => _keys.Length;

    /// <summary>The sidecar path of a clip (video file or image folder).</summary>
    public static string SidecarOf(string clipPath) =>
        Directory.Exists(clipPath) ? Path.Combine(clipPath, "labels.csv") : clipPath + ".labels.csv";

    /// <summary>Reads a sidecar; every class must be below <paramref name="classCount"/>.</summary>
    public static ClipLabels Load(string path, int classCount)
    {
        ArgumentNullException.ThrowIfNull(path);
        var info = new FileInfo(path);
        if (!info.Exists) throw new FileNotFoundException($"Labels '{path}' do not exist.", path);
        if (info.Length > MaxBytes) throw new ClipLabelsException($"Labels '{path}' are {info.Length} bytes, over the {MaxBytes >> 20} MiB limit.");
        return Parse(File.ReadAllLines(path), classCount, path);
    }

    /// <summary>Parses sidecar lines (<paramref name="name"/> is used in messages).</summary>
    public static ClipLabels Parse(IReadOnlyList<string> lines, int classCount, string name = "labels")
    {
        ArgumentNullException.ThrowIfNull(lines);
        bool? byTime = null;
        var keys = new List<double>();
        var classes = new List<int>();
        for (int i = 0; i < lines.Count; i++)
        {
            var line = lines[i].Trim();
            if (line.Length == 0 || line.StartsWith('#')) continue;
            var cells = line.Split(',', StringSplitOptions.TrimEntries);
            if (byTime is null)
            {
                byTime = cells.Length == 2 && cells[1].Equals("class", StringComparison.OrdinalIgnoreCase) ? cells[0].ToLowerInvariant() switch
                {
                    "time" => true,
                    "frame" => false,
                    _ => null,
                } : null;
                if (byTime is null) throw new ClipLabelsException($"{name} line {i + 1}: expected the header 'frame,class' or 'time,class'; got '{line}'.");
                continue;
            }
            if (cells.Length != 2) throw new ClipLabelsException($"{name} line {i + 1}: expected two cells (key,class); got '{line}'.");
            double key = -1;
            bool keyOk = byTime.Value
                ? double.TryParse(cells[0], NumberStyles.Float, CultureInfo.InvariantCulture, out key) && double.IsFinite(key) && key >= 0
                : long.TryParse(cells[0], NumberStyles.None, CultureInfo.InvariantCulture, out long frame) && (key = frame) >= 0;
            if (!keyOk) throw new ClipLabelsException($"{name} line {i + 1}: '{cells[0]}' is not a {(byTime.Value ? "time in seconds ≥ 0" : "frame index ≥ 0")}.");
            if (keys.Count > 0 && key <= keys[^1]) throw new ClipLabelsException($"{name} line {i + 1}: {cells[0]} is not after the previous row's {keys[^1].ToString(CultureInfo.InvariantCulture)}; rows must increase.");
            int cls = -1;
            if (cells[1].Length > 0 && !(int.TryParse(cells[1], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out cls) && cls >= -1 && cls < classCount))
                throw new ClipLabelsException($"{name} line {i + 1}: class '{cells[1]}' is not within 0..{classCount - 1} (or -1/empty for none).");
            keys.Add(key);
            classes.Add(cls);
        }
        if (byTime is null) throw new ClipLabelsException($"{name} is empty; expected the header 'frame,class' or 'time,class' and rows.");
        return new ClipLabels(byTime.Value, [.. keys], [.. classes]);
    }

    /// <summary>The class at a frame index or time (whichever the file is keyed by); −1 when none.</summary>
    public int At(double key)
    {
        int index = Array.BinarySearch(_keys, key);
        if (index < 0) index = ~index - 1;
        return index < 0 ? -1 : _classes[index];
    }

    /// <summary>
    /// The class of a sampled frame: <paramref name="frameIndex"/> (source frame index) and <paramref name="time"/>
    /// (seconds); whichever the file is keyed by is used, the other may be null. Throws when the needed one is missing.
    /// </summary>
    public int For(long? frameIndex, double? time, string clipName)
    {
        if (ByTime)
            return time is { } t ? At(t + 1e-6) : throw new ClipLabelsException($"Labels of '{clipName}' are keyed by time, but its frames have no time (an image folder): key them by frame.");
        return frameIndex is { } f ? At(f) : throw new ClipLabelsException($"Labels of '{clipName}' are keyed by frame, but its frames were sampled by time: key them by time.");
    }
}
