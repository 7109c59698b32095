using System.Buffers.Binary;
using System.IO.Compression;

namespace FleetLearn.Perception.Datasets;

/// <summary>Thrown when an IDX file is malformed, truncated or of an unexpected type.</summary>
public sealed class IdxFormatException(string message) : Exception(message);

/// <summary>
/// Reader for the IDX format of (Fashion-)MNIST: big-endian header <c>00 00 type dims</c>, one
/// big-endian int32 per dimension, then the data. Gzip is detected from its magic bytes.
/// </summary>
public static class IdxReader
{
    /// <summary>Largest payload accepted (guards against corrupt headers asking for huge buffers).</summary>
    public const long MaxElements = 1L << 31;

    /// <summary>An unsigned-byte IDX tensor: its shape and data.</summary>
    public sealed record UByteTensor(int[] Shape, byte[] Data);

    /// <summary>Reads an IDX file (plain or gzip) of unsigned bytes.</summary>
    public static UByteTensor ReadUBytes(string path)
    {
        using var file = File.OpenRead(path);
        try
        {
            return ReadUBytes(file);
        }
        catch (IdxFormatException e)
        {
            throw new IdxFormatException($"{path}: {e.Message}");
        }
    }

    /// <summary>Reads IDX unsigned bytes from a stream (plain or gzip); malformed input gives <see cref="IdxFormatException"/>.</summary>
    public static UByteTensor ReadUBytes(Stream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        try
        {
            return ReadCore(stream);
        }
        catch (InvalidDataException e)
        {
            throw new IdxFormatException($"not a valid gzip stream ({e.Message}).");
        }
    }

    private static UByteTensor ReadCore(Stream stream)
    {
        Stream input = stream;
        var probe = new byte[2];
        var buffered = new BufferedStream(stream, 1 << 16);
        int got = buffered.ReadAtLeast(probe, 2, throwOnEndOfStream: false);
        var prefix = new MemoryStream(probe, 0, got);
        input = new ConcatStream(prefix, buffered);
        if (got == 2 && probe[0] == 0x1f && probe[1] == 0x8b)
            input = new GZipStream(input, CompressionMode.Decompress);

        Span<byte> header = stackalloc byte[4];
        ReadExactly(input, header, "header");
        if (header[0] != 0 || header[1] != 0)
            throw new IdxFormatException($"bad magic {header[0]:x2}{header[1]:x2}{header[2]:x2}{header[3]:x2}; an IDX file starts with two zero bytes.");
        if (header[2] != 0x08)
            throw new IdxFormatException($"element type 0x{header[2]:x2} is not unsigned byte (0x08).");
        int dims = header[3];
        if (dims is < 1 or > 4)
            throw new IdxFormatException($"{dims} dimensions; expected 1 to 4.");
        var shape = new int[dims];
        Span<byte> dimBytes = stackalloc byte[4];
        long count = 1;
        for (int d = 0; d < dims; d++)
        {
            ReadExactly(input, dimBytes, "dimension sizes");
            int size = BinaryPrimitives.ReadInt32BigEndian(dimBytes);
            if (size < 0)
                throw new IdxFormatException($"dimension {d} has negative size {size}.");
            shape[d] = size;
            count *= size;
            if (count > MaxElements)
                throw new IdxFormatException($"shape [{string.Join(", ", shape.Take(d + 1))}] exceeds the limit of {MaxElements} elements.");
        }
        var data = new byte[count];
        ReadExactly(input, data, $"data ({count} bytes expected)");
        return new UByteTensor(shape, data);
    }

    private static void ReadExactly(Stream input, Span<byte> buffer, string what)
    {
        int read = input.ReadAtLeast(buffer, buffer.Length, throwOnEndOfStream: false);
        if (read < buffer.Length)
            throw new IdxFormatException($"truncated while reading the {what}: got {read} of {buffer.Length} bytes.");
    }

    /// <summary>Reads the already-consumed probe bytes, then the rest of the stream.</summary>
    private sealed class ConcatStream(Stream first, Stream second) : Stream
    {
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));
        public override int Read(Span<byte> buffer)
        {
            int n = first.Read(buffer);
            return n > 0 ? n : second.Read(buffer);
        }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
