using System.Globalization;

namespace FleetLearn.Perception.Features;

/// <summary>
/// How a frame becomes a backbone's input row: <c>Channels × Height × Width</c> floats (CHW, the layout of ONNX
/// image models), grey (1 channel) or RGB (3 channels), pixels scaled to [0, 1], then optionally
/// <c>(x − mean[c]) / std[c]</c> per channel (e.g. ImageNet's mean and std for a torchvision backbone).
/// </summary>
public sealed record FrameFormat
{
    /// <summary>Creates a format; throws on a shape FleetLearn cannot fill from an image.</summary>
    public FrameFormat(int channels, int height, int width, IReadOnlyList<float>? mean = null, IReadOnlyList<float>? std = null)
    {
        if (channels is not (1 or 3))
            throw new ArgumentException($"Frames have 1 (grey) or 3 (RGB) channels; the backbone wants {channels}.", nameof(channels));
        if (height < 1 || width < 1 || (long)height * width > MaxPixels)
            throw new ArgumentException($"Frame size {width}×{height} is outside 1..{MaxPixels} pixels.", nameof(height));
        if (mean is not null && mean.Count != channels) throw new ArgumentException($"Mean needs {channels} values; got {mean.Count}.", nameof(mean));
        if (std is not null && (std.Count != channels || std.Any(s => !(s > 0))))
            throw new ArgumentException($"Std needs {channels} positive values.", nameof(std));
        Channels = channels;
        Height = height;
        Width = width;
        Mean = mean?.ToArray();
        Std = std?.ToArray();
    }

    /// <summary>Largest frame accepted, in pixels (guards against decompression bombs).</summary>
    public const long MaxPixels = 16L << 20;

    /// <summary>1 (grey) or 3 (RGB).</summary>
    public int Channels { get; }

    /// <summary>Rows of pixels.</summary>
    public int Height { get; }

    /// <summary>Columns of pixels.</summary>
    public int Width { get; }

    /// <summary>Per-channel mean subtracted after scaling to [0, 1], or null.</summary>
    public IReadOnlyList<float>? Mean { get; }

    /// <summary>Per-channel standard deviation divided by, or null.</summary>
    public IReadOnlyList<float>? Std { get; }

    /// <summary>Floats per frame.</summary>
    public int Size => Channels * Height * Width;

    /// <summary>The format of a backbone input row <c>[C, H, W]</c>.</summary>
    public static FrameFormat FromRowShape(IReadOnlyList<int> rowShape, IReadOnlyList<float>? mean = null, IReadOnlyList<float>? std = null)
    {
        ArgumentNullException.ThrowIfNull(rowShape);
        if (rowShape.Count != 3)
            throw new ArgumentException($"A frame input row has shape [channels, height, width]; this backbone's is [{string.Join(",", rowShape)}].", nameof(rowShape));
        return new FrameFormat(rowShape[0], rowShape[1], rowShape[2], mean, std);
    }

    /// <summary>Parses <c>CxHxW</c>, e.g. <c>1x28x28</c> or <c>3x224x224</c>.</summary>
    public static int[] ParseShape(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var parts = text.Split(['x', 'X', ',', '-'], StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        var dims = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
        {
            if (!int.TryParse(parts[i], NumberStyles.None, CultureInfo.InvariantCulture, out dims[i]) || dims[i] < 1)
                throw new FormatException($"Shape '{text}': '{parts[i]}' is not a positive dimension; expected e.g. 1x28x28.");
        }
        if (dims.Length == 0) throw new FormatException($"Shape '{text}' is empty; expected e.g. 1x28x28.");
        return dims;
    }

    /// <summary>A stable description (part of the feature cache's identity).</summary>
    public string Describe() => string.Create(CultureInfo.InvariantCulture,
        $"{Channels}x{Height}x{Width};mean={(Mean is null ? "-" : string.Join(",", Mean))};std={(Std is null ? "-" : string.Join(",", Std))}");

    /// <summary>Fills a CHW row from interleaved 8-bit pixels (HWC, <see cref="Channels"/> bytes per pixel).</summary>
    public void FromInterleaved(ReadOnlySpan<byte> pixels, Span<float> destination)
    {
        int plane = Height * Width;
        if (pixels.Length != plane * Channels) throw new ArgumentException($"Expected {plane * Channels} pixel bytes; got {pixels.Length}.", nameof(pixels));
        if (destination.Length != Size) throw new ArgumentException($"Expected room for {Size} floats; got {destination.Length}.", nameof(destination));
        const float scale = 1f / 255f;
        for (int c = 0; c < Channels; c++)
        {
            float mean = Mean?[c] ?? 0f, inv = 1f / (Std?[c] ?? 1f);
            var dst = destination.Slice(c * plane, plane);
            for (int i = 0; i < plane; i++) dst[i] = (pixels[i * Channels + c] * scale - mean) * inv;
        }
    }
}
