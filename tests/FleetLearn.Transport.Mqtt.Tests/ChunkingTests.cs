using System.Buffers;
using System.Runtime.InteropServices;
using CsCheck;
using FleetLearn.Core.Rounds;

namespace FleetLearn.Transport.Mqtt.Tests;

public sealed class ChunkingTests
{
    private const int Packet = 4096;

    [Fact]
    public void Split_AnyPayload_EveryChunkFitsAndReassemblesInAnyOrder()
    {
        Gen.Select(Gen.Byte.Array[0, 20_000], Gen.Int).Sample((payload, seed) =>
        {
            var chunks = ChunkCodec.Split(payload, Packet);
            Assert.All(chunks, c => Assert.True(c.Length + ChunkCodec.MqttOverhead <= Packet));
            var order = chunks.ToArray();
            new Random(seed).Shuffle(order);
            var assembler = new ChunkAssembler(1 << 20);
            byte[]? whole = null;
            foreach (var c in order)
            {
                var r = assembler.Add("t", c);
                if (r is not null) whole = r;
            }
            Assert.NotNull(whole);
            Assert.Equal(payload, whole);
            Assert.Equal(0, assembler.PendingTransfers);
        });
    }

    [Fact]
    public void Add_DuplicateChunks_AreIgnored()
    {
        var payload = new byte[10_000];
        new Random(1).NextBytes(payload);
        var chunks = ChunkCodec.Split(payload, Packet);
        var assembler = new ChunkAssembler(1 << 20);
        Assert.Null(assembler.Add("t", chunks[0]));
        Assert.Null(assembler.Add("t", chunks[0]));
        byte[]? whole = null;
        foreach (var c in chunks.Skip(1)) whole ??= assembler.Add("t", c);
        Assert.Equal(payload, whole);
    }

    [Fact]
    public void Add_TamperedData_ThrowsOnHashMismatch()
    {
        Gen.Select(Gen.Byte.Array[3000, 12_000], Gen.Int[0, 1000], Gen.Byte[1, 255]).Sample((payload, at, flip) =>
        {
            var chunks = ChunkCodec.Split(payload, Packet);
            int target = at % chunks.Count;
            var c = chunks[target];
            int dataBytes = c.Length - ChunkCodec.HeaderSize;
            if (dataBytes == 0) return;
            c[ChunkCodec.HeaderSize + at % dataBytes] ^= flip;
            var assembler = new ChunkAssembler(1 << 20);
            var e = Assert.Throws<WireFormatException>(() =>
            {
                foreach (var x in chunks) assembler.Add("t", x);
            });
            Assert.Equal("Reassembled payload fails its XXH3-128 checksum: a chunk was corrupted, truncated or mixed up in transit.", e.Message);
        });
    }

    [Fact]
    public void TryAdd_AnyOrderWithDuplicates_ReturnsTheSameBytesInSlicesOfTheChunksItWasGiven()
    {
        Gen.Select(Gen.Byte.Array[0, 20_000], Gen.Int, Gen.Int[0, 30].Array[0, 8]).Sample((payload, seed, again) =>
        {
            var chunks = ChunkCodec.Split(payload, Packet);
            var order = chunks.Concat(again.Where(i => i < chunks.Count).Select(i => chunks[i])).ToArray(); // QoS 1 resends
            new Random(seed).Shuffle(order);
            var assembler = new ChunkAssembler(1 << 20);
            ReadOnlySequence<byte>? whole = null;
            foreach (var c in order)
            {
                if (assembler.TryAdd("v", "t", c, out var done))
                {
                    whole = done;
                    break;
                }
            }
            Assert.NotNull(whole);
            Assert.Equal(payload, whole.Value.ToArray());
            // No copy: every segment is the data of one of the chunks handed in, in index order.
            int index = 0;
            foreach (var segment in whole.Value)
            {
                Assert.True(MemoryMarshal.TryGetArray(segment, out var array));
                Assert.Same(chunks[index++], array.Array);
                Assert.Equal(ChunkCodec.HeaderSize, array.Offset);
            }
            Assert.Equal(chunks.Count, index);
        });
    }

    [Fact]
    public void TryAdd_AnySingleFlippedDataByte_IsRefusedByTheChecksum()
    {
        Gen.Select(Gen.Byte.Array[1, 12_000], Gen.Int[0, int.MaxValue], Gen.Byte[1, 255], Gen.Int).Sample((payload, at, flip, seed) =>
        {
            var chunks = ChunkCodec.Split(payload, Packet);
            int position = at % payload.Length, size = ChunkCodec.ChunkDataSize(Packet);
            chunks[position / size][ChunkCodec.HeaderSize + position % size] ^= flip;
            new Random(seed).Shuffle(CollectionsMarshal.AsSpan(chunks));
            var assembler = new ChunkAssembler(1 << 20);
            var e = Assert.Throws<WireFormatException>(() =>
            {
                foreach (var c in chunks) assembler.TryAdd("v", "t", c, out _);
            });
            Assert.Equal(RejectReasons.Signature, e.Reason);
            Assert.Contains("XXH3-128", e.Message, StringComparison.Ordinal);
            Assert.Equal(0, assembler.PendingTransfers);
        });
    }

    [Fact]
    public void Add_FormatOneChunksOfAnOlderVehicle_ReassembleAndAreCheckedWithSha256()
    {
        Gen.Select(Gen.Byte.Array[1, 12_000], Gen.Int).Sample((payload, seed) =>
        {
            var chunks = ChunkCodec.Split(payload, Packet, ChunkCodec.Sha256FormatVersion);
            Assert.All(chunks, c => Assert.Equal(ChunkCodec.Sha256FormatVersion, c[4]));
            Assert.All(chunks, c => Assert.True(c.Length + ChunkCodec.MqttOverhead <= Packet));
            Assert.Equal(ChunkCodec.Split(payload, Packet).Count, chunks.Count); // same chunk sizes in both formats
            var order = chunks.ToArray();
            new Random(seed).Shuffle(order);
            var assembler = new ChunkAssembler(1 << 20);
            byte[]? whole = null;
            foreach (var c in order) whole ??= assembler.Add("t", c);
            Assert.Equal(payload, whole);
            var tampered = chunks.Select(c => (byte[])c.Clone()).ToList();
            tampered[0][ChunkCodec.Sha256HeaderSize] ^= 0x40;
            var fresh = new ChunkAssembler(1 << 20);
            var e = Assert.Throws<WireFormatException>(() =>
            {
                foreach (var c in tampered) fresh.Add("t", c);
            });
            Assert.Equal("Reassembled payload fails its SHA-256 checksum: a chunk was corrupted, truncated or mixed up in transit.", e.Message);
        });
    }

    [Fact]
    public void Add_ChunksOfBothFormatsInOneTransfer_AreRefused()
    {
        var payload = new byte[10_000];
        new Random(9).NextBytes(payload);
        var id = Guid.NewGuid();
        var v2 = ChunkCodec.Split(payload, Packet, ChunkCodec.FormatVersion, id);
        var v1 = ChunkCodec.Split(payload, Packet, ChunkCodec.Sha256FormatVersion, id);
        var assembler = new ChunkAssembler(1 << 20);
        Assert.Null(assembler.Add("t", v2[0]));
        var e = Assert.Throws<WireFormatException>(() => assembler.Add("t", v1[1]));
        Assert.Equal($"Chunk 1 of transfer {id} disagrees with the transfer's format, count, length, chunk size or checksum.", e.Message);
        Assert.Equal(0, assembler.PendingTransfers);
    }

    [Fact]
    public void Decode_UnknownVersion_RefusedNamingTheVersionsRead()
    {
        var chunk = ChunkCodec.Split(new byte[100], Packet)[0];
        chunk[4] = 3;
        var e = Assert.Throws<WireFormatException>(() => ChunkCodec.DecodeHeader(chunk, 1 << 20));
        Assert.Equal("Chunk format version 3 is not supported (this build reads versions 1 and 2).", e.Message);
        Assert.Equal(RejectReasons.Version, e.Reason);
    }

    [Fact]
    public void Decode_OverLimit_Throws()
    {
        var chunks = ChunkCodec.Split(new byte[10_000], Packet);
        var e = Assert.Throws<WireFormatException>(() => new ChunkAssembler(9_999).Add("t", chunks[0]));
        Assert.Contains("exceeds", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Decode_Truncated_Throws()
    {
        var chunks = ChunkCodec.Split(new byte[100], Packet);
        Gen.Int[0, chunks[0].Length - 1].Sample(n => Assert.Throws<WireFormatException>(() => ChunkCodec.Decode(chunks[0].AsSpan(0, n), 1 << 20)));
    }

    [Fact]
    public void Add_ManyIncompleteTransfers_EvictsOldest()
    {
        var assembler = new ChunkAssembler(1 << 20, maxPendingTransfers: 2);
        for (int i = 0; i < 5; i++) assembler.Add($"s{i}", ChunkCodec.Split(new byte[10_000], Packet)[0]);
        Assert.Equal(2, assembler.PendingTransfers);
        Assert.Equal(3, assembler.Evicted);
    }

    [Fact]
    public void Add_DeclaredCountNotCeilingOfTotalOverChunkSize_IsRejectedWithoutHoldingIt()
    {
        // The review's chunk bomb: 77 bytes declaring 2^20 chunks of a 64 MiB payload used to pin ~17 MiB of slots.
        var assembler = new ChunkAssembler(64 << 20);
        var bomb = Forge(Guid.NewGuid(), index: 0, count: ChunkCodec.MaxChunks, total: 64 << 20, data: [7]);
        Assert.Equal(77, bomb.Length);
        Assert.Throws<WireFormatException>(() => assembler.Add("v", bomb));
        Assert.Equal(0, assembler.PendingTransfers);
        // Also wrong: two chunks for a payload that one chunk of this size would have covered, and a last chunk whose
        // size does not match the others'.
        Assert.Throws<WireFormatException>(() => assembler.Add("v", Forge(Guid.NewGuid(), 0, 3, 2000, new byte[1000])));
        Assert.Throws<WireFormatException>(() => assembler.Add("v", Forge(Guid.NewGuid(), 2, 3, 2500, new byte[900])));
        Assert.Equal(0, assembler.PendingTransfers);
    }

    [Fact]
    public void Add_OneSourceStartingManyTransfers_DoesNotEvictAnotherSourcesTransfer()
    {
        var assembler = new ChunkAssembler(1 << 20, maxPendingTransfers: 8);
        var payload = new byte[10_000];
        new Random(3).NextBytes(payload);
        var victim = ChunkCodec.Split(payload, Packet);
        Assert.Null(assembler.Add("victim", victim[0]));
        for (int i = 0; i < 100; i++) assembler.Add("attacker", ChunkCodec.Split(new byte[10_000], Packet)[0]);
        byte[]? whole = null;
        foreach (var c in victim.Skip(1)) whole ??= assembler.Add("victim", c);
        Assert.Equal(payload, whole);
    }

    [Fact]
    public void Add_NotAdmitted_IsRefusedBeforeAnythingIsHeld()
    {
        var asked = new List<(string Owner, int Count)>();
        var assembler = new ChunkAssembler(1 << 20)
        {
            Admit = (owner, header) =>
            {
                asked.Add((owner, header.Count));
                return owner == "car-0";
            },
        };
        var chunks = ChunkCodec.Split(new byte[10_000], Packet);
        var e = Assert.Throws<WireFormatException>(() => assembler.Add("car-9", "topic-9", chunks[0]));
        Assert.Equal(RejectReasons.NotInCohort, e.Reason);
        Assert.Equal(0, assembler.HeldBytes);
        Assert.Equal(0, assembler.PendingTransfers);
        Assert.Null(assembler.Add("car-0", "topic-0", chunks[0]));
        Assert.Null(assembler.Add("car-0", "topic-0", chunks[1])); // same transfer: asked once
        Assert.Equal([("car-9", chunks.Count), ("car-0", chunks.Count)], asked);
    }

    [Fact]
    public void Add_OwnerOverItsByteCap_DropsItsOwnTransfersOnly()
    {
        var assembler = new ChunkAssembler(1 << 20, maxTransfersPerOwner: 4, maxBytesPerOwner: 20_000);
        var honest = ChunkCodec.Split(new byte[10_000], Packet);
        Assert.Null(assembler.Add("honest", "h", honest[0]));
        var big = ChunkCodec.Split(new byte[100_000], Packet);
        var e = Assert.Throws<WireFormatException>(() =>
        {
            foreach (var c in big) assembler.Add("attacker", "a", c);
        });
        Assert.Equal(RejectReasons.Oversized, e.Reason);
        Assert.True(assembler.HeldBytesOf("attacker") <= 20_000);
        byte[]? whole = null;
        foreach (var c in honest.Skip(1)) whole ??= assembler.Add("honest", "h", c);
        Assert.NotNull(whole);
    }

    [Fact]
    public void Add_GlobalCap_LargestHolderGivesWay()
    {
        // Two victims hold one chunk each (~3 KB); a flooder starting 20 transfers would hold ~61 KB: over the 40 KB
        // cap, the owner holding the most (the flooder) gives way, never the victims.
        var assembler = new ChunkAssembler(1 << 20, maxTransfersPerOwner: 32, maxBytesPerOwner: 1 << 20, maxHeldBytes: 40_000);
        var victims = Enumerable.Range(0, 2).Select(i => ChunkCodec.Split(new byte[12_000], Packet)).ToList();
        for (int i = 0; i < victims.Count; i++) assembler.Add($"v{i}", "t", victims[i][0]);
        for (int i = 0; i < 20; i++) assembler.Add("flood", "t", ChunkCodec.Split(new byte[12_000], Packet)[0]);
        Assert.True(assembler.HeldBytes <= 40_000);
        Assert.True(assembler.Evicted > 0);
        for (int i = 0; i < victims.Count; i++)
        {
            byte[]? whole = null;
            foreach (var c in victims[i].Skip(1)) whole ??= assembler.Add($"v{i}", "t", c);
            Assert.NotNull(whole);
        }
    }

    [Fact]
    public void Add_AnyInterleavingOfOwners_StaysWithinEveryCap()
    {
        var gen = Gen.Select(Gen.Int[0, 5], Gen.Int[0, 40_000], Gen.Int[0, 3]).Array[1, 60];
        gen.Sample(steps =>
        {
            var assembler = new ChunkAssembler(1 << 20, maxPendingTransfers: 6, maxTransfersPerOwner: 2, maxBytesPerOwner: 30_000, maxHeldBytes: 70_000);
            foreach (var (owner, size, take) in steps)
            {
                var chunks = ChunkCodec.Split(new byte[size], Packet);
                foreach (var c in chunks.Take(take + 1))
                {
                    try
                    {
                        assembler.Add($"o{owner}", "t", c);
                    }
                    catch (WireFormatException e) when (e.Reason == RejectReasons.Oversized)
                    {
                        break;
                    }
                    Assert.True(assembler.HeldBytes <= 70_000);
                    Assert.True(assembler.PendingTransfers <= 6);
                    for (int o = 0; o < 6; o++) Assert.True(assembler.HeldBytesOf($"o{o}") <= 30_000);
                }
            }
        }, iter: 300);
    }

    /// <summary>A chunk with any header values (the data length field matches <paramref name="data"/>).</summary>
    internal static byte[] Forge(Guid id, int index, int count, long total, byte[] data, byte[]? hash = null)
    {
        // Format 1 (SHA-256), as an older vehicle writes it: the limits hold for both formats.
        var bytes = new byte[ChunkCodec.Sha256HeaderSize + data.Length];
        "FLCH"u8.CopyTo(bytes);
        bytes[4] = ChunkCodec.Sha256FormatVersion;
        id.TryWriteBytes(bytes.AsSpan(8, 16), bigEndian: true, out _);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(24), index);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(28), count);
        System.Buffers.Binary.BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(32), total);
        (hash ?? new byte[32]).CopyTo(bytes, 40);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(72), data.Length);
        data.CopyTo(bytes, ChunkCodec.Sha256HeaderSize);
        return bytes;
    }
}
