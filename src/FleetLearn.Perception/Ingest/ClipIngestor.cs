using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using FleetLearn.Perception.Features;
using FleetLearn.Perception.Onnx;

namespace FleetLearn.Perception.Ingest;

/// <summary>How the vehicle ingests its recorder's clips.</summary>
public sealed record ClipIngestOptions
{
    /// <summary>Video extensions read through ffmpeg.</summary>
    public static IReadOnlyList<string> VideoExtensions { get; } = [".mp4", ".mkv", ".h264", ".264", ".avi", ".mov", ".webm"];

    /// <summary>Image extensions of an image-folder clip.</summary>
    public static IReadOnlyList<string> ImageExtensions { get; } = [".png", ".jpg", ".jpeg", ".bmp"];

    /// <summary>Keep every K-th frame of a clip (1: all). Exclusive with <see cref="SampleRate"/>.</summary>
    public int SampleEvery { get; init; } = 1;

    /// <summary>Frames per second to keep from a video (ffmpeg's fps filter); null: use <see cref="SampleEvery"/>.</summary>
    public double? SampleRate { get; init; }

    /// <summary>A clip is read once its size and time stamps were unchanged across scans at least this far apart.</summary>
    public TimeSpan StableAfter { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>Classes of the labels (sidecar and teacher).</summary>
    public int ClassCount { get; init; } = 10;

    /// <summary>Most frames taken from one clip.</summary>
    public int MaxFramesPerClip { get; init; } = 10_000;

    /// <summary>Least softmax confidence at which a teacher's prediction becomes a pseudo-label.</summary>
    public double TeacherThreshold { get; init; } = 0.9;

    /// <summary>The ffmpeg executable.</summary>
    public string FfmpegPath { get; init; } = "ffmpeg";

    /// <summary>Checks the settings; throws naming the bad one.</summary>
    public void Validate()
    {
        if (SampleEvery < 1) throw new ArgumentException($"SampleEvery {SampleEvery}: at least 1.");
        if (SampleRate is { } r && !(r > 0 && double.IsFinite(r))) throw new ArgumentException($"SampleRate {r}: a positive number of frames per second.");
        if (SampleRate is not null && SampleEvery > 1) throw new ArgumentException("Set SampleEvery or SampleRate, not both.");
        if (StableAfter < TimeSpan.Zero) throw new ArgumentException("StableAfter must not be negative.");
        if (ClassCount is < 2 or > 256) throw new ArgumentException($"ClassCount {ClassCount}: within 2..256.");
        if (MaxFramesPerClip < 1) throw new ArgumentException($"MaxFramesPerClip {MaxFramesPerClip}: at least 1.");
        if (!(TeacherThreshold >= 0 && TeacherThreshold <= 1)) throw new ArgumentException($"TeacherThreshold {TeacherThreshold}: a probability in [0, 1].");
    }
}

/// <summary>What one scan of the data folder did.</summary>
public sealed record IngestReport(int Clips, int Duplicates, int Waiting, int Failed, long Frames, long SidecarLabels, long TeacherLabels, long TeacherConsidered, long TeacherAgreed, long TeacherChecked)
{
    /// <summary>Fraction of the unlabelled frames the teacher was asked about whose pseudo-label was kept (NaN: none asked).</summary>
    public double TeacherKeptFraction => TeacherConsidered > 0 ? TeacherLabels / (double)TeacherConsidered : double.NaN;

    /// <summary>Fraction of sidecar-labelled frames on which the teacher agreed with the sidecar (NaN: none checked).</summary>
    public double TeacherAgreement => TeacherChecked > 0 ? TeacherAgreed / (double)TeacherChecked : double.NaN;
}

/// <summary>
/// Ingests the clips a vehicle's recorder writes into a folder: videos (through ffmpeg) and image folders (as dash cams
/// write them), each once it is complete, sampled, run through the backbone, labelled from its sidecar (and optionally a
/// teacher model), and stored in the <see cref="ClipFeatureStore"/> under its content hash.
/// </summary>
/// <remarks>
/// <para>A clip still being written is not read: names ending in <c>.part</c>, <c>.tmp</c> or <c>.partial</c> and hidden
/// names are skipped (a recorder that renames on close), and any other clip waits until its size and modification time
/// (for a folder: its files' count, sizes and times) are the same at two scans at least
/// <see cref="ClipIngestOptions.StableAfter"/> apart (a recorder that writes in place).</para>
/// <para>A clip whose content hash was ever stored is skipped (a copy under another name, or the same clip after
/// eviction). A clip that cannot be decoded is logged once and skipped until it changes.</para>
/// </remarks>
public sealed class ClipIngestor
{
    private readonly string _folder;
    private readonly OnnxModel _backbone;
    private readonly FrameFormat _format;
    private readonly ClipFeatureStore _store;
    private readonly OnnxModel? _teacher;
    private readonly ClipIngestOptions _options;
    private readonly TimeProvider _time;
    private readonly Action<string>? _log;
    private readonly Dictionary<string, (string Signature, DateTimeOffset Since)> _pending = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _done = new(StringComparer.Ordinal); // path → signature of a clip handled (stored, duplicate or failed)

    /// <summary>Creates an ingestor of <paramref name="dataFolder"/> into <paramref name="store"/>.</summary>
    /// <param name="dataFolder">Where the recorder writes clips.</param>
    /// <param name="backbone">The backbone (input: image frames [1|3, H, W] in [0, 1]).</param>
    /// <param name="store">The feature store.</param>
    /// <param name="options">Sampling, stability and labelling settings.</param>
    /// <param name="teacher">Optional teacher: input the backbone's features (or the frames), output class scores.</param>
    /// <param name="time">Clock of the stability check.</param>
    /// <param name="log">Receives a line per clip and per problem.</param>
    public ClipIngestor(string dataFolder, OnnxModel backbone, ClipFeatureStore store, ClipIngestOptions? options = null, OnnxModel? teacher = null,
        TimeProvider? time = null, Action<string>? log = null)
    {
        ArgumentNullException.ThrowIfNull(dataFolder);
        ArgumentNullException.ThrowIfNull(backbone);
        ArgumentNullException.ThrowIfNull(store);
        _options = options ?? new ClipIngestOptions();
        _options.Validate();
        if (backbone.RowShape.Count != 3 || backbone.RowShape[0] is not (1 or 3))
            throw new ArgumentException($"The backbone '{backbone.Name}' takes [{string.Join("x", backbone.RowShape)}], not image frames [1|3, H, W].");
        if (store.FeatureSize != backbone.OutputSize)
            throw new ArgumentException($"The feature store holds {store.FeatureSize} features per frame; the backbone gives {backbone.OutputSize}.");
        if (teacher is not null && teacher.RowSize != backbone.OutputSize && teacher.RowSize != backbone.RowSize)
            throw new ArgumentException($"The teacher '{teacher.Name}' takes rows of {teacher.RowSize} values; expected the backbone's {backbone.OutputSize} features or its {backbone.RowSize}-value frames.");
        _folder = dataFolder;
        _backbone = backbone;
        _format = FrameFormat.FromRowShape(backbone.RowShape);
        _store = store;
        _teacher = teacher;
        _time = time ?? TimeProvider.System;
        _log = log;
    }

    /// <summary>Looks at the data folder once and ingests every complete clip not stored yet.</summary>
    public IngestReport ScanOnce(CancellationToken cancellationToken = default)
    {
        int clips = 0, duplicates = 0, waiting = 0, failed = 0;
        long frames = 0, sidecar = 0, teacher = 0, considered = 0, agreed = 0, checkedCount = 0;
        if (!Directory.Exists(_folder))
        {
            _log?.Invoke($"ingest: data folder '{_folder}' does not exist (yet)");
            return new IngestReport(0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
        }
        var now = _time.GetUtcNow();
        var present = new HashSet<string>(StringComparer.Ordinal);
        foreach (var path in Candidates())
        {
            cancellationToken.ThrowIfCancellationRequested();
            present.Add(path);
            string? signature = Signature(path);
            if (signature is null) continue;
            if (_done.TryGetValue(path, out var handled) && handled == signature) continue;
            if (!_pending.TryGetValue(path, out var seen) || seen.Signature != signature)
            {
                _pending[path] = (signature, now);
                if (_options.StableAfter > TimeSpan.Zero) { waiting++; continue; }
                seen = (signature, now);
            }
            if (now - seen.Since < _options.StableAfter) { waiting++; continue; }
            _pending.Remove(path);
            string hash;
            try
            {
                hash = ContentHash(path);
            }
            catch (IOException e)
            {
                _log?.Invoke($"ingest: cannot read '{path}': {e.Message}");
                waiting++;
                continue;
            }
            if (_store.HasSeen(hash))
            {
                _done[path] = signature;
                duplicates++;
                continue;
            }
            try
            {
                var result = Ingest(path, hash, cancellationToken);
                clips++;
                frames += result.Frames;
                sidecar += result.Sidecar;
                teacher += result.Teacher;
                considered += result.Considered;
                agreed += result.Agreed;
                checkedCount += result.Checked;
                _log?.Invoke($"ingest: {Path.GetFileName(path)}: {result.Frames} frames, {result.Sidecar} labelled by its sidecar, {result.Teacher} of {result.Considered} unlabelled by the teacher");
            }
            catch (Exception e) when (e is FrameDecodeException or ClipLabelsException or OnnxModelException or IOException or UnauthorizedAccessException)
            {
                failed++;
                _log?.Invoke($"ingest: skipped '{path}': {e.Message}");
            }
            _done[path] = signature;
        }
        foreach (var gone in _pending.Keys.Where(p => !present.Contains(p)).ToList()) _pending.Remove(gone);
        foreach (var gone in _done.Keys.Where(p => !present.Contains(p)).ToList()) _done.Remove(gone);
        return new IngestReport(clips, duplicates, waiting, failed, frames, sidecar, teacher, considered, agreed, checkedCount);
    }

    /// <summary>Runs <see cref="ScanOnce"/> every <paramref name="interval"/> until cancelled.</summary>
    public async Task WatchAsync(TimeSpan interval, Action<IngestReport>? onScan = null, CancellationToken cancellationToken = default)
    {
        using var timer = new PeriodicTimer(interval, _time);
        do
        {
            var report = await Task.Run(() => ScanOnce(cancellationToken), cancellationToken).ConfigureAwait(false);
            onScan?.Invoke(report);
        }
        while (await timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false));
    }

    private IEnumerable<string> Candidates()
    {
        foreach (var entry in Directory.EnumerateFileSystemEntries(_folder).Order(StringComparer.Ordinal))
        {
            string name = Path.GetFileName(entry);
            if (name.StartsWith('.') || name.EndsWith(".part", StringComparison.OrdinalIgnoreCase) || name.EndsWith(".tmp", StringComparison.OrdinalIgnoreCase)
                || name.EndsWith(".partial", StringComparison.OrdinalIgnoreCase))
                continue;
            if (Directory.Exists(entry)) yield return entry;
            else if (ClipIngestOptions.VideoExtensions.Contains(Path.GetExtension(name).ToLowerInvariant())) yield return entry;
        }
    }

    private static IEnumerable<string> Images(string folder) =>
        Directory.EnumerateFiles(folder).Where(f => ClipIngestOptions.ImageExtensions.Contains(Path.GetExtension(f).ToLowerInvariant()) && !Path.GetFileName(f).StartsWith('.'))
            .Order(StringComparer.Ordinal);

    /// <summary>What changes while a clip is written: size and time stamps (and the sidecar's); null when it vanished.</summary>
    private static string? Signature(string path)
    {
        try
        {
            var sb = new StringBuilder();
            if (Directory.Exists(path))
            {
                foreach (var f in Directory.EnumerateFiles(path).Order(StringComparer.Ordinal))
                {
                    var fi = new FileInfo(f);
                    sb.Append(fi.Name).Append(':').Append(fi.Length).Append(':').Append(fi.LastWriteTimeUtc.Ticks).Append(';');
                }
                return sb.Length == 0 ? null : sb.ToString();
            }
            var info = new FileInfo(path);
            if (!info.Exists || info.Length == 0) return null;
            sb.Append(info.Length).Append(':').Append(info.LastWriteTimeUtc.Ticks);
            var labels = new FileInfo(ClipLabels.SidecarOf(path));
            if (labels.Exists) sb.Append(';').Append(labels.Length).Append(':').Append(labels.LastWriteTimeUtc.Ticks);
            return sb.ToString();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>SHA-256 of a video's bytes, or of an image folder's names and bytes in name order (hex, lower case).</summary>
    public static string ContentHash(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        if (Directory.Exists(path))
        {
            foreach (var f in Images(path))
            {
                hash.AppendData(Encoding.UTF8.GetBytes(Path.GetFileName(f) + "\0"));
                hash.AppendData(File.ReadAllBytes(f));
            }
        }
        else
        {
            using var stream = File.OpenRead(path);
            var buffer = new byte[1 << 16];
            int read;
            while ((read = stream.Read(buffer)) > 0) hash.AppendData(buffer, 0, read);
        }
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    private sealed record ClipResult(int Frames, int Sidecar, int Teacher, int Considered, int Agreed, int Checked);

    private ClipResult Ingest(string path, string hash, CancellationToken cancellationToken)
    {
        string sidecarPath = ClipLabels.SidecarOf(path);
        var labels = File.Exists(sidecarPath) ? ClipLabels.Load(sidecarPath, _options.ClassCount) : null;
        bool folder = Directory.Exists(path);
        double? nativeFps = null;
        if (!folder && labels is not null && (labels.ByTime ? _options.SampleRate is null : _options.SampleRate is not null))
            nativeFps = VideoProbe.FrameRate(path, _options.FfmpegPath);

        int f = _backbone.OutputSize, row = _backbone.RowSize, batch = Math.Max(1, _backbone.BatchSize);
        var features = new List<float[]>();
        var labelList = new List<int>();
        var sourceList = new List<LabelSource>();
        var frameBatch = new float[batch * row];
        var sidecarBatch = new int[batch];
        int pending = 0, total = 0, teacherKept = 0, considered = 0, agreed = 0, checkedCount = 0;

        void Flush()
        {
            if (pending == 0) return;
            var output = new float[pending * f];
            _backbone.Run(frameBatch.AsSpan(0, pending * row), pending, output);
            int[]? predicted = null;
            float[]? confidence = null;
            if (_teacher is not null) (predicted, confidence) = Teach(frameBatch.AsSpan(0, pending * row), output, pending);
            for (int j = 0; j < pending; j++)
            {
                features.Add(output.AsSpan(j * f, f).ToArray());
                int label = sidecarBatch[j];
                var source = label >= 0 ? LabelSource.Sidecar : LabelSource.None;
                if (predicted is not null)
                {
                    if (label >= 0)
                    {
                        checkedCount++;
                        if (predicted[j] == label) agreed++;
                    }
                    else
                    {
                        considered++;
                        if (confidence![j] >= _options.TeacherThreshold && predicted[j] < _options.ClassCount)
                        {
                            label = predicted[j];
                            source = LabelSource.Teacher;
                            teacherKept++;
                        }
                    }
                }
                labelList.Add(label);
                sourceList.Add(source);
            }
            pending = 0;
        }

        IEnumerable<float[]> frames;
        if (folder)
        {
            var files = Images(path).ToList();
            frames = FolderFrames(files);
        }
        else
        {
            frames = VideoFrames.Read(path, _format, new VideoOptions
            {
                FfmpegPath = _options.FfmpegPath, MaxFrames = _options.MaxFramesPerClip,
                SampleEvery = _options.SampleRate is null ? _options.SampleEvery : 1, FramesPerSecond = _options.SampleRate,
            }, cancellationToken);
        }
        foreach (var frame in frames)
        {
            cancellationToken.ThrowIfCancellationRequested();
            int j = total++;
            long? frameIndex = null;
            double? time = null;
            if (_options.SampleRate is { } rate)
            {
                time = j / rate;
                if (nativeFps is { } fps) frameIndex = (long)Math.Round(time.Value * fps);
            }
            else
            {
                frameIndex = (long)j * _options.SampleEvery;
                if (nativeFps is { } fps) time = frameIndex.Value / fps;
            }
            sidecarBatch[pending] = labels?.For(frameIndex, time, Path.GetFileName(path)) ?? -1;
            frame.CopyTo(frameBatch.AsSpan(pending * row, row));
            if (++pending == batch) Flush();
            if (total >= _options.MaxFramesPerClip) break;
        }
        Flush();

        var all = new float[features.Count * f];
        for (int i = 0; i < features.Count; i++) features[i].CopyTo(all.AsSpan(i * f, f));
        _store.Add(hash, Path.GetFileName(path), all, [.. labelList], [.. sourceList]);
        int sidecarCount = sourceList.Count(s => s == LabelSource.Sidecar);
        return new ClipResult(total, sidecarCount, teacherKept, considered, agreed, checkedCount);

        IEnumerable<float[]> FolderFrames(List<string> files)
        {
            for (int i = 0; i < files.Count; i += _options.SampleEvery)
            {
                var frame = new float[_format.Size];
                ImageFrames.Load(files[i], _format, frame);
                yield return frame;
            }
        }
    }

    /// <summary>The teacher's class and softmax confidence per frame (its input: the features, or the frames).</summary>
    private (int[] Class, float[] Confidence) Teach(ReadOnlySpan<float> frames, float[] features, int n)
    {
        var teacher = _teacher!;
        var scores = teacher.RowSize == _backbone.OutputSize ? teacher.Run(features, n) : teacher.Run(frames, n);
        int k = teacher.OutputSize;
        var classes = new int[n];
        var confidence = new float[n];
        for (int i = 0; i < n; i++)
        {
            var s = scores.AsSpan(i * k, k);
            // Probabilities when the row already is a distribution (an exported head's 'probabilities'), else softmax of logits.
            float sum = 0, max = float.NegativeInfinity;
            bool probabilities = true;
            foreach (var v in s)
            {
                sum += v;
                max = Math.Max(max, v);
                if (v < 0 || v > 1) probabilities = false;
            }
            probabilities &= Math.Abs(sum - 1) < 1e-3;
            int best = 0;
            for (int c = 1; c < k; c++) if (s[c] > s[best]) best = c;
            float conf;
            if (probabilities) conf = s[best];
            else
            {
                double z = 0;
                foreach (var v in s) z += Math.Exp(v - max);
                conf = (float)(1 / z);
            }
            classes[i] = best;
            confidence[i] = conf;
        }
        return (classes, confidence);
    }
}

/// <summary>Reads a video's frame rate with ffprobe (needed only when labels and sampling use different keys).</summary>
public static class VideoProbe
{
    /// <summary>The video stream's average frame rate.</summary>
    public static double FrameRate(string path, string ffmpegPath = "ffmpeg")
    {
        string ffprobe = ffmpegPath == "ffmpeg" ? "ffprobe" : Path.Combine(Path.GetDirectoryName(ffmpegPath) ?? "", "ffprobe");
        var start = new ProcessStartInfo(ffprobe) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=avg_frame_rate", "-of", "csv=p=0", path }) start.ArgumentList.Add(a);
        try
        {
            using var process = Process.Start(start) ?? throw new FrameDecodeException($"ffprobe ('{ffprobe}') did not start.");
            string text = process.StandardOutput.ReadToEnd().Trim();
            process.WaitForExit();
            var parts = text.Split('/');
            if (process.ExitCode == 0 && parts.Length is 1 or 2
                && double.TryParse(parts[0], NumberStyles.Float, CultureInfo.InvariantCulture, out double num)
                && (parts.Length == 1 ? 1 : double.Parse(parts[1], NumberStyles.Float, CultureInfo.InvariantCulture)) is var den && num > 0 && den > 0)
                return num / den;
            throw new FrameDecodeException($"Video '{path}': ffprobe gave no frame rate ('{text}'); label it by the key its sampling uses (time with SampleRate, frame otherwise).");
        }
        catch (Win32Exception e)
        {
            throw new FrameDecodeException($"Video '{path}' needs ffprobe (package ffmpeg) to map its labels onto sampled frames: {e.Message}", e);
        }
    }
}
