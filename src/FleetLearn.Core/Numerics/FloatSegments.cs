using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace FleetLearn.Core.Numerics;

/// <summary>float32 values, little-endian, across the segments of a byte sequence: a received update read where it arrived, never joined.</summary>
/// <remarks>
/// Each segment's whole floats are read in place as a span (unaligned loads are free on x64 and arm64); a float whose four
/// bytes straddle two segments is put together in a 4-byte buffer. Every operation visits the values in index order, and
/// its result equals, bit for bit, that of the <see cref="VectorMath"/> operation on the joined array.
/// </remarks>
public readonly struct FloatSegments
{
    private readonly ReadOnlySequence<byte> _bytes;

    /// <summary>The floats in <paramref name="bytes"/> (a multiple of 4 bytes).</summary>
    public FloatSegments(ReadOnlySequence<byte> bytes)
    {
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("FloatSegments reads the wire's little-endian floats in place; decode into an array on big-endian hosts.");
        if (bytes.Length % 4 != 0) throw new ArgumentException($"{bytes.Length} bytes are not a whole number of float32 values.", nameof(bytes));
        _bytes = bytes;
        Count = checked((int)(bytes.Length / 4));
    }

    /// <summary>Number of values.</summary>
    public int Count { get; }

    /// <summary>True when every value is finite (no NaN, no ±∞).</summary>
    public bool AllFinite()
    {
        var v = new FiniteVisitor();
        Visit(ref v);
        return v.Finite;
    }

    /// <summary>
    /// Σ x², each square widened to double (<see cref="SquaresAccumulator"/>): finite exactly when every value is, and the
    /// same bits as <see cref="VectorMath.SumOfSquares"/> on the joined array wherever the segments are cut.
    /// </summary>
    public double SumOfSquares()
    {
        var v = new SquaresVisitor();
        Visit(ref v);
        return v.Sums.Total;
    }

    /// <summary><c>y += a·x</c> (as <see cref="VectorMath.Axpy"/>).</summary>
    public void Axpy(float a, Span<float> y)
    {
        if (y.Length != Count) throw new ArgumentException($"Length mismatch: {Count} vs {y.Length}.", nameof(y));
        var v = new AxpyVisitor(a, y);
        Visit(ref v);
    }

    /// <summary>Copies the values into <paramref name="destination"/>.</summary>
    public void CopyTo(Span<float> destination)
    {
        if (destination.Length < Count) throw new ArgumentException($"Destination holds {destination.Length} values; {Count} needed.", nameof(destination));
        var v = new CopyVisitor(destination);
        Visit(ref v);
    }

    /// <summary>The values as a new array.</summary>
    public float[] ToArray()
    {
        var values = GC.AllocateUninitializedArray<float>(Count);
        CopyTo(values);
        return values;
    }

    /// <summary>Calls the visitor with consecutive runs of values (a run at index <c>offset</c>), in order, until it returns false.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // a few calls per update: see VectorMath.Axpy
    private void Visit<T>(ref T visitor) where T : struct, IRunVisitor, allows ref struct
    {
        Span<byte> carry = stackalloc byte[4];
        int carried = 0, offset = 0;
        foreach (var memory in _bytes)
        {
            var span = memory.Span;
            if (carried > 0)
            {
                int take = Math.Min(4 - carried, span.Length);
                span[..take].CopyTo(carry[carried..]);
                carried += take;
                span = span[take..];
                if (carried < 4) continue;
                float straddling = BinaryPrimitives.ReadSingleLittleEndian(carry);
                if (!visitor.Visit(new ReadOnlySpan<float>(in straddling), offset)) return;
                offset++;
                carried = 0;
            }
            int whole = span.Length >> 2;
            if (whole > 0)
            {
                if (!visitor.Visit(MemoryMarshal.Cast<byte, float>(span[..(whole << 2)]), offset)) return;
                offset += whole;
            }
            carried = span.Length & 3;
            span[(whole << 2)..].CopyTo(carry);
        }
    }

    private interface IRunVisitor
    {
        bool Visit(scoped ReadOnlySpan<float> run, int offset);
    }

    private struct FiniteVisitor() : IRunVisitor
    {
        public bool Finite = true;

        public bool Visit(scoped ReadOnlySpan<float> run, int offset) => Finite = VectorMath.AllFinite(run);
    }

    private struct SquaresVisitor : IRunVisitor
    {
        public SquaresAccumulator Sums;

        public bool Visit(scoped ReadOnlySpan<float> run, int offset)
        {
            Sums.Add(run); // runs come in index order: Sums.Count == offset
            return true;
        }
    }

    private readonly ref struct AxpyVisitor(float a, Span<float> y) : IRunVisitor
    {
        private readonly Span<float> _y = y;

        public bool Visit(scoped ReadOnlySpan<float> run, int offset)
        {
            VectorMath.Axpy(a, run, _y.Slice(offset, run.Length));
            return true;
        }
    }

    private readonly ref struct CopyVisitor(Span<float> destination) : IRunVisitor
    {
        private readonly Span<float> _destination = destination;

        public bool Visit(scoped ReadOnlySpan<float> run, int offset)
        {
            run.CopyTo(_destination[offset..]);
            return true;
        }
    }
}
