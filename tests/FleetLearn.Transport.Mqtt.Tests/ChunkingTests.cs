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
            Assert.Contains("SHA-256", e.Message, StringComparison.Ordinal);
        });
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
}
