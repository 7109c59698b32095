// The plain receive path's passes over one update, timed apart from `fleetlearn bench ingest`: memcpy, the transfer's
// XXH3-128 over the chunks, the sum of squares and the fold (FleetLearn.Core's own FloatSegments and SquaresAccumulator),
// and two arrangements that were tried and not built: the sum of squares inside the checksum's pass, block by block, and
// the fold of several updates together in cache-sized blocks. 200 updates of the 2NN (199,210 floats) in 256 KiB chunks,
// the floats starting 77 bytes into the payload (they straddle chunks, as on the wire). Run with
// DOTNET_TieredCompilation=0 (bench/ingest-kernels.sh) so that every variant runs optimized code from its first call.
using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using System.IO.Hashing;
using System.Runtime.InteropServices;
using FleetLearn.Core.Numerics;

const int Dimension = 199_210, Updates = 200, ChunkBytes = 256 * 1024, HeadBytes = 77, Passes = 12;
int payloadBytes = HeadBytes + 4 * Dimension;
var random = new Random(1);
var updates = new byte[Updates][][];
for (int u = 0; u < Updates; u++)
{
    var payload = new byte[payloadBytes];
    random.NextBytes(payload.AsSpan(0, HeadBytes));
    var values = MemoryMarshal.Cast<byte, float>(payload.AsSpan(HeadBytes));
    for (int i = 0; i < values.Length; i++) values[i] = (float)(random.NextDouble() - 0.5) * 1e-3f;
    updates[u] = [.. payload.Chunk(ChunkBytes)]; // each chunk its own array, as each MQTT message is
}
// Each update's floats as the receive path holds them: the chunks' bytes after the headers, as one sequence, never joined.
var bodies = updates.Select(chunks => Chunks.AsSequence(chunks).Slice(HeadBytes)).ToArray();
var scratch = new byte[payloadBytes];
var sum = new float[Dimension];
var xxh3 = new XxHash128();
double sink = 0;

Report("memcpy into one reused buffer", chunks =>
{
    int at = 0;
    foreach (var c in chunks)
    {
        c.CopyTo(scratch.AsSpan(at));
        at += c.Length;
    }
});
Report("XXH3-128 over the chunks", chunks => Hash(chunks));
Report("XXH3-128, then the fold", chunks =>
{
    Hash(chunks);
    Values(chunks).Axpy(0.5f, sum);
});
Report("XXH3-128, 2-accumulator sum (main), fold", chunks =>
{
    Hash(chunks);
    var values = Values(chunks);
    sink += Main.SumOfSquares(bodies[Array.IndexOf(updates, chunks)]);
    values.Axpy(0.5f, sum);
});
Report("XXH3-128, 64-lane sum, fold (this branch)", chunks =>
{
    Hash(chunks);
    var values = Values(chunks);
    sink += values.SumOfSquares();
    values.Axpy(0.5f, sum);
});
foreach (int block in new[] { 16 * 1024, 64 * 1024, 256 * 1024 })
{
    Report($"fused: XXH3-128 and sum per {block / 1024} KiB block, fold", chunks =>
    {
        // Blocks aligned to the 64 lanes of the sum (their floats start at a multiple of 64 values), cut where chunks end.
        xxh3.Reset();
        var squares = new SquaresAccumulator();
        Span<byte> carry = stackalloc byte[4];
        int carried = 0;
        long position = 0;
        foreach (var c in chunks)
        {
            for (int at = 0; at < c.Length;)
            {
                long here = position + at;
                long next = here < HeadBytes ? HeadBytes : HeadBytes + ((here - HeadBytes) / block + 1) * block;
                var piece = c.AsSpan(at, (int)Math.Min(next - here, c.Length - at));
                at += piece.Length;
                xxh3.Append(piece);
                if (here + piece.Length <= HeadBytes) continue;
                if (carried > 0)
                {
                    int take = Math.Min(4 - carried, piece.Length);
                    piece[..take].CopyTo(carry[carried..]);
                    carried += take;
                    piece = piece[take..];
                    if (carried < 4) continue;
                    squares.Add(MemoryMarshal.Cast<byte, float>(carry));
                    carried = 0;
                }
                int whole = piece.Length & ~3;
                squares.Add(MemoryMarshal.Cast<byte, float>(piece[..whole]));
                carried = piece.Length - whole;
                piece[whole..].CopyTo(carry);
            }
            position += c.Length;
        }
        sink += xxh3.GetCurrentHashAsUInt128() == UInt128.Zero ? 1 : 0;
        sink += squares.Total;
        Values(chunks).Axpy(0.5f, sum);
    });
}
foreach (int batch in new[] { 2, 4, 8 })
{
    foreach (int block in new[] { 4096, 16384 })
    {
        var waiting = new List<ReadOnlySequence<byte>>();
        Report($"batched: fold {batch} updates in {block}-value blocks", chunks =>
        {
            Hash(chunks);
            var body = bodies[Array.IndexOf(updates, chunks)];
            sink += new FloatSegments(body).SumOfSquares();
            waiting.Add(body);
            if (waiting.Count < batch) return;
            for (int start = 0; start < Dimension; start += block)
            {
                int count = Math.Min(block, Dimension - start);
                foreach (var b in waiting) new FloatSegments(b.Slice(4L * start, 4L * count)).Axpy(0.5f, sum.AsSpan(start, count));
            }
            waiting.Clear();
        });
    }
}
Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"(checksum of the results, so that nothing is optimized away: {sink:G6})"));

void Hash(byte[][] chunks)
{
    xxh3.Reset();
    foreach (var c in chunks) xxh3.Append(c);
    sink += xxh3.GetCurrentHashAsUInt128() == UInt128.Zero ? 1 : 0;
}

// One update's floats as the receive path holds them: the chunks' bytes after the headers, never joined.
FloatSegments Values(byte[][] chunks) => new(bodies[Array.IndexOf(updates, chunks)]);

void Report(string name, Action<byte[][]> body)
{
    double best = double.MaxValue;
    var each = new List<double>();
    for (int pass = 0; pass < Passes; pass++)
    {
        long total = 0;
        foreach (var u in updates)
        {
            long t0 = Stopwatch.GetTimestamp();
            body(u);
            long t = Stopwatch.GetTimestamp() - t0;
            total += t;
            if (pass >= 2) each.Add(t * 1e6 / Stopwatch.Frequency);
        }
        if (pass >= 2) best = Math.Min(best, total * 1e6 / Stopwatch.Frequency / Updates);
    }
    each.Sort();
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{name,-52} best pass {best,6:F1} µs an update, median {each[each.Count / 2],6:F1}"));
}

/// <summary>Chunk arrays as one byte sequence (a segment per chunk, as ChunkAssembler returns a transfer).</summary>
internal sealed class Chunks : ReadOnlySequenceSegment<byte>
{
    private Chunks(ReadOnlyMemory<byte> memory, long runningIndex) => (Memory, RunningIndex) = (memory, runningIndex);

    public static ReadOnlySequence<byte> AsSequence(byte[][] chunks)
    {
        var first = new Chunks(chunks[0], 0);
        var last = first;
        foreach (var c in chunks.Skip(1))
        {
            var next = new Chunks(c, last.RunningIndex + last.Memory.Length);
            last.Next = next;
            last = next;
        }
        return new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
    }
}

/// <summary>main's (f14da99) sum of squares, run by run over the segments: two Vector&lt;double&gt; accumulators.</summary>
internal static class Main
{
    public static double SumOfSquares(ReadOnlySequence<byte> body)
    {
        double total = 0;
        Span<byte> carry = stackalloc byte[4];
        int carried = 0;
        foreach (var memory in body)
        {
            var span = memory.Span;
            if (carried > 0)
            {
                int take = Math.Min(4 - carried, span.Length);
                span[..take].CopyTo(carry[carried..]);
                carried += take;
                span = span[take..];
                if (carried < 4) continue;
                total += Run(MemoryMarshal.Cast<byte, float>(carry));
                carried = 0;
            }
            int whole = span.Length & ~3;
            total += Run(MemoryMarshal.Cast<byte, float>(span[..whole]));
            carried = span.Length - whole;
            span[whole..].CopyTo(carry);
        }
        return total;
    }

    private static double Run(ReadOnlySpan<float> x)
    {
        double sum = 0;
        int i = 0;
        if (System.Numerics.Vector.IsHardwareAccelerated && x.Length >= System.Numerics.Vector<float>.Count)
        {
            var acc0 = System.Numerics.Vector<double>.Zero;
            var acc1 = System.Numerics.Vector<double>.Zero;
            var vectors = MemoryMarshal.Cast<float, System.Numerics.Vector<float>>(x);
            foreach (var v in vectors)
            {
                System.Numerics.Vector.Widen(v, out System.Numerics.Vector<double> lo, out System.Numerics.Vector<double> hi);
                acc0 += lo * lo;
                acc1 += hi * hi;
            }
            sum = System.Numerics.Vector.Sum(acc0 + acc1);
            i = vectors.Length * System.Numerics.Vector<float>.Count;
        }
        for (; i < x.Length; i++) sum += (double)x[i] * x[i];
        return sum;
    }
}
