using SkiaSharp;

namespace FleetLearn.Reporting;

/// <summary>Writes a grey-scale image (e.g. a 28×28 camera crop or its reconstruction) as a PNG.</summary>
public static class GrayImage
{
    /// <summary>
    /// Encodes <paramref name="pixels"/> (row-major, <paramref name="width"/> × height) as a PNG,
    /// each pixel drawn as a <paramref name="scale"/>×<paramref name="scale"/> block. With
    /// <paramref name="normalize"/> the values are min–max stretched to black..white; otherwise
    /// they are clamped to [0, 1]. NaN draws as mid grey.
    /// </summary>
    public static byte[] ToPng(ReadOnlySpan<float> pixels, int width, int scale = 8, bool normalize = false)
    {
        if (width <= 0 || pixels.Length == 0 || pixels.Length % width != 0)
            throw new ArgumentException($"{pixels.Length} pixels do not make rows of {width}.", nameof(pixels));
        ArgumentOutOfRangeException.ThrowIfLessThan(scale, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(scale, 64);
        int height = pixels.Length / width;
        float min = 0, max = 1;
        if (normalize)
        {
            min = float.PositiveInfinity;
            max = float.NegativeInfinity;
            foreach (var p in pixels)
            {
                if (!float.IsFinite(p)) continue;
                min = Math.Min(min, p);
                max = Math.Max(max, p);
            }
            if (!(max > min))
            {
                min = 0;
                max = 1;
            }
        }
        int w = width * scale, h = height * scale;
        using var bitmap = new SKBitmap(new SKImageInfo(w, h, SKColorType.Gray8, SKAlphaType.Opaque));
        var grey = new byte[w * h];
        for (int y = 0; y < h; y++)
        {
            for (int x = 0; x < w; x++)
            {
                float v = pixels[(y / scale) * width + x / scale];
                grey[y * w + x] = float.IsFinite(v) ? (byte)Math.Round(255 * Math.Clamp((v - min) / (max - min), 0, 1)) : (byte)128;
            }
        }
        var rows = bitmap.GetPixels();
        for (int y = 0; y < h; y++) System.Runtime.InteropServices.Marshal.Copy(grey, y * w, rows + y * bitmap.RowBytes, w);
        using var image = SKImage.FromBitmap(bitmap);
        using var png = image.Encode(SKEncodedImageFormat.Png, 100);
        return png.ToArray();
    }
}
