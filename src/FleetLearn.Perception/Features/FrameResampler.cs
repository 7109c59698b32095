namespace FleetLearn.Perception.Features;

/// <summary>
/// Converts frames between shapes <c>[C, H, W]</c>: grey to RGB by repeating the channel, and a bilinear resize
/// (half-pixel centres, as PIL and torchvision resize), e.g. Fashion-MNIST's 1×28×28 into ResNet18's 3×224×224.
/// </summary>
public sealed class FrameResampler
{
    private readonly int _sc, _sh, _sw, _dc, _dh, _dw;
    private readonly int[] _y0, _y1, _x0, _x1;
    private readonly float[] _fy, _fx;

    /// <summary>Prepares the conversion from <paramref name="source"/> to <paramref name="destination"/> (each <c>[C, H, W]</c>, C 1 or 3).</summary>
    public FrameResampler(IReadOnlyList<int> source, IReadOnlyList<int> destination)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(destination);
        if (source.Count != 3 || destination.Count != 3 || source.Any(d => d < 1) || destination.Any(d => d < 1))
            throw new ArgumentException($"Frames are [channels, height, width]; got [{string.Join(",", source)}] → [{string.Join(",", destination)}].");
        (_sc, _sh, _sw, _dc, _dh, _dw) = (source[0], source[1], source[2], destination[0], destination[1], destination[2]);
        if (!(_sc == _dc || _sc == 1))
            throw new ArgumentException($"Cannot turn {_sc}-channel frames into {_dc}-channel ones (only grey → RGB is defined).");
        (_y0, _y1, _fy) = Axis(_sh, _dh);
        (_x0, _x1, _fx) = Axis(_sw, _dw);
    }

    /// <summary>Floats per source frame.</summary>
    public int SourceSize => _sc * _sh * _sw;

    /// <summary>Floats per converted frame.</summary>
    public int DestinationSize => _dc * _dh * _dw;

    /// <summary>Converts one frame.</summary>
    public void Convert(ReadOnlySpan<float> source, Span<float> destination)
    {
        if (source.Length != SourceSize) throw new ArgumentException($"Expected {SourceSize} floats; got {source.Length}.", nameof(source));
        if (destination.Length != DestinationSize) throw new ArgumentException($"Expected room for {DestinationSize} floats; got {destination.Length}.", nameof(destination));
        int plane = _dh * _dw, sourcePlane = _sh * _sw;
        for (int c = 0; c < _dc; c++)
        {
            var dst = destination.Slice(c * plane, plane);
            if (c > 0 && _sc == 1)
            {
                destination[..plane].CopyTo(dst); // grey → RGB: the same plane three times
                continue;
            }
            var src = source.Slice(c * sourcePlane, sourcePlane);
            for (int y = 0; y < _dh; y++)
            {
                int r0 = _y0[y] * _sw, r1 = _y1[y] * _sw;
                float fy = _fy[y];
                var row = dst.Slice(y * _dw, _dw);
                for (int x = 0; x < _dw; x++)
                {
                    float top = src[r0 + _x0[x]] + (src[r0 + _x1[x]] - src[r0 + _x0[x]]) * _fx[x];
                    float bottom = src[r1 + _x0[x]] + (src[r1 + _x1[x]] - src[r1 + _x0[x]]) * _fx[x];
                    row[x] = top + (bottom - top) * fy;
                }
            }
        }
    }

    /// <summary>For each destination coordinate: the two source coordinates and the weight of the second.</summary>
    private static (int[] Low, int[] High, float[] Weight) Axis(int source, int destination)
    {
        var low = new int[destination];
        var high = new int[destination];
        var weight = new float[destination];
        double scale = (double)source / destination;
        for (int i = 0; i < destination; i++)
        {
            double s = Math.Clamp((i + 0.5) * scale - 0.5, 0, source - 1);
            low[i] = (int)Math.Floor(s);
            high[i] = Math.Min(low[i] + 1, source - 1);
            weight[i] = (float)(s - low[i]);
        }
        return (low, high, weight);
    }
}
