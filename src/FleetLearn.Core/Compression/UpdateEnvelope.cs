using System.Buffers.Binary;
using System.IO.Compression;

namespace FleetLearn.Core.Compression;

/// <summary>Header fields of an encoded plaintext update.</summary>
public sealed record UpdateEnvelopeHeader
{
    /// <summary>Round the update belongs to.</summary>
    public required ulong Round { get; init; }
    /// <summary>Sending vehicle.</summary>
    public required ulong Vehicle { get; init; }
    /// <summary>Unique id of this upload (a resend carries the same id, so it is harmless).</summary>
    public required Guid UpdateId { get; init; }
    /// <summary><see cref="CodecSpec.Fingerprint"/> of the codec that produced the body.</summary>
    public required uint CodecId { get; init; }
    /// <summary>Model parameters P.</summary>
    public required int Dimension { get; init; }
    /// <summary>Coordinates carried (after subsampling or top-k).</summary>
    public required int ValueCount { get; init; }
    /// <summary>Quantization bits, or 0 for float32 values.</summary>
    public required int Bits { get; init; }
    /// <summary>Quantization range r (0 for float32 values).</summary>
    public required float Range { get; init; }
    /// <summary>Aggregation weight (sample count, or 1 under DP).</summary>
    public required double Weight { get; init; }
    /// <summary>Whether the update's norm was within the clip norm (adaptive clipping's bit).</summary>
    public bool Unclipped { get; init; }
    /// <summary>Bytes of top-k indices (LEB128 gaps) at the start of the raw body; 0 for dense codecs.</summary>
    public int IndexBytes { get; init; }
    /// <summary>Lossless stage actually applied to the body (none when it did not pay).</summary>
    public LosslessKind Lossless { get; init; }
}

/// <summary>
/// The byte envelope of a plaintext update, version 1, little-endian:
/// <c>magic "FLUP" | version u8 | flags u8 (1 = unclipped, 2 = float32 values, 4 = top-k indices) | bits u8 | lossless u8 |
/// round u64 | vehicle u64 | update id [16] | codec id u32 | dimension u32 | value count u32 | index bytes u32 | body bytes u32 |
/// range f32 | weight f64 | body</c> (72-byte header). The raw body is <c>indices ‖ values</c>: LEB128 gaps of ascending top-k
/// indices, then b-bit levels packed LSB-first (<see cref="SecureAggregation.BitPacking"/>) or float32 values; the lossless
/// stage, when it pays, compresses the whole raw body. Decoding checks every field against the expected round and codec and
/// throws only <see cref="UpdateFormatException"/>.
/// </summary>
public static class UpdateEnvelope
{
    /// <summary>Current version.</summary>
    public const byte Version = 1;

    /// <summary>Header length in bytes.</summary>
    public const int HeaderBytes = 72;

    private static ReadOnlySpan<byte> Magic => "FLUP"u8;

    private const byte FlagUnclipped = 1, FlagFloat = 2, FlagIndices = 4;

    /// <summary>Builds the envelope around <paramref name="rawBody"/>, applying <paramref name="lossless"/> only when it makes the body smaller.</summary>
    public static byte[] Write(UpdateEnvelopeHeader header, ReadOnlySpan<byte> rawBody, LosslessKind lossless)
    {
        ArgumentNullException.ThrowIfNull(header);
        byte[]? compressed = lossless == LosslessKind.None ? null : Compress(rawBody, lossless);
        bool useCompressed = compressed is not null && compressed.Length < rawBody.Length;
        ReadOnlySpan<byte> body = useCompressed ? compressed : rawBody;
        var buffer = new byte[HeaderBytes + body.Length];
        var s = buffer.AsSpan();
        Magic.CopyTo(s);
        s[4] = Version;
        s[5] = (byte)((header.Unclipped ? FlagUnclipped : 0) | (header.Bits == 0 ? FlagFloat : 0) | (header.IndexBytes > 0 ? FlagIndices : 0));
        s[6] = (byte)header.Bits;
        s[7] = (byte)(useCompressed ? lossless : LosslessKind.None);
        BinaryPrimitives.WriteUInt64LittleEndian(s[8..], header.Round);
        BinaryPrimitives.WriteUInt64LittleEndian(s[16..], header.Vehicle);
        header.UpdateId.TryWriteBytes(s[24..40]);
        BinaryPrimitives.WriteUInt32LittleEndian(s[40..], header.CodecId);
        BinaryPrimitives.WriteInt32LittleEndian(s[44..], header.Dimension);
        BinaryPrimitives.WriteInt32LittleEndian(s[48..], header.ValueCount);
        BinaryPrimitives.WriteInt32LittleEndian(s[52..], header.IndexBytes);
        BinaryPrimitives.WriteInt32LittleEndian(s[56..], body.Length);
        BinaryPrimitives.WriteSingleLittleEndian(s[60..], header.Range);
        BinaryPrimitives.WriteDoubleLittleEndian(s[64..], header.Weight);
        body.CopyTo(s[HeaderBytes..]);
        return buffer;
    }

    /// <summary>Reads and checks the header (magic, version, round, size limit, field ranges). Does not touch the body.</summary>
    public static UpdateEnvelopeHeader ReadHeader(ReadOnlySpan<byte> envelope, ulong expectedRound, int maxEnvelopeBytes) =>
        ReadHeader(envelope, envelope.Length, expectedRound, maxEnvelopeBytes);

    /// <summary>
    /// <see cref="ReadHeader(ReadOnlySpan{byte}, ulong, int)"/> from the first bytes of an envelope of
    /// <paramref name="envelopeLength"/> bytes (one held in segments): <paramref name="envelope"/> holds at least its
    /// <see cref="HeaderBytes"/>-byte header, or all of it when it is shorter.
    /// </summary>
    public static UpdateEnvelopeHeader ReadHeader(ReadOnlySpan<byte> envelope, long envelopeLength, ulong expectedRound, int maxEnvelopeBytes)
    {
        if (envelopeLength > maxEnvelopeBytes) throw new UpdateFormatException($"Update envelope of {envelopeLength} bytes exceeds the {maxEnvelopeBytes}-byte limit.");
        if (envelopeLength < HeaderBytes || envelope.Length < HeaderBytes) throw new UpdateFormatException($"Update envelope of {envelopeLength} bytes is shorter than its {HeaderBytes}-byte header.");
        if (!envelope[..4].SequenceEqual(Magic)) throw new UpdateFormatException("Not an update envelope (bad magic).");
        if (envelope[4] != Version) throw new UpdateFormatException($"Update envelope version {envelope[4]} is not supported (expected {Version}).");
        byte flags = envelope[5];
        if ((flags & ~(FlagUnclipped | FlagFloat | FlagIndices)) != 0) throw new UpdateFormatException($"Update envelope has unknown flags 0x{flags:x2}.");
        int bits = envelope[6];
        byte lossless = envelope[7];
        if (lossless > (byte)LosslessKind.Brotli) throw new UpdateFormatException($"Unknown lossless stage {lossless}.");
        ulong round = BinaryPrimitives.ReadUInt64LittleEndian(envelope[8..]);
        if (round != expectedRound) throw new UpdateFormatException($"Update is for round {round}, expected round {expectedRound}.");
        bool isFloat = (flags & FlagFloat) != 0;
        if (isFloat != (bits == 0) || bits > CodecSpec.MaxBits) throw new UpdateFormatException($"Update envelope has inconsistent bit width {bits} (float flag {isFloat}).");
        int dimension = BinaryPrimitives.ReadInt32LittleEndian(envelope[44..]);
        int count = BinaryPrimitives.ReadInt32LittleEndian(envelope[48..]);
        int indexBytes = BinaryPrimitives.ReadInt32LittleEndian(envelope[52..]);
        int bodyBytes = BinaryPrimitives.ReadInt32LittleEndian(envelope[56..]);
        if (dimension < 1 || count < 1 || indexBytes < 0) throw new UpdateFormatException($"Update envelope has invalid lengths (dimension {dimension}, values {count}, index bytes {indexBytes}).");
        if (((flags & FlagIndices) != 0) != (indexBytes > 0)) throw new UpdateFormatException("Update envelope's index flag disagrees with its index length.");
        if (bodyBytes != envelopeLength - HeaderBytes) throw new UpdateFormatException($"Update envelope declares a {bodyBytes}-byte body but carries {envelopeLength - HeaderBytes} bytes.");
        float range = BinaryPrimitives.ReadSingleLittleEndian(envelope[60..]);
        if (!float.IsFinite(range) || range < 0) throw new UpdateFormatException($"Update envelope has an invalid quantization range {range}.");
        double weight = BinaryPrimitives.ReadDoubleLittleEndian(envelope[64..]);
        if (!double.IsFinite(weight) || weight < 0) throw new UpdateFormatException($"Update envelope has an invalid weight {weight}.");
        return new UpdateEnvelopeHeader
        {
            Round = round,
            Vehicle = BinaryPrimitives.ReadUInt64LittleEndian(envelope[16..]),
            UpdateId = new Guid(envelope[24..40]),
            CodecId = BinaryPrimitives.ReadUInt32LittleEndian(envelope[40..]),
            Dimension = dimension,
            ValueCount = count,
            Bits = bits,
            Range = range,
            Weight = weight,
            Unclipped = (flags & FlagUnclipped) != 0,
            IndexBytes = indexBytes,
            Lossless = (LosslessKind)lossless,
        };
    }

    /// <summary>
    /// The raw body, checked as <see cref="ReadBody"/> checks it, but read where it lies when the body is stored raw (no lossless
    /// stage): the receive path decodes it without a copy. A compressed body is inflated into a new array.
    /// </summary>
    public static ReadOnlySpan<byte> ReadBodySpan(ReadOnlySpan<byte> envelope, UpdateEnvelopeHeader header, int rawLength)
    {
        ArgumentNullException.ThrowIfNull(header);
        if (header.Lossless != LosslessKind.None) return ReadBody(envelope, header, rawLength);
        var body = envelope[HeaderBytes..];
        if (body.Length != rawLength) throw new UpdateFormatException($"Update body has {body.Length} bytes; {rawLength} expected for {header.ValueCount} values.");
        return body;
    }

    /// <summary>The raw body (decompressed when needed); it must be exactly <paramref name="rawLength"/> bytes.</summary>
    public static byte[] ReadBody(ReadOnlySpan<byte> envelope, UpdateEnvelopeHeader header, int rawLength)
    {
        ArgumentNullException.ThrowIfNull(header);
        var body = envelope[HeaderBytes..];
        if (header.Lossless == LosslessKind.None)
        {
            if (body.Length != rawLength) throw new UpdateFormatException($"Update body has {body.Length} bytes; {rawLength} expected for {header.ValueCount} values.");
            return body.ToArray();
        }
        if (body.Length >= rawLength) throw new UpdateFormatException("Compressed update body is not smaller than the raw body (a sender applies the lossless stage only when it pays).");
        var raw = new byte[rawLength];
        try
        {
            if (header.Lossless == LosslessKind.Brotli)
            {
                using var decoder = new BrotliDecoder();
                var status = decoder.Decompress(body, raw, out int consumed, out int written);
                if (status != System.Buffers.OperationStatus.Done || consumed != body.Length || written != rawLength)
                    throw new UpdateFormatException($"Brotli body does not decode to exactly {rawLength} bytes ({status}, {written} written, {consumed} of {body.Length} consumed).");
            }
            else
            {
                using var input = new MemoryStream(body.ToArray(), writable: false);
                using var inflate = new DeflateStream(input, CompressionMode.Decompress);
                int total = 0;
                while (total < rawLength)
                {
                    int n = inflate.Read(raw, total, rawLength - total);
                    if (n == 0) break;
                    total += n;
                }
                Span<byte> probe = stackalloc byte[1];
                if (total != rawLength || inflate.Read(probe) != 0)
                    throw new UpdateFormatException($"Deflate body does not decode to exactly {rawLength} bytes.");
            }
        }
        catch (InvalidDataException e)
        {
            throw new UpdateFormatException($"Compressed update body is corrupt: {e.Message}");
        }
        return raw;
    }

    private static byte[] Compress(ReadOnlySpan<byte> raw, LosslessKind kind)
    {
        if (kind == LosslessKind.Brotli)
        {
            var dest = new byte[BrotliEncoder.GetMaxCompressedLength(raw.Length)];
            if (!BrotliEncoder.TryCompress(raw, dest, out int written, quality: 5, window: 22)) return raw.ToArray();
            return dest[..written];
        }
        using var output = new MemoryStream();
        using (var deflate = new DeflateStream(output, CompressionLevel.Optimal, leaveOpen: true)) deflate.Write(raw);
        return output.ToArray();
    }

    /// <summary>Writes ascending indices as LEB128 gaps (first index, then idx[i] − idx[i−1] − 1).</summary>
    public static byte[] EncodeIndices(ReadOnlySpan<int> ascending)
    {
        var buffer = new byte[5 * ascending.Length];
        int o = 0, previous = -1;
        foreach (int idx in ascending)
        {
            uint gap = (uint)(idx - previous - 1);
            previous = idx;
            while (gap >= 0x80) { buffer[o++] = (byte)(gap | 0x80); gap >>= 7; }
            buffer[o++] = (byte)gap;
        }
        return buffer[..o];
    }

    /// <summary>Reads exactly <paramref name="indices"/>.Length ascending indices below <paramref name="dimension"/>, consuming all of <paramref name="source"/>.</summary>
    public static void DecodeIndices(ReadOnlySpan<byte> source, int dimension, Span<int> indices)
    {
        int s = 0;
        long previous = -1;
        for (int i = 0; i < indices.Length; i++)
        {
            ulong gap = 0;
            int shift = 0;
            while (true)
            {
                if (s >= source.Length) throw new UpdateFormatException("Top-k index list ends early.");
                byte b = source[s++];
                if (shift == 28 && b > 0x0F) throw new UpdateFormatException("Top-k index gap overflows 32 bits.");
                gap |= (ulong)(b & 0x7F) << shift;
                if (b < 0x80) break;
                shift += 7;
            }
            long idx = previous + 1 + (long)gap;
            if (idx >= dimension) throw new UpdateFormatException($"Top-k index {idx} is outside the model's {dimension} parameters.");
            indices[i] = (int)idx;
            previous = idx;
        }
        if (s != source.Length) throw new UpdateFormatException($"Top-k index list has {source.Length - s} trailing bytes.");
    }
}
