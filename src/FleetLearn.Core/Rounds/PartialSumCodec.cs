using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Core.Rounds;

/// <summary>What a decoder of partial sums accepts: the round it expects and the sizes the round fixes.</summary>
/// <param name="Round">The round the coordinator combines.</param>
/// <param name="SecureDimension">Coordinates of a secure sum (<see cref="Compression.UpdatePipeline.SecAggDimension"/>).</param>
/// <param name="ModulusBits">m: every coordinate of a secure sum is below 2^m.</param>
/// <param name="ModelDimension">Parameters of a plaintext mean.</param>
/// <param name="MaxVehicles">Most vehicles one partial may name (contributors plus silent): the largest part of the cohort.</param>
public sealed record PartialSumLimits(long Round, int SecureDimension, int ModulusBits, int ModelDimension, int MaxVehicles);

/// <summary>
/// The wire format of a shard's <see cref="PartialSum"/> (shard → coordinator; little-endian): "FLPS", version, kind, round,
/// shard, the named vehicles, counts and loss, then the m-bit packed ring sum, the float32 mean and weight, or the reason.
/// The decoder checks every size against <see cref="PartialSumLimits"/> before it allocates, and rejects truncated,
/// trailing, wrong-version, wrong-round, non-finite or out-of-range input with a <see cref="WireFormatException"/>.
/// </summary>
public static class PartialSumCodec
{
    private const uint Magic = 0x5350_4C46; // "FLPS"
    private const byte Version = 1;
    private const byte SecureKind = 1, PlainKind = 2, FailedKind = 3;
    private const int MaxIdBytes = 255;
    private const int MaxReasonBytes = 4096;

    /// <summary>Encodes <paramref name="partial"/>; <paramref name="modulusBits"/> packs a secure sum (ignored otherwise).</summary>
    public static byte[] Encode(PartialSum partial, int modulusBits)
    {
        ArgumentNullException.ThrowIfNull(partial);
        var w = new ArrayBufferWriterLe();
        w.U32(Magic);
        w.U8(Version);
        w.U8(partial switch { SecurePartialSum => SecureKind, PlainPartialSum => PlainKind, _ => FailedKind });
        w.I64(partial.Round);
        w.I32(partial.Shard);
        Ids(w, partial.Contributors);
        Ids(w, partial.Silent);
        w.I32(partial.UnclippedCount);
        w.F64(partial.LossSum);
        w.I32(partial.LossCount);
        switch (partial)
        {
            case SecurePartialSum s:
                if (modulusBits is < 1 or > 32) throw new ArgumentOutOfRangeException(nameof(modulusBits), modulusBits, "m must be within 1..32.");
                w.U8((byte)modulusBits);
                w.I32(s.Sum.Length);
                var packed = new byte[BitPacking.PackedLength(s.Sum.Length, modulusBits)];
                BitPacking.Pack(s.Sum.Span, modulusBits, packed);
                w.Bytes(packed);
                break;
            case PlainPartialSum p:
                w.F64(p.Weight);
                w.I32(p.Mean?.Length ?? -1);
                foreach (float x in p.Mean ?? []) w.F32(x);
                break;
            case FailedPartialSum f:
                var reason = Encoding.UTF8.GetBytes(f.Reason);
                if (reason.Length > MaxReasonBytes) reason = Encoding.UTF8.GetBytes(f.Reason[..(MaxReasonBytes / 4)]);
                w.I32(reason.Length);
                w.Bytes(reason);
                break;
        }
        return w.ToArray();

        static void Ids(ArrayBufferWriterLe w, IReadOnlyList<string> ids)
        {
            w.I32(ids.Count);
            foreach (var id in ids)
            {
                var bytes = Encoding.UTF8.GetBytes(id);
                if (bytes.Length is 0 or > MaxIdBytes) throw new ArgumentException($"Vehicle id '{id}' must be 1..{MaxIdBytes} UTF-8 bytes.", nameof(partial));
                w.U8((byte)bytes.Length);
                w.Bytes(bytes);
            }
        }
    }

    /// <summary>Decodes one partial sum, or throws <see cref="WireFormatException"/> saying why it is refused.</summary>
    public static PartialSum Decode(ReadOnlySpan<byte> data, PartialSumLimits limits)
    {
        ArgumentNullException.ThrowIfNull(limits);
        var r = new Reader(data);
        if (r.U32() != Magic) throw new WireFormatException("Not a partial sum (magic).");
        if (r.U8() is var version && version != Version) throw new WireFormatException($"Partial sum version {version}; this coordinator reads {Version}.", RejectReasons.Version);
        byte kind = r.U8();
        if (kind is not (SecureKind or PlainKind or FailedKind)) throw new WireFormatException($"Partial sum kind {kind} is unknown.");
        long round = r.I64();
        if (round != limits.Round) throw new WireFormatException(string.Create(CultureInfo.InvariantCulture, $"Partial sum of round {round}; the coordinator combines round {limits.Round}."), RejectReasons.WrongRound);
        int shard = r.I32();
        if (shard < 0) throw new WireFormatException($"Shard number {shard} is negative.");
        var contributors = Ids(ref r, limits.MaxVehicles, "contributors");
        var silent = Ids(ref r, limits.MaxVehicles - contributors.Length, "silent vehicles");
        if (contributors.Distinct(StringComparer.Ordinal).Count() != contributors.Length) throw new WireFormatException("Partial sum names a contributor twice.");
        int unclipped = r.I32();
        double lossSum = r.F64();
        int lossCount = r.I32();
        if (unclipped < 0 || unclipped > contributors.Length) throw new WireFormatException($"Unclipped count {unclipped} is outside 0..{contributors.Length}.");
        if (lossCount < 0 || lossCount > contributors.Length) throw new WireFormatException($"Loss count {lossCount} is outside 0..{contributors.Length}.");
        if (!double.IsFinite(lossSum)) throw new WireFormatException("Partial sum loss is not finite.", RejectReasons.NonFinite);
        PartialSum partial;
        switch (kind)
        {
            case SecureKind:
            {
                int bits = r.U8();
                if (bits != limits.ModulusBits) throw new WireFormatException($"Secure sum packed with m = {bits}; the round's modulus has {limits.ModulusBits} bits.");
                int length = r.I32();
                if (length != limits.SecureDimension) throw new WireFormatException($"Secure sum has {length} coordinates; the round's has {limits.SecureDimension}.", length > limits.SecureDimension ? RejectReasons.Oversized : RejectReasons.Malformed);
                var sum = new uint[length];
                if (!BitPacking.TryUnpack(r.Take(checked((int)BitPacking.PackedLength(length, bits))), bits, sum))
                    throw new WireFormatException("Secure sum packing is malformed.");
                if (contributors.Length == 0) throw new WireFormatException("A secure sum of nobody.");
                partial = new SecurePartialSum { Round = round, Shard = shard, Contributors = contributors, Silent = silent, UnclippedCount = unclipped, LossSum = lossSum, LossCount = lossCount, Sum = sum };
                break;
            }
            case PlainKind:
            {
                double weight = r.F64();
                if (!double.IsFinite(weight) || weight < 0) throw new WireFormatException($"Partial weight {weight} is not a finite number ≥ 0.", double.IsFinite(weight) ? RejectReasons.Malformed : RejectReasons.NonFinite);
                int length = r.I32();
                float[]? mean = null;
                if (length != -1)
                {
                    if (length != limits.ModelDimension) throw new WireFormatException($"Partial mean has {length} parameters; the model has {limits.ModelDimension}.", length > limits.ModelDimension ? RejectReasons.Oversized : RejectReasons.Malformed);
                    mean = new float[length];
                    var bytes = r.Take(checked(4 * length));
                    for (int i = 0; i < length; i++)
                        if (!float.IsFinite(mean[i] = BinaryPrimitives.ReadSingleLittleEndian(bytes[(4 * i)..])))
                            throw new WireFormatException($"Partial mean coordinate {i} is not finite.", RejectReasons.NonFinite);
                }
                if (mean is null != (contributors.Length == 0)) throw new WireFormatException($"A plaintext partial of {contributors.Length} contributors {(mean is null ? "without" : "with")} a mean.");
                partial = new PlainPartialSum { Round = round, Shard = shard, Contributors = contributors, Silent = silent, UnclippedCount = unclipped, LossSum = lossSum, LossCount = lossCount, Mean = mean, Weight = weight };
                break;
            }
            default:
            {
                int length = r.I32();
                if (length is < 0 or > MaxReasonBytes) throw new WireFormatException($"Failure reason of {length} bytes is outside 0..{MaxReasonBytes}.", RejectReasons.Oversized);
                string reason = Utf8(r.Take(length), "failure reason");
                partial = new FailedPartialSum { Round = round, Shard = shard, Contributors = contributors, Silent = silent, UnclippedCount = unclipped, LossSum = lossSum, LossCount = lossCount, Reason = reason };
                break;
            }
        }
        if (!r.AtEnd) throw new WireFormatException("Partial sum has trailing bytes.");
        return partial;
    }

    private static string[] Ids(ref Reader r, int max, string what)
    {
        int count = r.I32();
        if (count < 0 || count > max) throw new WireFormatException($"Partial sum names {count} {what}; at most {max} fit the part.", count > max ? RejectReasons.Oversized : RejectReasons.Malformed);
        var ids = new string[count];
        for (int i = 0; i < count; i++)
        {
            int length = r.U8();
            if (length == 0) throw new WireFormatException("Empty vehicle id in a partial sum.");
            ids[i] = Utf8(r.Take(length), "vehicle id");
        }
        return ids;
    }

    private static string Utf8(ReadOnlySpan<byte> bytes, string what)
    {
        try
        {
            return new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes);
        }
        catch (DecoderFallbackException e)
        {
            throw new WireFormatException($"Partial sum {what} is not UTF-8.", e);
        }
    }

    private ref struct Reader(ReadOnlySpan<byte> data)
    {
        private ReadOnlySpan<byte> _rest = data;

        public readonly bool AtEnd => _rest.IsEmpty;

        public ReadOnlySpan<byte> Take(int n)
        {
            if (n < 0 || n > _rest.Length) throw new WireFormatException("Partial sum is truncated.", RejectReasons.Truncated);
            var s = _rest[..n];
            _rest = _rest[n..];
            return s;
        }

        public byte U8() => Take(1)[0];
        public uint U32() => BinaryPrimitives.ReadUInt32LittleEndian(Take(4));
        public int I32() => BinaryPrimitives.ReadInt32LittleEndian(Take(4));
        public long I64() => BinaryPrimitives.ReadInt64LittleEndian(Take(8));
        public double F64() => BinaryPrimitives.ReadDoubleLittleEndian(Take(8));
    }

    private sealed class ArrayBufferWriterLe
    {
        private readonly ArrayBufferWriter<byte> _w = new();

        public void U8(byte v) => _w.Write([v]);

        public void U32(uint v)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(_w.GetSpan(4), v);
            _w.Advance(4);
        }

        public void I32(int v)
        {
            BinaryPrimitives.WriteInt32LittleEndian(_w.GetSpan(4), v);
            _w.Advance(4);
        }

        public void I64(long v)
        {
            BinaryPrimitives.WriteInt64LittleEndian(_w.GetSpan(8), v);
            _w.Advance(8);
        }

        public void F32(float v)
        {
            BinaryPrimitives.WriteSingleLittleEndian(_w.GetSpan(4), v);
            _w.Advance(4);
        }

        public void F64(double v)
        {
            BinaryPrimitives.WriteDoubleLittleEndian(_w.GetSpan(8), v);
            _w.Advance(8);
        }

        public void Bytes(ReadOnlySpan<byte> b) => _w.Write(b);

        public byte[] ToArray() => _w.WrittenSpan.ToArray();
    }
}
