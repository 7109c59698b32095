using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;

namespace FleetLearn.Core.Model;

/// <summary>Thrown when a checkpoint is malformed, truncated, tampered with or of another version.</summary>
public sealed class CheckpointFormatException(string message) : Exception(message);

/// <summary>
/// A model's parameters with its architecture, version and free-form metadata, in the
/// <c>model.ckpt</c> format that every FleetLearn command reads.
/// </summary>
/// <remarks>
/// Layout (all integers little-endian):
/// <code>
/// offset  size  field
/// 0       4     magic "FLCK"
/// 4       2     format version = 1
/// 6       2     reserved, 0
/// 8       4     n = length of the model spec text (UTF-8, ≤ 1024), e.g. "784-200-200-10"
/// 12      n     model spec text
/// …       8     model version (global round that produced it; 0 for a freshly trained model)
/// …       4     m = length of the metadata (UTF-8 JSON object, ≤ 64 KiB)
/// …       m     metadata
/// …       4     P = parameter count (must equal the spec's)
/// …       4·P   parameters, IEEE-754 float32, in the flat layout of <see cref="ModelSpec"/>
/// …       32    SHA-256 of every byte above
/// </code>
/// </remarks>
public sealed record Checkpoint(ModelSpec Spec, long Version, float[] Parameters, string MetadataJson = "{}")
{
    /// <summary>The 4 magic bytes, "FLCK".</summary>
    public static ReadOnlySpan<byte> Magic => "FLCK"u8;

    /// <summary>Current format version.</summary>
    public const ushort FormatVersion = 1;

    private const int MaxSpecBytes = 1024;
    private const int MaxMetadataBytes = 64 * 1024;

    /// <summary>
    /// Hex SHA-256 of <paramref name="parameters"/> as little-endian float32s: the model's identity in ONNX metadata, round
    /// records and <c>simulate --json</c>'s <c>model_sha256</c>.
    /// </summary>
    public static string ParameterHash(ReadOnlySpan<float> parameters)
    {
        if (BitConverter.IsLittleEndian) return Convert.ToHexStringLower(SHA256.HashData(MemoryMarshal.AsBytes(parameters)));
        var bytes = new byte[parameters.Length * 4];
        for (int i = 0; i < parameters.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(4 * i), parameters[i]);
        return Convert.ToHexStringLower(SHA256.HashData(bytes));
    }

    /// <summary>Serializes to a byte array.</summary>
    public byte[] ToBytes()
    {
        if (Parameters.Length != Spec.ParameterCount)
            throw new InvalidOperationException($"Checkpoint of {Spec} must hold {Spec.ParameterCount} parameters, not {Parameters.Length}.");
        var spec = Encoding.UTF8.GetBytes(Spec.ToString());
        var meta = Encoding.UTF8.GetBytes(MetadataJson);
        if (meta.Length > MaxMetadataBytes)
            throw new InvalidOperationException($"Checkpoint metadata is {meta.Length} bytes; the limit is {MaxMetadataBytes}.");
        int total = 12 + spec.Length + 8 + 4 + meta.Length + 4 + 4 * Parameters.Length + 32;
        var bytes = new byte[total];
        var span = bytes.AsSpan();
        Magic.CopyTo(span);
        BinaryPrimitives.WriteUInt16LittleEndian(span[4..], FormatVersion);
        BinaryPrimitives.WriteInt32LittleEndian(span[8..], spec.Length);
        int at = 12;
        spec.CopyTo(span[at..]);
        at += spec.Length;
        BinaryPrimitives.WriteInt64LittleEndian(span[at..], Version);
        at += 8;
        BinaryPrimitives.WriteInt32LittleEndian(span[at..], meta.Length);
        at += 4;
        meta.CopyTo(span[at..]);
        at += meta.Length;
        BinaryPrimitives.WriteInt32LittleEndian(span[at..], Parameters.Length);
        at += 4;
        var floats = MemoryMarshal.AsBytes(Parameters.AsSpan());
        if (BitConverter.IsLittleEndian)
        {
            floats.CopyTo(span[at..]);
        }
        else
        {
            for (int i = 0; i < Parameters.Length; i++)
                BinaryPrimitives.WriteSingleLittleEndian(span[(at + 4 * i)..], Parameters[i]);
        }
        at += floats.Length;
        SHA256.HashData(span[..at], span[at..]);
        return bytes;
    }

    /// <summary>Parses and verifies a checkpoint; every malformed input gives a <see cref="CheckpointFormatException"/>.</summary>
    public static Checkpoint FromBytes(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length < 12 + 8 + 4 + 4 + 32)
            throw new CheckpointFormatException($"A checkpoint is at least 60 bytes; this one has {bytes.Length}.");
        if (!bytes[..4].SequenceEqual(Magic))
            throw new CheckpointFormatException("Not a FleetLearn checkpoint (magic bytes are not 'FLCK').");
        ushort version = BinaryPrimitives.ReadUInt16LittleEndian(bytes[4..]);
        if (version != FormatVersion)
            throw new CheckpointFormatException($"Checkpoint format version {version} is not supported (this build reads version {FormatVersion}).");
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(bytes[..^32], hash);
        if (!hash.SequenceEqual(bytes[^32..]))
            throw new CheckpointFormatException("Checkpoint hash mismatch: the file is truncated or corrupted.");

        int specLength = BinaryPrimitives.ReadInt32LittleEndian(bytes[8..]);
        if (specLength <= 0 || specLength > MaxSpecBytes || 12 + specLength + 12 > bytes.Length - 32)
            throw new CheckpointFormatException($"Model spec length {specLength} is invalid.");
        int at = 12;
        ModelSpec spec;
        try
        {
            spec = ModelSpec.Parse(Encoding.UTF8.GetString(bytes.Slice(at, specLength)));
        }
        catch (FormatException e)
        {
            throw new CheckpointFormatException($"Checkpoint model spec is invalid: {e.Message}");
        }
        at += specLength;
        long modelVersion = BinaryPrimitives.ReadInt64LittleEndian(bytes[at..]);
        at += 8;
        int metaLength = BinaryPrimitives.ReadInt32LittleEndian(bytes[at..]);
        at += 4;
        if (metaLength < 0 || metaLength > MaxMetadataBytes || at + metaLength + 4 > bytes.Length - 32)
            throw new CheckpointFormatException($"Metadata length {metaLength} is invalid.");
        string meta = Encoding.UTF8.GetString(bytes.Slice(at, metaLength));
        at += metaLength;
        int count = BinaryPrimitives.ReadInt32LittleEndian(bytes[at..]);
        at += 4;
        if (count != spec.ParameterCount)
            throw new CheckpointFormatException($"Checkpoint declares {count} parameters but model {spec} has {spec.ParameterCount}.");
        if ((long)at + 4L * count != bytes.Length - 32)
            throw new CheckpointFormatException($"Checkpoint size {bytes.Length} does not match {count} parameters.");
        var parameters = new float[count];
        for (int i = 0; i < count; i++)
        {
            float v = BinaryPrimitives.ReadSingleLittleEndian(bytes[(at + 4 * i)..]);
            if (!float.IsFinite(v))
                throw new CheckpointFormatException($"Parameter {i} is {v}; checkpoints hold finite values only.");
            parameters[i] = v;
        }
        return new Checkpoint(spec, modelVersion, parameters, meta);
    }

    /// <summary>Writes atomically (temporary file + rename) so a crash never leaves half a checkpoint.</summary>
    public void Save(string path)
    {
        var full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        var temp = full + ".tmp";
        try
        {
            using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
            {
                stream.Write(ToBytes());
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            File.Delete(temp); // a failed save leaves nothing behind
            throw;
        }
    }

    /// <summary>Reads and verifies a checkpoint file.</summary>
    public static Checkpoint Load(string path)
    {
        var info = new FileInfo(path);
        if (!info.Exists)
            throw new FileNotFoundException($"Checkpoint '{path}' does not exist.", path);
        if (info.Length > 1L << 31)
            throw new CheckpointFormatException($"Checkpoint '{path}' is {info.Length} bytes, over the 2 GiB limit.");
        try
        {
            return FromBytes(File.ReadAllBytes(path));
        }
        catch (CheckpointFormatException e)
        {
            throw new CheckpointFormatException($"{path}: {e.Message}");
        }
    }
}
