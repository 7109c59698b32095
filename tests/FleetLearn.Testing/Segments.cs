using System.Buffers;

namespace FleetLearn.Testing;

/// <summary>Byte sequences cut into segments at chosen places, as a reassembled chunked transfer is.</summary>
public static class Segments
{
    /// <summary><paramref name="bytes"/> as a sequence cut before each offset in <paramref name="cuts"/> (any order, duplicates and out-of-range values ignored).</summary>
    public static ReadOnlySequence<byte> Cut(byte[] bytes, IEnumerable<int> cuts)
    {
        var at = cuts.Where(c => c > 0 && c < bytes.Length).Distinct().Order().Append(bytes.Length).ToArray();
        if (at.Length == 1) return new ReadOnlySequence<byte>(bytes);
        Segment? first = null, last = null;
        int start = 0;
        foreach (int end in at)
        {
            var piece = bytes.AsMemory(start, end - start).ToArray(); // each segment its own array, as each chunk is
            last = last is null ? first = new Segment(piece, 0) : last.Append(piece);
            start = end;
        }
        return new ReadOnlySequence<byte>(first!, 0, last!, last!.Memory.Length);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory, long runningIndex) => (Memory, RunningIndex) = (memory, runningIndex);

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Segment(memory, RunningIndex + Memory.Length);
            Next = next;
            return next;
        }
    }
}
