using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;

namespace FleetLearn.Perception.Ingest;

/// <summary>Where a stored frame's label came from.</summary>
public enum LabelSource : byte
{
    /// <summary>No label: kept for evaluation of agreement, never trained on.</summary>
    None = 0,

    /// <summary>The clip's sidecar annotation (a labelling campaign, a driver-tagged event).</summary>
    Sidecar = 1,

    /// <summary>A teacher model's prediction above the confidence threshold.</summary>
    Teacher = 2,
}

/// <summary>One ingested clip's frames: features, labels (−1: none) and where each label came from.</summary>
public sealed record StoredClip(string Hash, string Source, DateTimeOffset IngestedAt, int FeatureSize, float[] Features, int[] Labels, LabelSource[] LabelSources)
{
    /// <summary>Frames in the clip.</summary>
    public int Count => Labels.Length;
}

/// <summary>What the store holds.</summary>
public sealed record FeatureStoreStats(int Clips, long Frames, long Labelled, long Bytes);

/// <summary>
/// The vehicle's feature store: one file per ingested clip (its frames' backbone features and labels), named by the
/// clip's content hash, bounded by a disk quota and an age limit (oldest clips evicted first).
/// </summary>
/// <remarks>
/// <para>Why one file per clip: a clip is the unit of ingest, dedupe and eviction. A clip is written to
/// <c>{hash}.tmp</c>, flushed to disk, then renamed to <c>{hash}.clip</c> (rename is atomic on POSIX file systems): a
/// kill -9 mid-ingest leaves at most a <c>.tmp</c>, deleted at the next open, and never a half-written clip. Every file
/// ends with the SHA-256 of its bytes, checked when read; a file that fails it (a disk fault) is dropped with a log line.
/// Eviction deletes whole files. The clip hashes ever stored are appended to <c>ingested.txt</c>, so a clip that was
/// evicted but still lies in the recorder's folder is not ingested again.</para>
/// <para>File layout (little-endian): <c>"FLCS"</c>, u16 version 1, u16 0, i32 F, 32 bytes SHA-256 of the backbone
/// identity, 32 bytes clip hash, i64 ingest time (Unix ms), i32 frames N, u16 L + L bytes UTF-8 source name; N × (i32
/// label, u8 label source, F × f32); 32 bytes SHA-256 of everything before.</para>
/// <para>One process opens a store at a time (a lock file); not thread-safe.</para>
/// </remarks>
public sealed class ClipFeatureStore : IDisposable
{
    private const ushort Version = 1;
    private const string ClipExtension = ".clip", TempExtension = ".tmp", SeenFile = "ingested.txt", LockFile = ".lock";

    private readonly byte[] _identity;
    private readonly TimeProvider _time;
    private readonly Action<string>? _log;
    private readonly Dictionary<string, (DateTimeOffset IngestedAt, long Bytes, int Frames, int Labelled)> _clips = new(StringComparer.Ordinal);
    private readonly HashSet<string> _seen = new(StringComparer.Ordinal);
    private readonly FileStream _lock;
    private bool _disposed;

    private ClipFeatureStore(string folder, byte[] identity, int featureSize, long quotaBytes, TimeSpan? maxAge, TimeProvider time, Action<string>? log, FileStream lockFile)
    {
        Folder = folder;
        _identity = identity;
        FeatureSize = featureSize;
        QuotaBytes = quotaBytes;
        MaxAge = maxAge;
        _time = time;
        _log = log;
        _lock = lockFile;
    }

    /// <summary>The store's folder.</summary>
    public string Folder { get; }

    /// <summary>Features per frame.</summary>
    public int FeatureSize { get; }

    /// <summary>Most bytes the clip files may take; the oldest clips are evicted beyond it.</summary>
    public long QuotaBytes { get; }

    /// <summary>Clips older than this are evicted; null: no age limit.</summary>
    public TimeSpan? MaxAge { get; }

    /// <summary>Clips evicted since the store was opened.</summary>
    public int Evicted { get; private set; }

    /// <summary>Unfinished (<c>.tmp</c>) or corrupt files removed at open.</summary>
    public int Repaired { get; private set; }

    /// <summary>Opens (or creates) a store for one backbone.</summary>
    /// <param name="folder">The store's folder.</param>
    /// <param name="backboneIdentity">Identifies the backbone and preprocessing (hashed); clips of another backbone are dropped.</param>
    /// <param name="featureSize">Features per frame.</param>
    /// <param name="quotaBytes">Disk quota of the clip files.</param>
    /// <param name="maxAge">Age limit of a clip, or null.</param>
    /// <param name="time">Clock of the ingest times and the age limit.</param>
    /// <param name="log">Receives a line per repair, drop and eviction.</param>
    public static ClipFeatureStore Open(string folder, string backboneIdentity, int featureSize, long quotaBytes, TimeSpan? maxAge = null,
        TimeProvider? time = null, Action<string>? log = null)
    {
        ArgumentNullException.ThrowIfNull(folder);
        ArgumentNullException.ThrowIfNull(backboneIdentity);
        ArgumentOutOfRangeException.ThrowIfLessThan(featureSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(quotaBytes, 1);
        if (maxAge is { } age && age <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(maxAge), age, "The age limit must be positive.");
        Directory.CreateDirectory(folder);
        FileStream lockFile;
        try
        {
            lockFile = new FileStream(Path.Combine(folder, LockFile), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException e)
        {
            throw new IOException($"Feature store '{folder}' is in use by another process ({e.Message}).", e);
        }
        var store = new ClipFeatureStore(folder, SHA256.HashData(Encoding.UTF8.GetBytes(backboneIdentity)), featureSize, quotaBytes, maxAge, time ?? TimeProvider.System, log, lockFile);
        try
        {
            store.Load();
            store.Evict();
            return store;
        }
        catch
        {
            store.Dispose();
            throw;
        }
    }

    /// <summary>What the store holds now.</summary>
    public FeatureStoreStats Stats => new(_clips.Count, _clips.Values.Sum(c => (long)c.Frames), _clips.Values.Sum(c => (long)c.Labelled), _clips.Values.Sum(c => c.Bytes));

    /// <summary>The hashes of the clips stored now.</summary>
    public IReadOnlyCollection<string> Clips => _clips.Keys;

    /// <summary>True when a clip of this content hash was ever stored (even if since evicted).</summary>
    public bool HasSeen(string hash) => _seen.Contains(hash);

    /// <summary>True when a clip of this content hash is stored now.</summary>
    public bool Contains(string hash) => _clips.ContainsKey(hash);

    /// <summary>
    /// Stores a clip atomically (temporary file, flush to disk, rename), then evicts to the quota and age limit. A clip
    /// already stored or seen is not stored again; returns false then.
    /// </summary>
    public bool Add(string hash, string source, ReadOnlySpan<float> features, ReadOnlySpan<int> labels, ReadOnlySpan<LabelSource> sources)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        CheckHash(hash);
        ArgumentNullException.ThrowIfNull(source);
        int n = labels.Length;
        if (sources.Length != n) throw new ArgumentException($"Expected {n} label sources; got {sources.Length}.", nameof(sources));
        if (features.Length != (long)n * FeatureSize) throw new ArgumentException($"{n} frames need {(long)n * FeatureSize} features; got {features.Length}.", nameof(features));
        foreach (var f in features)
        {
            if (!float.IsFinite(f)) throw new ArgumentException("Features must be finite; the backbone produced NaN or infinity.", nameof(features));
        }
        for (int i = 0; i < n; i++)
        {
            if (labels[i] < -1 || (labels[i] == -1) != (sources[i] == LabelSource.None))
                throw new ArgumentException($"Frame {i}: label {labels[i]} with source {sources[i]} (labels are ≥ 0 with a source, or −1 with none).", nameof(labels));
        }
        if (_seen.Contains(hash)) return false;
        var now = _time.GetUtcNow();
        var name = Encoding.UTF8.GetBytes(source.Length > 1024 ? source[..1024] : source);
        long size = 4 + 2 + 2 + 4 + 32 + 32 + 8 + 4 + 2 + name.Length + (long)n * (5 + 4 * FeatureSize) + 32;
        string temp = Path.Combine(Folder, hash + TempExtension), final = Path.Combine(Folder, hash + ClipExtension);
        using (var file = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16))
        using (var hasher = IncrementalHash.CreateHash(HashAlgorithmName.SHA256))
        {
            var header = new byte[4 + 2 + 2 + 4 + 32 + 32 + 8 + 4 + 2];
            "FLCS"u8.CopyTo(header);
            BinaryPrimitives.WriteUInt16LittleEndian(header.AsSpan(4), Version);
            BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(8), FeatureSize);
            _identity.CopyTo(header.AsSpan(12));
            Convert.FromHexString(hash).CopyTo(header.AsSpan(44));
            BinaryPrimitives.WriteInt64LittleEndian(header.AsSpan(76), now.ToUnixTimeMilliseconds());
            BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(84), n);
            BinaryPrimitives.WriteUInt16LittleEndian(header.AsSpan(88), (ushort)name.Length);
            Write(file, hasher, header);
            Write(file, hasher, name);
            var row = new byte[5 + 4 * FeatureSize];
            for (int i = 0; i < n; i++)
            {
                BinaryPrimitives.WriteInt32LittleEndian(row, labels[i]);
                row[4] = (byte)sources[i];
                MemoryMarshal.AsBytes(features.Slice(i * FeatureSize, FeatureSize)).CopyTo(row.AsSpan(5));
                Write(file, hasher, row);
            }
            file.Write(hasher.GetHashAndReset());
            file.Flush(flushToDisk: true);
        }
        File.Move(temp, final, overwrite: true);
        int labelled = 0;
        foreach (var l in labels) if (l >= 0) labelled++;
        _clips[hash] = (now, size, n, labelled);
        MarkSeen(hash);
        Evict();
        return true;
    }

    /// <summary>Reads one stored clip; null when it is gone or fails its checksum (then it is dropped).</summary>
    public StoredClip? Read(string hash)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        CheckHash(hash);
        string path = Path.Combine(Folder, hash + ClipExtension);
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (FileNotFoundException)
        {
            _clips.Remove(hash);
            return null;
        }
        var clip = Parse(bytes, out string? problem);
        if (clip is null || clip.Hash != hash)
        {
            _log?.Invoke($"feature store {Folder}: dropped {hash}{ClipExtension} ({problem ?? "its name and content hash differ"})");
            File.Delete(path);
            _clips.Remove(hash);
            return null;
        }
        return clip;
    }

    /// <summary>Every stored clip, oldest first.</summary>
    public IEnumerable<StoredClip> ReadAll()
    {
        foreach (var hash in _clips.OrderBy(kv => kv.Value.IngestedAt).ThenBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => kv.Key).ToList())
        {
            if (Read(hash) is { } clip) yield return clip;
        }
    }

    /// <summary>Deletes clips past the age limit, then the oldest clips until the store is within its quota.</summary>
    public int Evict()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        int before = Evicted;
        var now = _time.GetUtcNow();
        var order = _clips.OrderBy(kv => kv.Value.IngestedAt).ThenBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => (kv.Key, kv.Value.IngestedAt, kv.Value.Bytes)).ToList();
        long total = order.Sum(c => c.Bytes);
        foreach (var (hash, at, bytes) in order)
        {
            bool old = MaxAge is { } age && now - at > age;
            if (!old && total <= QuotaBytes) break;
            File.Delete(Path.Combine(Folder, hash + ClipExtension));
            _clips.Remove(hash);
            total -= bytes;
            Evicted++;
            _log?.Invoke($"feature store {Folder}: evicted clip {hash[..12]} ({(old ? "past the age limit" : "over the disk quota")})");
        }
        return Evicted - before;
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _lock.Dispose();
    }

    /// <summary>The content hash naming a clip: hex SHA-256, lower case.</summary>
    public static bool IsHash(string hash) => hash.Length == 64 && hash.All(c => c is >= '0' and <= '9' or >= 'a' and <= 'f');

    private static void CheckHash(string hash)
    {
        ArgumentNullException.ThrowIfNull(hash);
        if (!IsHash(hash)) throw new ArgumentException($"'{hash}' is not a clip hash (64 lower-case hex digits).", nameof(hash));
    }

    private static void Write(FileStream file, IncrementalHash hasher, ReadOnlySpan<byte> data)
    {
        hasher.AppendData(data);
        file.Write(data);
    }

    private void MarkSeen(string hash)
    {
        if (!_seen.Add(hash)) return;
        using var seen = new FileStream(Path.Combine(Folder, SeenFile), FileMode.Append, FileAccess.Write, FileShare.Read);
        seen.Write(Encoding.ASCII.GetBytes(hash + "\n"));
        seen.Flush(flushToDisk: true);
    }

    private void Load()
    {
        string seenPath = Path.Combine(Folder, SeenFile);
        if (File.Exists(seenPath))
        {
            foreach (var line in File.ReadAllLines(seenPath))
            {
                if (IsHash(line)) _seen.Add(line); // a torn last line is skipped: that clip's file decides below
            }
        }
        foreach (var temp in Directory.EnumerateFiles(Folder, "*" + TempExtension))
        {
            File.Delete(temp);
            Repaired++;
            _log?.Invoke($"feature store {Folder}: removed {Path.GetFileName(temp)}, a clip whose ingest did not finish");
        }
        foreach (var path in Directory.EnumerateFiles(Folder, "*" + ClipExtension))
        {
            string hash = Path.GetFileNameWithoutExtension(path);
            var bytes = File.ReadAllBytes(path);
            string? problem = "its name is not a clip hash";
            var clip = IsHash(hash) ? Parse(bytes, out problem) : null;
            if (clip is not null && clip.Hash != hash) problem = "its name and content hash differ";
            if (problem is not null)
            {
                File.Delete(path);
                Repaired++;
                _log?.Invoke($"feature store {Folder}: dropped {Path.GetFileName(path)} ({problem})");
                continue;
            }
            int labelled = clip!.Labels.Count(l => l >= 0);
            _clips[hash] = (clip.IngestedAt, bytes.Length, clip.Count, labelled);
            if (_seen.Add(hash)) File.AppendAllText(seenPath, hash + "\n");
        }
    }

    private StoredClip? Parse(byte[] bytes, out string? problem)
    {
        const int headerSize = 4 + 2 + 2 + 4 + 32 + 32 + 8 + 4 + 2;
        problem = null;
        if (bytes.Length < headerSize + 32) { problem = "too short"; return null; }
        var body = bytes.AsSpan(0, bytes.Length - 32);
        if (!SHA256.HashData(body).AsSpan().SequenceEqual(bytes.AsSpan(bytes.Length - 32))) { problem = "checksum mismatch"; return null; }
        if (!bytes.AsSpan(0, 4).SequenceEqual("FLCS"u8) || BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(4)) != Version) { problem = "not a clip file"; return null; }
        if (BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(8)) != FeatureSize || !bytes.AsSpan(12, 32).SequenceEqual(_identity)) { problem = "another backbone's features"; return null; }
        string hash = Convert.ToHexStringLower(bytes.AsSpan(44, 32));
        var at = DateTimeOffset.FromUnixTimeMilliseconds(BinaryPrimitives.ReadInt64LittleEndian(bytes.AsSpan(76)));
        int n = BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(84));
        int nameLength = BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(88));
        long expected = headerSize + nameLength + (long)n * (5 + 4 * FeatureSize) + 32;
        if (n < 0 || expected != bytes.Length) { problem = "length does not match its frame count"; return null; }
        string source = Encoding.UTF8.GetString(bytes, headerSize, nameLength);
        var features = new float[n * FeatureSize];
        var labels = new int[n];
        var sources = new LabelSource[n];
        int offset = headerSize + nameLength;
        for (int i = 0; i < n; i++)
        {
            labels[i] = BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(offset));
            sources[i] = (LabelSource)bytes[offset + 4];
            MemoryMarshal.Cast<byte, float>(bytes.AsSpan(offset + 5, 4 * FeatureSize)).CopyTo(features.AsSpan(i * FeatureSize, FeatureSize));
            offset += 5 + 4 * FeatureSize;
        }
        return new StoredClip(hash, source, at, FeatureSize, features, labels, sources);
    }
}
