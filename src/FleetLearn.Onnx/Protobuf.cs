using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;

namespace FleetLearn.Onnx;

/// <summary>Protocol Buffers wire types (protobuf encoding spec, "Message Structure").</summary>
internal enum WireType
{
    Varint = 0,
    Fixed64 = 1,
    LengthDelimited = 2,
    StartGroup = 3,
    EndGroup = 4,
    Fixed32 = 5,
}

/// <summary>
/// A minimal protobuf encoder: exactly what ONNX's <c>onnx.proto</c> messages need (varints, length-delimited
/// strings, bytes and nested messages, fixed32 floats, packed int64). Fields are written in the order called.
/// </summary>
internal sealed class ProtoWriter
{
    private byte[] _buffer = new byte[256];
    private int _length;

    /// <summary>Bytes written so far.</summary>
    public int Length => _length;

    /// <summary>The encoded message.</summary>
    public ReadOnlySpan<byte> WrittenSpan => _buffer.AsSpan(0, _length);

    /// <summary>A copy of the encoded message.</summary>
    public byte[] ToArray() => WrittenSpan.ToArray();

    /// <summary>An integer field (int32/int64/enum/bool); negative values take 10 bytes as the spec says.</summary>
    public ProtoWriter Int64(int field, long value)
    {
        Tag(field, WireType.Varint);
        RawVarint((ulong)value);
        return this;
    }

    /// <summary>A float field (wire type fixed32, little-endian IEEE-754).</summary>
    public ProtoWriter Float(int field, float value)
    {
        Tag(field, WireType.Fixed32);
        BinaryPrimitives.WriteSingleLittleEndian(Grow(4), value);
        return this;
    }

    /// <summary>A UTF-8 string field.</summary>
    public ProtoWriter String(int field, string value)
    {
        int count = Encoding.UTF8.GetByteCount(value);
        Tag(field, WireType.LengthDelimited);
        RawVarint((ulong)count);
        Encoding.UTF8.GetBytes(value, Grow(count));
        return this;
    }

    /// <summary>A bytes field (also an already-encoded nested message).</summary>
    public ProtoWriter Bytes(int field, ReadOnlySpan<byte> value)
    {
        Tag(field, WireType.LengthDelimited);
        RawVarint((ulong)value.Length);
        value.CopyTo(Grow(value.Length));
        return this;
    }

    /// <summary>Floats as little-endian bytes (TensorProto.raw_data).</summary>
    public ProtoWriter FloatsAsBytes(int field, ReadOnlySpan<float> values)
    {
        Tag(field, WireType.LengthDelimited);
        RawVarint((ulong)values.Length * 4);
        var destination = Grow(values.Length * 4);
        if (BitConverter.IsLittleEndian)
        {
            MemoryMarshal.AsBytes(values).CopyTo(destination);
        }
        else
        {
            for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(destination[(4 * i)..], values[i]);
        }
        return this;
    }

    /// <summary>A nested message built by <paramref name="build"/>.</summary>
    public ProtoWriter Message(int field, Action<ProtoWriter> build)
    {
        var inner = new ProtoWriter();
        build(inner);
        return Bytes(field, inner.WrittenSpan);
    }

    /// <summary>Appends an already-encoded field (tag included) verbatim.</summary>
    public ProtoWriter Raw(ReadOnlySpan<byte> encodedField)
    {
        encodedField.CopyTo(Grow(encodedField.Length));
        return this;
    }

    private void Tag(int field, WireType wire)
    {
        if (field < 1 || field > (1 << 29) - 1) throw new ArgumentOutOfRangeException(nameof(field), field, "Protobuf field numbers are 1..2^29-1.");
        RawVarint(((ulong)field << 3) | (ulong)wire);
    }

    private void RawVarint(ulong value)
    {
        var span = Grow(VarintSize(value));
        int i = 0;
        while (value >= 0x80)
        {
            span[i++] = (byte)(value | 0x80);
            value >>= 7;
        }
        span[i] = (byte)value;
    }

    internal static int VarintSize(ulong value)
    {
        int n = 1;
        while (value >= 0x80)
        {
            value >>= 7;
            n++;
        }
        return n;
    }

    private Span<byte> Grow(int count)
    {
        if (_length + count > _buffer.Length)
        {
            long wanted = Math.Max((long)_buffer.Length * 2, (long)_length + count);
            if (wanted > Array.MaxLength) throw new InvalidOperationException("An ONNX message over 2 GiB cannot be written as one protobuf.");
            Array.Resize(ref _buffer, (int)wanted);
        }
        var span = _buffer.AsSpan(_length, count);
        _length += count;
        return span;
    }
}

/// <summary>One decoded protobuf field: its number, wire type, the whole encoding (tag included) and the payload.</summary>
internal readonly ref struct ProtoField
{
    public ProtoField(int number, WireType wire, ulong value, ReadOnlySpan<byte> payload, ReadOnlySpan<byte> encoded)
    {
        Number = number;
        Wire = wire;
        Value = value;
        Payload = payload;
        Encoded = encoded;
    }

    /// <summary>Field number.</summary>
    public int Number { get; }

    /// <summary>Wire type.</summary>
    public WireType Wire { get; }

    /// <summary>Varint value, or the raw fixed32/fixed64 bits.</summary>
    public ulong Value { get; }

    /// <summary>Payload of a length-delimited field (empty otherwise).</summary>
    public ReadOnlySpan<byte> Payload { get; }

    /// <summary>The field exactly as encoded, tag included (to copy it verbatim).</summary>
    public ReadOnlySpan<byte> Encoded { get; }

    /// <summary>The payload as UTF-8 text.</summary>
    public string Text => Encoding.UTF8.GetString(Payload);
}

/// <summary>
/// A minimal protobuf decoder over a byte span: walks the fields of one message. Every malformed
/// input (truncated field, over-long varint, groups, bad field number) gives an <see cref="InvalidDataException"/>
/// (FleetLearn.Perception turns it into its <c>OnnxModelException</c> where a model file was read).
/// </summary>
internal ref struct ProtoReader
{
    private readonly ReadOnlySpan<byte> _data;
    private int _position;

    public ProtoReader(ReadOnlySpan<byte> data)
    {
        _data = data;
        _position = 0;
    }

    /// <summary>Reads the next field; false at the end of the message.</summary>
    public bool TryRead(out ProtoField field)
    {
        if (_position >= _data.Length)
        {
            field = default;
            return false;
        }
        int start = _position;
        ulong tag = Varint();
        int number = checked((int)Math.Min(tag >> 3, int.MaxValue));
        var wire = (WireType)(tag & 7);
        if (number < 1 || number > (1 << 29) - 1) throw Malformed($"field number {tag >> 3} at byte {start}");
        ulong value = 0;
        ReadOnlySpan<byte> payload = default;
        switch (wire)
        {
            case WireType.Varint:
                value = Varint();
                break;
            case WireType.Fixed64:
                value = BinaryPrimitives.ReadUInt64LittleEndian(Take(8));
                break;
            case WireType.Fixed32:
                value = BinaryPrimitives.ReadUInt32LittleEndian(Take(4));
                break;
            case WireType.LengthDelimited:
                ulong length = Varint();
                if (length > (ulong)(_data.Length - _position)) throw Malformed($"field {number} claims {length} bytes but {_data.Length - _position} remain");
                payload = Take((int)length);
                break;
            default:
                throw Malformed($"wire type {(int)wire} (groups are not used by ONNX) at byte {start}");
        }
        field = new ProtoField(number, wire, value, payload, _data[start.._position]);
        return true;
    }

    private ReadOnlySpan<byte> Take(int count)
    {
        if (count > _data.Length - _position) throw Malformed($"truncated at byte {_position}");
        var span = _data.Slice(_position, count);
        _position += count;
        return span;
    }

    private ulong Varint()
    {
        ulong result = 0;
        for (int shift = 0; shift < 64; shift += 7)
        {
            if (_position >= _data.Length) throw Malformed($"truncated varint at byte {_position}");
            byte b = _data[_position++];
            result |= (ulong)(b & 0x7f) << shift;
            if (b < 0x80) return result;
        }
        throw Malformed($"varint longer than 10 bytes at byte {_position}");
    }

    private static InvalidDataException Malformed(string what) => new($"Not a valid ONNX model (protobuf is malformed: {what}).");
}
