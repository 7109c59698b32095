using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;

namespace FleetLearn.Perception.Features;

/// <summary>The SHA-256 of a frame's content (with its kind), the key of the <see cref="FeatureCache"/>.</summary>
[StructLayout(LayoutKind.Sequential)]
public readonly record struct FrameKey(ulong A, ulong B, ulong C, ulong D)
{
    /// <summary>Key of raw bytes (an encoded image file, or the bytes of a float frame).</summary>
    public static FrameKey Of(ReadOnlySpan<byte> content)
    {
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(content, hash);
        return FromHash(hash);
    }

    /// <summary>Key of a float frame (its little-endian bytes).</summary>
    public static FrameKey Of(ReadOnlySpan<float> frame) => Of(MemoryMarshal.AsBytes(frame));

    internal static FrameKey FromHash(ReadOnlySpan<byte> hash) => new(
        BinaryPrimitives.ReadUInt64LittleEndian(hash), BinaryPrimitives.ReadUInt64LittleEndian(hash[8..]),
        BinaryPrimitives.ReadUInt64LittleEndian(hash[16..]), BinaryPrimitives.ReadUInt64LittleEndian(hash[24..]));

    internal void Write(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(destination, A);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[8..], B);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[16..], C);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[24..], D);
    }
}

/// <summary>
/// A vehicle's local store of extracted features and their labels, so each frame goes through the backbone once.
/// One append-only file per backbone (identity: model hash, tensor names, frame format), keyed by the frame's
/// content hash; the last record for a key wins (a relabelled frame appends a new record).
/// </summary>
/// <remarks>
/// <para>File layout (little-endian):</para>
/// <code>
/// header  "FLFC", u16 version = 1, u16 0, i32 F (feature width), 32 bytes SHA-256 of the backbone identity
/// record  32 bytes frame key, i32 label (−1: none), F × float32 features, 8 bytes: SHA-256 prefix of the record's bytes above
/// </code>
/// <para>A crash can only tear the last record: at open, records are read until the first one whose length or
/// checksum is wrong, and the file is cut there, so a lost write costs one re-extraction and never corrupts the
/// store. A file with a foreign header (another backbone, another version) is replaced. One process opens a store
/// at a time (the file is opened for exclusive writing). Not thread-safe.</para>
/// </remarks>
public sealed class FeatureCache : IDisposable
{
    private const int HeaderSize = 4 + 2 + 2 + 4 + 32, KeySize = 32, ChecksumSize = 8;
    private const ushort Version = 1;

    private readonly FileStream _file;
    private readonly Dictionary<FrameKey, (long Offset, int Label)> _index = [];
    private readonly byte[] _record;
    private bool _disposed;

    private FeatureCache(FileStream file, string path, int featureSize)
    {
        _file = file;
        Path = path;
        FeatureSize = featureSize;
        _record = new byte[RecordSize];
    }

    /// <summary>The store's file.</summary>
    public string Path { get; }

    /// <summary>Floats per feature row.</summary>
    public int FeatureSize { get; }

    /// <summary>Frames stored.</summary>
    public int Count => _index.Count;

    /// <summary>Bytes of a torn or corrupt tail cut at open (0 after a clean close).</summary>
    public long DroppedBytes { get; private set; }

    private int RecordSize => KeySize + 4 + 4 * FeatureSize + ChecksumSize;

    /// <summary>Opens (or creates) the store for one backbone in <paramref name="directory"/>.</summary>
    /// <param name="directory">Folder of the vehicle's feature stores.</param>
    /// <param name="backboneIdentity">Anything that identifies the backbone and its preprocessing (hashed).</param>
    /// <param name="featureSize">Features per frame.</param>
    /// <param name="log">Receives a line when a store is replaced or its tail repaired.</param>
    public static FeatureCache Open(string directory, string backboneIdentity, int featureSize, Action<string>? log = null)
    {
        ArgumentNullException.ThrowIfNull(directory);
        ArgumentNullException.ThrowIfNull(backboneIdentity);
        ArgumentOutOfRangeException.ThrowIfLessThan(featureSize, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(featureSize, 1 << 20);
        var id = SHA256.HashData(Encoding.UTF8.GetBytes(backboneIdentity));
        Directory.CreateDirectory(directory);
        string path = System.IO.Path.Combine(directory, $"{Convert.ToHexStringLower(id)[..16]}-{featureSize}.features");
        FileStream file;
        try
        {
            file = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.Read, 1 << 16);
        }
        catch (IOException e)
        {
            throw new IOException($"Feature store '{path}' is in use by another process ({e.Message}).", e);
        }
        try
        {
            var header = new byte[HeaderSize];
            bool valid = file.Length >= HeaderSize && file.ReadAtLeast(header, HeaderSize, throwOnEndOfStream: false) == HeaderSize
                && header.AsSpan(0, 4).SequenceEqual("FLFC"u8)
                && BinaryPrimitives.ReadUInt16LittleEndian(header.AsSpan(4)) == Version
                && BinaryPrimitives.ReadInt32LittleEndian(header.AsSpan(8)) == featureSize
                && header.AsSpan(12, 32).SequenceEqual(id);
            if (!valid)
            {
                if (file.Length > 0) log?.Invoke($"feature store {path}: header does not match this backbone or format; starting afresh");
                file.SetLength(0);
                "FLFC"u8.CopyTo(header);
                BinaryPrimitives.WriteUInt16LittleEndian(header.AsSpan(4), Version);
                BinaryPrimitives.WriteUInt16LittleEndian(header.AsSpan(6), 0);
                BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(8), featureSize);
                id.CopyTo(header.AsSpan(12));
                file.Position = 0;
                file.Write(header);
                file.Flush(flushToDisk: true);
            }
            var cache = new FeatureCache(file, path, featureSize);
            cache.DroppedBytes = cache.LoadIndex();
            if (cache.DroppedBytes > 0) log?.Invoke($"feature store {path}: cut a torn or corrupt tail of {cache.DroppedBytes} bytes");
            return cache;
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>Looks a frame up; on a hit copies its features and returns its label (−1: none).</summary>
    public bool TryGet(FrameKey key, Span<float> features, out int label)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (features.Length != FeatureSize) throw new ArgumentException($"Expected room for {FeatureSize} features; got {features.Length}.", nameof(features));
        if (!_index.TryGetValue(key, out var entry))
        {
            label = -1;
            return false;
        }
        RandomAccess.Read(_file.SafeFileHandle, MemoryMarshal.AsBytes(features), entry.Offset + KeySize + 4);
        label = entry.Label;
        return true;
    }

    /// <summary>True when the frame is stored.</summary>
    public bool Contains(FrameKey key) => _index.ContainsKey(key);

    /// <summary>Stores a frame's features and label (−1: none), replacing an earlier record for the same frame.</summary>
    public void Put(FrameKey key, ReadOnlySpan<float> features, int label = -1)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (features.Length != FeatureSize) throw new ArgumentException($"Expected {FeatureSize} features; got {features.Length}.", nameof(features));
        if (label < -1) throw new ArgumentOutOfRangeException(nameof(label), label, "Labels are ≥ 0, or −1 for none.");
        foreach (var f in features)
        {
            if (!float.IsFinite(f)) throw new ArgumentException("Features must be finite; the backbone produced NaN or infinity.", nameof(features));
        }
        var record = _record.AsSpan();
        key.Write(record);
        BinaryPrimitives.WriteInt32LittleEndian(record[KeySize..], label);
        MemoryMarshal.AsBytes(features).CopyTo(record[(KeySize + 4)..]);
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(record[..^ChecksumSize], hash);
        hash[..ChecksumSize].CopyTo(record[^ChecksumSize..]);
        long offset = _file.Length;
        _file.Position = offset;
        _file.Write(record);
        _index[key] = (offset, label);
    }

    /// <summary>Pushes buffered records to the operating system (and to disk with <paramref name="toDisk"/>).</summary>
    public void Flush(bool toDisk = false)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _file.Flush(toDisk);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _file.Flush(flushToDisk: true);
        _file.Dispose();
    }

    /// <summary>Reads every record, indexes the valid ones, cuts the file after the last valid one; returns the bytes cut.</summary>
    private long LoadIndex()
    {
        long length = _file.Length, offset = HeaderSize;
        var record = _record;
        Span<byte> hash = stackalloc byte[32];
        _file.Position = HeaderSize;
        while (offset + RecordSize <= length)
        {
            if (_file.ReadAtLeast(record, RecordSize, throwOnEndOfStream: false) != RecordSize) break;
            SHA256.HashData(record.AsSpan(0, RecordSize - ChecksumSize), hash);
            if (!hash[..ChecksumSize].SequenceEqual(record.AsSpan(RecordSize - ChecksumSize))) break;
            var key = FrameKey.FromHash(record.AsSpan(0, KeySize));
            _index[key] = (offset, BinaryPrimitives.ReadInt32LittleEndian(record.AsSpan(KeySize)));
            offset += RecordSize;
        }
        long dropped = length - offset;
        if (dropped > 0)
        {
            _file.SetLength(offset);
            _file.Flush(flushToDisk: true);
        }
        _file.Position = offset;
        return dropped;
    }
}
