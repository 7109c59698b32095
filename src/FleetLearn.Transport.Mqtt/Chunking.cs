using System.Buffers.Binary;
using System.Security.Cryptography;
using FleetLearn.Core.Rounds;

namespace FleetLearn.Transport.Mqtt;

/// <summary>One piece of a chunked transfer.</summary>
public readonly record struct Chunk(Guid TransferId, int Index, int Count, long TotalLength, byte[] Sha256, ReadOnlyMemory<byte> Data);

/// <summary>
/// Splits a payload into MQTT messages that each fit under the broker's maximum packet size, and parses them back.
/// Every chunk carries the SHA-256 of the whole payload; the assembler checks it once all chunks are in.
/// </summary>
/// <remarks>
/// Chunk layout (little-endian):
/// <code>
/// 0  4  magic "FLCH"     4  1  version = 1     5  3  reserved, 0
/// 8  16 transfer id      24 4  index           28 4  count (1..MaxChunks)
/// 32 8  total length     40 32 SHA-256 of the whole payload
/// 72 4  n = data length  76 n  data
/// </code>
/// </remarks>
public static class ChunkCodec
{
    /// <summary>Current chunk format version.</summary>
    public const byte FormatVersion = 1;

    /// <summary>Bytes before the data.</summary>
    public const int HeaderSize = 76;

    /// <summary>Room left in each MQTT packet for the fixed header, topic and properties.</summary>
    public const int MqttOverhead = 1024;

    /// <summary>Most chunks in one transfer.</summary>
    public const int MaxChunks = 1 << 20;

    private static ReadOnlySpan<byte> Magic => "FLCH"u8;

    /// <summary>Data bytes per chunk so that each MQTT packet stays within <paramref name="maxPacketSize"/>.</summary>
    public static int ChunkDataSize(int maxPacketSize)
    {
        int size = maxPacketSize - HeaderSize - MqttOverhead;
        if (size < 1024) throw new ArgumentOutOfRangeException(nameof(maxPacketSize), maxPacketSize, $"The maximum packet size must leave at least 1 KiB per chunk (≥ {HeaderSize + MqttOverhead + 1024} bytes).");
        return size;
    }

    /// <summary>Splits <paramref name="payload"/> into encoded chunks of at most <paramref name="maxPacketSize"/> bytes each (with MQTT overhead).</summary>
    public static List<byte[]> Split(ReadOnlySpan<byte> payload, int maxPacketSize, Guid? transferId = null)
    {
        int size = ChunkDataSize(maxPacketSize);
        var id = transferId ?? Guid.NewGuid();
        var hash = SHA256.HashData(payload);
        int count = Math.Max(1, (int)((payload.Length + (long)size - 1) / size));
        if (count > MaxChunks) throw new ArgumentException($"A payload of {payload.Length} bytes needs {count} chunks; the limit is {MaxChunks}.");
        var chunks = new List<byte[]>(count);
        for (int i = 0; i < count; i++)
        {
            int start = i * size;
            int n = Math.Min(size, payload.Length - start);
            var bytes = new byte[HeaderSize + n];
            var span = bytes.AsSpan();
            Magic.CopyTo(span);
            span[4] = FormatVersion;
            id.TryWriteBytes(span.Slice(8, 16), bigEndian: true, out _);
            BinaryPrimitives.WriteInt32LittleEndian(span[24..], i);
            BinaryPrimitives.WriteInt32LittleEndian(span[28..], count);
            BinaryPrimitives.WriteInt64LittleEndian(span[32..], payload.Length);
            hash.CopyTo(span[40..]);
            BinaryPrimitives.WriteInt32LittleEndian(span[72..], n);
            payload.Slice(start, n).CopyTo(span[HeaderSize..]);
            chunks.Add(bytes);
        }
        return chunks;
    }

    /// <summary>Parses one chunk; <see cref="WireFormatException"/> when malformed or over <paramref name="maxTotalLength"/>.</summary>
    public static Chunk Decode(ReadOnlySpan<byte> bytes, long maxTotalLength)
    {
        if (bytes.Length < HeaderSize) throw new WireFormatException($"Chunk truncated: {bytes.Length} bytes is less than the {HeaderSize}-byte header.", RejectReasons.Truncated);
        if (!bytes[..4].SequenceEqual(Magic)) throw new WireFormatException("Not a FleetLearn chunk (magic is not 'FLCH').", RejectReasons.Version);
        if (bytes[4] != FormatVersion) throw new WireFormatException($"Chunk format version {bytes[4]} is not supported (this build reads version {FormatVersion}).", RejectReasons.Version);
        if (bytes[5] != 0 || bytes[6] != 0 || bytes[7] != 0) throw new WireFormatException("Chunk reserved bytes are not zero.");
        var id = new Guid(bytes.Slice(8, 16), bigEndian: true);
        int index = BinaryPrimitives.ReadInt32LittleEndian(bytes[24..]);
        int count = BinaryPrimitives.ReadInt32LittleEndian(bytes[28..]);
        long total = BinaryPrimitives.ReadInt64LittleEndian(bytes[32..]);
        int n = BinaryPrimitives.ReadInt32LittleEndian(bytes[72..]);
        if (count < 1 || count > MaxChunks) throw new WireFormatException($"Chunk count {count} is outside 1..{MaxChunks}.");
        if (index < 0 || index >= count) throw new WireFormatException($"Chunk index {index} is outside 0..{count - 1}.");
        if (total < 0 || total > maxTotalLength) throw new WireFormatException($"Chunked payload of {total} bytes exceeds the limit of {maxTotalLength}.", RejectReasons.Oversized);
        if (n < 0 || n > total) throw new WireFormatException($"Chunk data length {n} is invalid for a {total}-byte payload.");
        if (bytes.Length != HeaderSize + n) throw new WireFormatException($"Chunk holds {bytes.Length - HeaderSize} data bytes but declares {n}.");
        return new Chunk(id, index, count, total, bytes.Slice(40, 32).ToArray(), bytes[HeaderSize..].ToArray());
    }
}

/// <summary>
/// Reassembles chunked transfers from many senders with bounded memory: at most <see cref="MaxPendingTransfers"/>
/// incomplete transfers (the oldest is dropped), each at most the decoder's size limit. Duplicate chunks (QoS 1 resends)
/// are ignored. Not thread-safe: feed it from one consumer.
/// </summary>
public sealed class ChunkAssembler(long maxTotalLength, int maxPendingTransfers = 64)
{
    private readonly Dictionary<(string Source, Guid Id), Pending> _pending = [];
    private readonly LinkedList<(string Source, Guid Id)> _order = new();

    /// <summary>Largest reassembled payload.</summary>
    public long MaxTotalLength { get; } = maxTotalLength;

    /// <summary>Most incomplete transfers held at once.</summary>
    public int MaxPendingTransfers { get; } = maxPendingTransfers;

    /// <summary>Incomplete transfers held now.</summary>
    public int PendingTransfers => _pending.Count;

    /// <summary>Transfers dropped to keep within <see cref="MaxPendingTransfers"/>.</summary>
    public long Evicted { get; private set; }

    /// <summary>
    /// Adds one encoded chunk from <paramref name="source"/> (e.g. the topic). Returns the whole payload when this chunk
    /// completed a transfer whose SHA-256 matches, null while incomplete; throws <see cref="WireFormatException"/> for a
    /// malformed chunk, one inconsistent with its transfer, or a completed transfer whose hash does not match (the transfer
    /// is discarded so a clean resend can complete it).
    /// </summary>
    public byte[]? Add(string source, ReadOnlySpan<byte> encoded)
    {
        var chunk = ChunkCodec.Decode(encoded, MaxTotalLength);
        var key = (source, chunk.TransferId);
        if (!_pending.TryGetValue(key, out var p))
        {
            if (chunk.Count == 1)
                return Complete(chunk.Sha256, chunk.Data.ToArray(), chunk.TotalLength);
            while (_pending.Count >= MaxPendingTransfers)
            {
                _pending.Remove(_order.First!.Value);
                _order.RemoveFirst();
                Evicted++;
            }
            p = new Pending(chunk.Count, chunk.TotalLength, chunk.Sha256, _order.AddLast(key));
            _pending[key] = p;
        }
        if (p.Count != chunk.Count || p.Total != chunk.TotalLength || !p.Hash.AsSpan().SequenceEqual(chunk.Sha256))
        {
            Drop(key, p);
            throw new WireFormatException($"Chunk {chunk.Index} of transfer {chunk.TransferId} disagrees with the transfer's count, length or hash.");
        }
        if (p.Received[chunk.Index]) return null; // a resend
        if (p.ReceivedBytes + chunk.Data.Length > p.Total)
        {
            Drop(key, p);
            throw new WireFormatException($"Chunks of transfer {chunk.TransferId} hold more than the declared {p.Total} bytes.");
        }
        p.Received[chunk.Index] = true;
        p.ReceivedCount++;
        p.ReceivedBytes += chunk.Data.Length;
        p.Parts[chunk.Index] = chunk.Data;
        if (p.ReceivedCount < p.Count) return null;
        Drop(key, p);
        var whole = new byte[p.Total];
        long at = 0;
        foreach (var part in p.Parts)
        {
            part.Span.CopyTo(whole.AsSpan((int)at));
            at += part.Length;
        }
        if (at != p.Total) throw new WireFormatException($"Transfer {chunk.TransferId} reassembled to {at} bytes, not the declared {p.Total}.");
        return Complete(p.Hash, whole, p.Total);
    }

    private static byte[] Complete(byte[] hash, byte[] whole, long total)
    {
        if (whole.Length != total) throw new WireFormatException($"Chunk holds {whole.Length} bytes of a {total}-byte payload but claims to be the only one.");
        if (!SHA256.HashData(whole).AsSpan().SequenceEqual(hash))
            throw new WireFormatException("Reassembled payload fails its SHA-256 check: corrupted or tampered chunk.", RejectReasons.Signature);
        return whole;
    }

    private void Drop((string, Guid) key, Pending p)
    {
        _pending.Remove(key);
        _order.Remove(p.Node);
    }

    private sealed class Pending(int count, long total, byte[] hash, LinkedListNode<(string, Guid)> node)
    {
        public int Count { get; } = count;
        public long Total { get; } = total;
        public byte[] Hash { get; } = hash;
        public LinkedListNode<(string, Guid)> Node { get; } = node;
        public bool[] Received { get; } = new bool[count];
        public ReadOnlyMemory<byte>[] Parts { get; } = new ReadOnlyMemory<byte>[count];
        public int ReceivedCount { get; set; }
        public long ReceivedBytes { get; set; }
    }
}
