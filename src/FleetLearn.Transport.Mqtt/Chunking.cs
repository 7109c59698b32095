using System.Buffers.Binary;
using System.Buffers;
using System.IO.Hashing;
using System.Security.Cryptography;
using FleetLearn.Core.Rounds;

namespace FleetLearn.Transport.Mqtt;

/// <summary>One piece of a chunked transfer; its checksum is the whole payload's: XXH3-128 (16 bytes, format 2) or SHA-256 (32 bytes, format 1).</summary>
public readonly record struct Chunk(Guid TransferId, int Index, int Count, long TotalLength, byte[] Checksum, ReadOnlyMemory<byte> Data);

/// <summary>
/// Splits a payload into MQTT messages that each fit under the broker's maximum packet size, and parses them back.
/// Every chunk carries a checksum of the whole payload; the assembler checks it once all chunks are in.
/// </summary>
/// <remarks>
/// Chunk layout, format 2 (written; little-endian):
/// <code>
/// 0  4  magic "FLCH"     4  1  version = 2     5  3  reserved, 0
/// 8  16 transfer id      24 4  index           28 4  count (1..MaxChunks)
/// 32 8  total length     40 16 XXH3-128 of the whole payload (seed 0, canonical big-endian bytes)
/// 56 4  n = data length  60 n  data
/// </code>
/// Format 1 (still read, so that an older vehicle's update is accepted) has SHA-256 (32 bytes) at 40, n at 72, data at 76.
/// The checksum is for integrity only — a chunk lost, duplicated from another transfer, truncated or corrupted between
/// the vehicle's outbox and the aggregator's reassembly — not authentication: anyone who can publish a chunk can compute
/// either checksum. Authenticity comes from the broker (TLS, and a per-vehicle ACL: a vehicle publishes only under its own
/// topic, and the receiver checks that topic against the envelope) and, for round plans and models, from signatures of
/// their own. XXH3-128 (16 GB/s and more on one core) replaced SHA-256 (≈ 2 GB/s), which bounded the aggregator's ingest
/// (docs/scale.md), with no loss: SHA-256 here never defended against anyone able to publish.
/// </remarks>
public static class ChunkCodec
{
    /// <summary>Chunk format version written: XXH3-128 transfer checksum.</summary>
    public const byte FormatVersion = 2;

    /// <summary>The older chunk format version, still read: SHA-256 transfer checksum.</summary>
    public const byte Sha256FormatVersion = 1;

    /// <summary>Bytes before the data in a chunk of the version written (<see cref="FormatVersion"/>).</summary>
    public const int HeaderSize = 60;

    /// <summary>Bytes before the data in a chunk of <see cref="Sha256FormatVersion"/>.</summary>
    public const int Sha256HeaderSize = 76;

    /// <summary>Room left in each MQTT packet for the fixed header, topic and properties.</summary>
    public const int MqttOverhead = 1024;

    /// <summary>Most chunks in one transfer.</summary>
    public const int MaxChunks = 1 << 20;

    private static ReadOnlySpan<byte> Magic => "FLCH"u8;

    /// <summary>Data bytes per chunk so that each MQTT packet stays within <paramref name="maxPacketSize"/>.</summary>
    public static int ChunkDataSize(int maxPacketSize)
    {
        // Sized for the larger (format 1) header, so that the data size, and with it the chunk count, is the same in both formats.
        int size = maxPacketSize - Sha256HeaderSize - MqttOverhead;
        if (size < 1024) throw new ArgumentOutOfRangeException(nameof(maxPacketSize), maxPacketSize, $"The maximum packet size must leave at least 1 KiB per chunk (≥ {Sha256HeaderSize + MqttOverhead + 1024} bytes).");
        return size;
    }

    /// <summary>Splits <paramref name="payload"/> into encoded chunks (format 2) of at most <paramref name="maxPacketSize"/> bytes each (with MQTT overhead).</summary>
    public static List<byte[]> Split(ReadOnlySpan<byte> payload, int maxPacketSize, Guid? transferId = null) => Split(payload, maxPacketSize, FormatVersion, transferId);

    /// <summary>
    /// <see cref="Split(ReadOnlySpan{byte}, int, Guid?)"/> in a chosen format: <see cref="FormatVersion"/>, or
    /// <see cref="Sha256FormatVersion"/> as vehicles that predate format 2 write it (tests of the receivers' compatibility).
    /// </summary>
    public static List<byte[]> Split(ReadOnlySpan<byte> payload, int maxPacketSize, byte version, Guid? transferId = null)
    {
        if (version is not (FormatVersion or Sha256FormatVersion)) throw new ArgumentOutOfRangeException(nameof(version), version, $"Chunk format {version} is not one this build writes ({Sha256FormatVersion} or {FormatVersion}).");
        int size = ChunkDataSize(maxPacketSize);
        var id = transferId ?? Guid.NewGuid();
        int headerSize = version == FormatVersion ? HeaderSize : Sha256HeaderSize;
        var checksum = version == FormatVersion ? XxHash128.Hash(payload) : SHA256.HashData(payload);
        int count = Math.Max(1, (int)((payload.Length + (long)size - 1) / size));
        if (count > MaxChunks) throw new ArgumentException($"A payload of {payload.Length} bytes needs {count} chunks; the limit is {MaxChunks}.");
        var chunks = new List<byte[]>(count);
        for (int i = 0; i < count; i++)
        {
            int start = i * size;
            int n = Math.Min(size, payload.Length - start);
            var bytes = new byte[headerSize + n];
            var span = bytes.AsSpan();
            Magic.CopyTo(span);
            span[4] = version;
            id.TryWriteBytes(span.Slice(8, 16), bigEndian: true, out _);
            BinaryPrimitives.WriteInt32LittleEndian(span[24..], i);
            BinaryPrimitives.WriteInt32LittleEndian(span[28..], count);
            BinaryPrimitives.WriteInt64LittleEndian(span[32..], payload.Length);
            checksum.CopyTo(span[40..]);
            BinaryPrimitives.WriteInt32LittleEndian(span[(headerSize - 4)..], n);
            payload.Slice(start, n).CopyTo(span[headerSize..]);
            chunks.Add(bytes);
        }
        return chunks;
    }

    /// <summary>Parses one chunk; <see cref="WireFormatException"/> when malformed or over <paramref name="maxTotalLength"/>.</summary>
    public static Chunk Decode(ReadOnlySpan<byte> bytes, long maxTotalLength)
    {
        var header = DecodeHeader(bytes, maxTotalLength);
        return new Chunk(header.TransferId, header.Index, header.Count, header.TotalLength, header.Checksum, bytes[header.HeaderSize..].ToArray());
    }

    /// <summary>
    /// Parses and checks a chunk's header (format 1 or 2) without copying its data: <see cref="WireFormatException"/> when
    /// malformed, over <paramref name="maxTotalLength"/>, or when the declared count is not ⌈total / chunk size⌉ for the
    /// chunk size this chunk implies (every chunk but the last holds exactly the chunk size; the last holds the rest, 1..chunk size bytes).
    /// </summary>
    public static ChunkHeader DecodeHeader(ReadOnlySpan<byte> bytes, long maxTotalLength)
    {
        if (bytes.Length < 5) throw new WireFormatException($"Chunk truncated: {bytes.Length} bytes is less than the {HeaderSize}-byte header.", RejectReasons.Truncated);
        if (!bytes[..4].SequenceEqual(Magic)) throw new WireFormatException("Not a FleetLearn chunk (magic is not 'FLCH').", RejectReasons.Version);
        byte version = bytes[4];
        if (version is not (FormatVersion or Sha256FormatVersion))
            throw new WireFormatException($"Chunk format version {version} is not supported (this build reads versions {Sha256FormatVersion} and {FormatVersion}).", RejectReasons.Version);
        int headerSize = version == FormatVersion ? HeaderSize : Sha256HeaderSize;
        int checksumSize = headerSize - 44;
        if (bytes.Length < headerSize) throw new WireFormatException($"Chunk truncated: {bytes.Length} bytes is less than the {headerSize}-byte header.", RejectReasons.Truncated);
        if (bytes[5] != 0 || bytes[6] != 0 || bytes[7] != 0) throw new WireFormatException("Chunk reserved bytes are not zero.");
        var id = new Guid(bytes.Slice(8, 16), bigEndian: true);
        int index = BinaryPrimitives.ReadInt32LittleEndian(bytes[24..]);
        int count = BinaryPrimitives.ReadInt32LittleEndian(bytes[28..]);
        long total = BinaryPrimitives.ReadInt64LittleEndian(bytes[32..]);
        int n = BinaryPrimitives.ReadInt32LittleEndian(bytes[(headerSize - 4)..]);
        if (count < 1 || count > MaxChunks) throw new WireFormatException($"Chunk count {count} is outside 1..{MaxChunks}.");
        if (index < 0 || index >= count) throw new WireFormatException($"Chunk index {index} is outside 0..{count - 1}.");
        if (total < 0 || total > maxTotalLength) throw new WireFormatException($"Chunked payload of {total} bytes exceeds the limit of {maxTotalLength}.", RejectReasons.Oversized);
        if (n < 0 || n > total) throw new WireFormatException($"Chunk data length {n} is invalid for a {total}-byte payload.");
        if (bytes.Length != headerSize + n) throw new WireFormatException($"Chunk holds {bytes.Length - headerSize} data bytes but declares {n}.");
        long size;
        if (count == 1)
        {
            if (n != total) throw new WireFormatException($"Chunk holds {n} bytes of a {total}-byte payload but claims to be the only one.");
            size = n;
        }
        else if (index < count - 1)
        {
            // A full chunk: the chunk size is its length, and the count must be exactly what that size needs.
            size = n;
            if (n == 0 || (count - 1) * (long)n >= total || total > count * (long)n)
                throw new WireFormatException($"Chunk count {count} is not ⌈{total} / {n}⌉ for {n}-byte chunks.");
        }
        else
        {
            // The last chunk: the others hold (total − n) / (count − 1) bytes each, and it holds 1..that many.
            long rest = total - n;
            size = rest / (count - 1);
            if (n == 0 || rest <= 0 || rest % (count - 1) != 0 || n > size)
                throw new WireFormatException($"Last chunk of {n} bytes does not fit a {total}-byte payload in {count} equal chunks.");
        }
        return new ChunkHeader(id, index, count, total, bytes.Slice(40, checksumSize).ToArray(), n, size) { Version = version };
    }
}

/// <summary>A chunk's header, checked; <see cref="ChunkSize"/> is the data length of every chunk of the transfer but the last, <see cref="Checksum"/> the whole payload's XXH3-128 (format 2) or SHA-256 (format 1).</summary>
public readonly record struct ChunkHeader(Guid TransferId, int Index, int Count, long TotalLength, byte[] Checksum, int DataLength, long ChunkSize)
{
    /// <summary>The chunk's format: <see cref="ChunkCodec.FormatVersion"/> or <see cref="ChunkCodec.Sha256FormatVersion"/>.</summary>
    public byte Version { get; init; } = ChunkCodec.FormatVersion;

    /// <summary>Bytes before the data in this chunk.</summary>
    public int HeaderSize => Version == ChunkCodec.FormatVersion ? ChunkCodec.HeaderSize : ChunkCodec.Sha256HeaderSize;
}

/// <summary>
/// Reassembles chunked transfers from many senders with bounded memory. A chunk is held only once it arrived (slots are
/// not allocated from the declared count), and every holder is capped: each owner (a vehicle) at most
/// <see cref="MaxTransfersPerOwner"/> incomplete transfers and <see cref="MaxBytesPerOwner"/> bytes (its own oldest
/// transfer makes room), all owners together at most <see cref="MaxPendingTransfers"/> transfers and
/// <see cref="MaxHeldBytes"/> bytes (the owner holding the most gives way, so one sender cannot evict everyone else).
/// <see cref="Admit"/> lets the caller refuse a new transfer (e.g. a vehicle outside the cohort) before anything is held.
/// Duplicate chunks (QoS 1 resends) are ignored. Not thread-safe: feed it from one consumer.
/// </summary>
public sealed class ChunkAssembler
{
    /// <summary>Bytes of bookkeeping counted against the caps for every held chunk, besides its data.</summary>
    public const int PerChunkOverhead = 64;

    private readonly Dictionary<TransferKey, Pending> _pending = [];
    private readonly LinkedList<TransferKey> _order = new();
    private readonly Dictionary<string, OwnerUsage> _owners = new(StringComparer.Ordinal);
    private readonly XxHash128 _xxh3 = new();

    /// <summary>
    /// Creates an assembler. Defaults: <paramref name="maxTransfersPerOwner"/> = <paramref name="maxPendingTransfers"/>
    /// (one-sender consumers such as the edge agent's inbox); <paramref name="maxBytesPerOwner"/> =
    /// <paramref name="maxTotalLength"/> plus room for its chunks' bookkeeping; <paramref name="maxHeldBytes"/> =
    /// <paramref name="maxPendingTransfers"/> such owners, at most 4 GiB (what 64 pending 64 MiB transfers could hold before
    /// these caps), never less than one owner's cap. A consumer of many vehicles passes tighter ones (e.g. 2 transfers per vehicle).
    /// </summary>
    public ChunkAssembler(long maxTotalLength, int maxPendingTransfers = 64, int? maxTransfersPerOwner = null, long? maxBytesPerOwner = null, long? maxHeldBytes = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxTotalLength);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxPendingTransfers, 1);
        MaxTotalLength = maxTotalLength;
        MaxPendingTransfers = maxPendingTransfers;
        MaxTransfersPerOwner = maxTransfersPerOwner ?? maxPendingTransfers;
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxTransfersPerOwner, 1);
        MaxBytesPerOwner = maxBytesPerOwner ?? maxTotalLength + maxTotalLength / 16 + 16L * PerChunkOverhead;
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxBytesPerOwner, 1L);
        MaxHeldBytes = maxHeldBytes ?? Math.Max(MaxBytesPerOwner, Math.Min(4L << 30, maxPendingTransfers * MaxBytesPerOwner));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxHeldBytes, 1L);
    }

    /// <summary>Largest reassembled payload.</summary>
    public long MaxTotalLength { get; }

    /// <summary>Most incomplete transfers held at once, all owners together.</summary>
    public int MaxPendingTransfers { get; }

    /// <summary>Most incomplete transfers held at once for one owner.</summary>
    public int MaxTransfersPerOwner { get; }

    /// <summary>Most bytes (data plus <see cref="PerChunkOverhead"/> per chunk) held at once for one owner.</summary>
    public long MaxBytesPerOwner { get; }

    /// <summary>Most bytes (data plus <see cref="PerChunkOverhead"/> per chunk) held at once, all owners together.</summary>
    public long MaxHeldBytes { get; }

    /// <summary>
    /// Called with (owner, header) when a chunk would start a new transfer, before any of it is held; false refuses it with
    /// a <see cref="WireFormatException"/> labelled <see cref="RejectReasons.NotInCohort"/>. Null admits everyone.
    /// </summary>
    public Func<string, ChunkHeader, bool>? Admit { get; init; }

    /// <summary>Incomplete transfers held now.</summary>
    public int PendingTransfers => _pending.Count;

    /// <summary>Bytes held now (data plus <see cref="PerChunkOverhead"/> per chunk).</summary>
    public long HeldBytes { get; private set; }

    /// <summary>Transfers dropped to keep within the caps.</summary>
    public long Evicted { get; private set; }

    /// <summary>Bytes held now for <paramref name="owner"/>.</summary>
    public long HeldBytesOf(string owner) => _owners.TryGetValue(owner, out var u) ? u.Bytes : 0;

    /// <summary>Drops every incomplete transfer of <paramref name="owner"/> (e.g. a vehicle that left the round).</summary>
    public void Forget(string owner)
    {
        foreach (var key in _order.Where(k => k.Owner == owner).ToList()) Drop(key);
    }

    /// <summary>Drops every incomplete transfer (e.g. when a round closes).</summary>
    public void Clear()
    {
        _pending.Clear();
        _order.Clear();
        _owners.Clear();
        HeldBytes = 0;
    }

    /// <summary>Adds one encoded chunk whose owner is its <paramref name="source"/> (e.g. the topic); see <see cref="Add(string, string, ReadOnlySpan{byte})"/>.</summary>
    public byte[]? Add(string source, ReadOnlySpan<byte> encoded) => Add(source, source, encoded);

    /// <summary>
    /// <see cref="TryAdd"/> for a caller that reuses its buffer: the chunk is copied first, and a completed payload is
    /// returned as one array (null while incomplete). Receive paths that hand over fresh arrays use <see cref="TryAdd"/>.
    /// </summary>
    public byte[]? Add(string owner, string source, ReadOnlySpan<byte> encoded) =>
        TryAdd(owner, source, encoded.ToArray(), out var payload) ? payload.ToArray() : null;

    /// <summary>
    /// Adds one encoded chunk from <paramref name="owner"/> (the vehicle whose caps it counts against) on
    /// <paramref name="source"/> (e.g. the topic). True, with the whole payload, when this chunk completed a transfer whose
    /// checksum matches; false while incomplete. Throws <see cref="WireFormatException"/> for a malformed chunk, one
    /// inconsistent with its transfer, one refused by <see cref="Admit"/>, one that alone exceeds its owner's caps, or a
    /// completed transfer whose checksum does not match (the transfer is discarded so a clean resend can complete it).
    /// </summary>
    /// <remarks>
    /// Nothing is copied: the assembler keeps a slice of <paramref name="encoded"/> for each held chunk, and
    /// <paramref name="payload"/> is those slices in order (one segment per chunk; a one-chunk transfer is its own slice).
    /// The caller hands the memory over and must never write to it again — an MQTT message's payload
    /// (<see cref="MqttIncoming.Payload"/>) is a fresh array per message, as required.
    /// </remarks>
    public bool TryAdd(string owner, string source, ReadOnlyMemory<byte> encoded, out ReadOnlySequence<byte> payload)
    {
        payload = default;
        var header = ChunkCodec.DecodeHeader(encoded.Span, MaxTotalLength);
        var data = encoded[header.HeaderSize..];
        var key = new TransferKey(owner, source, header.TransferId);
        if (!_pending.TryGetValue(key, out var p))
        {
            if (Admit is { } admit && !admit(owner, header))
                throw new WireFormatException($"Transfer {header.TransferId} from {owner} is not admitted (not in the current cohort).", RejectReasons.NotInCohort);
            if (header.Count == 1)
            {
                payload = new ReadOnlySequence<byte>(data);
                Verify(header.Version, header.Checksum, payload);
                return true;
            }
            long cost = header.DataLength + (long)PerChunkOverhead;
            if (cost > MaxBytesPerOwner || cost > MaxHeldBytes)
                throw new WireFormatException($"A {header.DataLength}-byte chunk exceeds the assembler's per-sender limit of {MaxBytesPerOwner} bytes.", RejectReasons.Oversized);
            var usage = Usage(owner);
            while (usage.Transfers >= MaxTransfersPerOwner) EvictOldestOf(owner);
            while (_pending.Count >= MaxPendingTransfers) EvictOldestOf(LargestOwner());
            p = new Pending(header, _order.AddLast(key));
            _pending[key] = p;
            Usage(owner).Transfers++;
        }
        if (p.Count != header.Count || p.Total != header.TotalLength || p.ChunkSize != header.ChunkSize || p.Version != header.Version || !p.Checksum.AsSpan().SequenceEqual(header.Checksum))
        {
            Drop(key);
            throw new WireFormatException($"Chunk {header.Index} of transfer {header.TransferId} disagrees with the transfer's format, count, length, chunk size or checksum.");
        }
        if (p.Parts.ContainsKey(header.Index)) return false; // a resend
        long bytes = header.DataLength + (long)PerChunkOverhead;
        if (!MakeRoom(key, owner, bytes))
            throw new WireFormatException($"Transfer {header.TransferId} from {owner} exceeds the assembler's limits ({MaxBytesPerOwner} bytes per sender, {MaxHeldBytes} in all); dropped.", RejectReasons.Oversized);
        p.Parts[header.Index] = data;
        p.HeldBytes += bytes;
        Usage(owner).Bytes += bytes;
        HeldBytes += bytes;
        if (p.Parts.Count < p.Count) return false;
        Drop(key);
        payload = Segments(p);
        Verify(p.Version, p.Checksum, payload);
        return true;
    }

    /// <summary>The parts of a complete transfer in index order, as one sequence (no copy).</summary>
    private static ReadOnlySequence<byte> Segments(Pending p)
    {
        var first = new Segment(p.Parts[0], 0);
        var last = first;
        for (int i = 1; i < p.Count; i++) last = last.Append(p.Parts[i]);
        return new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
    }

    /// <summary>Checks a completed payload against its transfer checksum, segment by segment.</summary>
    private void Verify(byte version, byte[] expected, in ReadOnlySequence<byte> payload)
    {
        Span<byte> actual = stackalloc byte[32];
        if (version == ChunkCodec.FormatVersion)
        {
            _xxh3.Reset();
            foreach (var segment in payload) _xxh3.Append(segment.Span);
            _xxh3.GetCurrentHash(actual[..16]);
            if (!actual[..16].SequenceEqual(expected))
                throw new WireFormatException("Reassembled payload fails its XXH3-128 checksum: a chunk was corrupted, truncated or mixed up in transit.", RejectReasons.Signature);
            return;
        }
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var segment in payload) sha.AppendData(segment.Span);
        sha.GetCurrentHash(actual);
        if (!actual.SequenceEqual(expected))
            throw new WireFormatException("Reassembled payload fails its SHA-256 checksum: a chunk was corrupted, truncated or mixed up in transit.", RejectReasons.Signature);
    }

    /// <summary>Evicts until <paramref name="bytes"/> more fit for <paramref name="owner"/>; false (and the transfer dropped) when they cannot.</summary>
    private bool MakeRoom(TransferKey key, string owner, long bytes)
    {
        while (Usage(owner).Bytes + bytes > MaxBytesPerOwner)
        {
            var victim = _order.FirstOrDefault(k => k.Owner == owner && k != key);
            if (victim == default)
            {
                Drop(key);
                Evicted++;
                return false;
            }
            Drop(victim);
            Evicted++;
        }
        while (HeldBytes + bytes > MaxHeldBytes)
        {
            string largest = LargestOwner();
            var victim = _order.First(k => k.Owner == largest);
            Drop(victim);
            Evicted++;
            if (victim == key) return false;
        }
        return true;
    }

    private OwnerUsage Usage(string owner)
    {
        if (!_owners.TryGetValue(owner, out var u)) _owners[owner] = u = new OwnerUsage();
        return u;
    }

    /// <summary>The owner holding the most bytes (then the most transfers); ties go to the one with the oldest transfer.</summary>
    private string LargestOwner()
    {
        string? best = null;
        OwnerUsage? bestUsage = null;
        foreach (var key in _order)
        {
            var u = _owners[key.Owner];
            if (bestUsage is null || u.Bytes > bestUsage.Bytes || u.Bytes == bestUsage.Bytes && u.Transfers > bestUsage.Transfers)
            {
                best = key.Owner;
                bestUsage = u;
            }
        }
        return best ?? throw new InvalidOperationException("No transfer is held.");
    }

    private void EvictOldestOf(string owner)
    {
        Drop(_order.First(k => k.Owner == owner));
        Evicted++;
    }

    private void Drop(TransferKey key)
    {
        if (!_pending.Remove(key, out var p)) return;
        _order.Remove(p.Node);
        var usage = _owners[key.Owner];
        usage.Transfers--;
        usage.Bytes -= p.HeldBytes;
        HeldBytes -= p.HeldBytes;
        if (usage.Transfers == 0) _owners.Remove(key.Owner);
    }

    private readonly record struct TransferKey(string Owner, string Source, Guid Id);

    private sealed class OwnerUsage
    {
        public int Transfers { get; set; }
        public long Bytes { get; set; }
    }

    private sealed class Pending(ChunkHeader header, LinkedListNode<TransferKey> node)
    {
        public int Count { get; } = header.Count;
        public long Total { get; } = header.TotalLength;
        public long ChunkSize { get; } = header.ChunkSize;
        public byte Version { get; } = header.Version;
        public byte[] Checksum { get; } = header.Checksum;
        public LinkedListNode<TransferKey> Node { get; } = node;
        public Dictionary<int, ReadOnlyMemory<byte>> Parts { get; } = [];
        public long HeldBytes { get; set; }
    }

    /// <summary>One chunk's data in a completed transfer's sequence.</summary>
    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory, long runningIndex)
        {
            Memory = memory;
            RunningIndex = runningIndex;
        }

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Segment(memory, RunningIndex + Memory.Length);
            Next = next;
            return next;
        }
    }
}
