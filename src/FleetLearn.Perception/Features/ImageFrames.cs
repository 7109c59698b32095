using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using SixLabors.ImageSharp.Processing;

namespace FleetLearn.Perception.Features;

/// <summary>Thrown when an image or video cannot be decoded into frames; the message names the file and the cause.</summary>
public sealed class FrameDecodeException : Exception
{
    /// <summary>Creates the exception.</summary>
    public FrameDecodeException(string message) : base(message) { }

    /// <summary>Creates the exception with its cause.</summary>
    public FrameDecodeException(string message, Exception inner) : base(message, inner) { }
}

/// <summary>
/// Decodes image files (PNG, JPEG, and the other formats ImageSharp reads) into backbone input rows: converted to
/// grey or RGB, resized to the frame size (bicubic; aspect ratio not kept, as camera frames already share one), scaled
/// to [0, 1] and normalized as the <see cref="FrameFormat"/> says.
/// </summary>
public static class ImageFrames
{
    /// <summary>Largest image file accepted.</summary>
    public const long MaxFileBytes = 64L << 20;

    /// <summary>Reads and decodes one image file into <paramref name="destination"/> (<see cref="FrameFormat.Size"/> floats).</summary>
    public static void Load(string path, FrameFormat format, Span<float> destination)
    {
        ArgumentNullException.ThrowIfNull(path);
        var info = new FileInfo(path);
        if (!info.Exists) throw new FileNotFoundException($"Image '{path}' does not exist.", path);
        if (info.Length > MaxFileBytes) throw new FrameDecodeException($"Image '{path}' is {info.Length} bytes, over the {MaxFileBytes >> 20} MiB limit.");
        Decode(File.ReadAllBytes(path), format, destination, path);
    }

    /// <summary>Decodes an encoded image held in memory.</summary>
    public static void Decode(byte[] encoded, FrameFormat format, Span<float> destination, string name = "image")
    {
        ArgumentNullException.ThrowIfNull(encoded);
        ArgumentNullException.ThrowIfNull(format);
        if (destination.Length != format.Size) throw new ArgumentException($"Expected room for {format.Size} floats; got {destination.Length}.", nameof(destination));
        try
        {
            // Check the declared size before decoding: a small file can declare a huge image.
            var header = Image.Identify(encoded) ?? throw new FrameDecodeException($"'{name}' is not an image in a format FleetLearn reads (PNG, JPEG, BMP, GIF, TGA, TIFF, WebP).");
            if ((long)header.Width * header.Height > FrameFormat.MaxPixels)
                throw new FrameDecodeException($"'{name}' is {header.Width}×{header.Height} pixels, over the limit of {FrameFormat.MaxPixels} pixels.");
            var pixels = new byte[format.Height * format.Width * format.Channels];
            if (format.Channels == 1)
            {
                using var image = Image.Load<L8>(encoded);
                Resize(image, format);
                image.CopyPixelDataTo(pixels);
            }
            else
            {
                using var image = Image.Load<Rgb24>(encoded);
                Resize(image, format);
                image.CopyPixelDataTo(pixels);
            }
            format.FromInterleaved(pixels, destination);
        }
        catch (ImageFormatException e)
        {
            throw new FrameDecodeException($"'{name}' cannot be decoded: {e.Message}", e);
        }
    }

    private static void Resize<TPixel>(Image<TPixel> image, FrameFormat format)
        where TPixel : unmanaged, IPixel<TPixel>
    {
        if (image.Width != format.Width || image.Height != format.Height)
            image.Mutate(x => x.Resize(format.Width, format.Height, KnownResamplers.Bicubic));
    }
}
