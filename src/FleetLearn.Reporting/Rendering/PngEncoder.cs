using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;

namespace FleetLearn.Reporting.Rendering;

/// <summary>Writes 8-bit RGB PNG files (ISO/IEC 15948, W3C PNG 2nd ed.).</summary>
internal static class PngEncoder
{
    /// <summary>The 8-byte PNG signature (PNG spec §5.2).</summary>
    public static ReadOnlySpan<byte> Signature => [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];

    private static readonly uint[] s_crcTable = BuildCrcTable();

    /// <summary>Encodes packed RGB rows (3 bytes a pixel, no padding) as a PNG.</summary>
    public static byte[] Encode(int width, int height, ReadOnlySpan<byte> rgb, string? title = null)
    {
        if (width <= 0 || height <= 0 || rgb.Length != checked(width * height * 3))
            throw new ArgumentException($"Expected {width}×{height}×3 bytes of RGB, got {rgb.Length}.", nameof(rgb));

        using var png = new MemoryStream();
        png.Write(Signature);

        Span<byte> ihdr = stackalloc byte[13];
        BinaryPrimitives.WriteInt32BigEndian(ihdr, width);
        BinaryPrimitives.WriteInt32BigEndian(ihdr[4..], height);
        ihdr[8] = 8;  // bit depth
        ihdr[9] = 2;  // colour type: truecolour
        ihdr[10] = 0; // deflate
        ihdr[11] = 0; // adaptive filtering
        ihdr[12] = 0; // no interlace
        WriteChunk(png, "IHDR", ihdr);

        if (!string.IsNullOrEmpty(title))
        {
            // tEXt is Latin-1 (PNG spec §11.3.4.3); anything else becomes '?'.
            var text = Encoding.Latin1.GetBytes("Title\0" + title);
            WriteChunk(png, "tEXt", text);
        }

        WriteChunk(png, "IDAT", Compress(width, height, rgb));
        WriteChunk(png, "IEND", []);
        return png.ToArray();
    }

    /// <summary>CRC-32 (ISO 3309, polynomial 0xEDB88320 reflected) as PNG spec Annex D computes it.</summary>
    public static uint Crc32(ReadOnlySpan<byte> data, uint crc = 0)
    {
        var c = ~crc;
        foreach (var b in data)
            c = s_crcTable[(c ^ b) & 0xFF] ^ (c >> 8);
        return ~c;
    }

    /// <summary>Filters each scanline (PNG spec §9: choosing per row the filter with the least sum of absolute values) and deflates.</summary>
    private static byte[] Compress(int width, int height, ReadOnlySpan<byte> rgb)
    {
        const int bpp = 3;
        var stride = width * bpp;
        var filtered = new byte[height * (stride + 1)];
        var candidate = new byte[stride];
        var best = new byte[stride];
        for (var y = 0; y < height; y++)
        {
            var row = rgb.Slice(y * stride, stride);
            var prior = y > 0 ? rgb.Slice((y - 1) * stride, stride) : default;
            var bestType = 0;
            var bestScore = long.MaxValue;
            for (var type = 0; type <= 4; type++)
            {
                Filter(type, row, prior, candidate, bpp);
                long score = 0;
                foreach (var v in candidate)
                    score += v < 128 ? v : 256 - v;
                if (score < bestScore)
                {
                    bestScore = score;
                    bestType = type;
                    candidate.CopyTo(best, 0);
                }
            }
            filtered[y * (stride + 1)] = (byte)bestType;
            best.CopyTo(filtered, y * (stride + 1) + 1);
        }

        using var output = new MemoryStream();
        using (var zlib = new ZLibStream(output, CompressionLevel.Optimal, leaveOpen: true))
            zlib.Write(filtered);
        return output.ToArray();
    }

    /// <summary>Applies one of the five filter types of PNG spec §9.2 to a scanline; an empty prior row reads as zeros.</summary>
    private static void Filter(int type, ReadOnlySpan<byte> row, ReadOnlySpan<byte> prior, Span<byte> output, int bpp)
    {
        var hasPrior = !prior.IsEmpty;
        switch (type)
        {
            case 0:
                row.CopyTo(output);
                break;
            case 1:
                for (var i = 0; i < row.Length; i++)
                    output[i] = (byte)(row[i] - (i >= bpp ? row[i - bpp] : 0));
                break;
            case 2:
                for (var i = 0; i < row.Length; i++)
                    output[i] = (byte)(row[i] - (hasPrior ? prior[i] : 0));
                break;
            case 3:
                for (var i = 0; i < row.Length; i++)
                    output[i] = (byte)(row[i] - (((i >= bpp ? row[i - bpp] : 0) + (hasPrior ? prior[i] : 0)) >> 1));
                break;
            default:
                for (var i = 0; i < row.Length; i++)
                {
                    int a = i >= bpp ? row[i - bpp] : 0;
                    int b = hasPrior ? prior[i] : 0;
                    int c = i >= bpp && hasPrior ? prior[i - bpp] : 0;
                    output[i] = (byte)(row[i] - Paeth(a, b, c));
                }
                break;
        }
    }

    private static int Paeth(int a, int b, int c)
    {
        var p = a + b - c;
        int pa = Math.Abs(p - a), pb = Math.Abs(p - b), pc = Math.Abs(p - c);
        return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
    }

    private static void WriteChunk(Stream s, string type, ReadOnlySpan<byte> data)
    {
        Span<byte> header = stackalloc byte[8];
        BinaryPrimitives.WriteInt32BigEndian(header, data.Length);
        Encoding.ASCII.GetBytes(type, header[4..]);
        s.Write(header);
        s.Write(data);
        var crc = Crc32(data, Crc32(header[4..]));
        Span<byte> tail = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(tail, crc);
        s.Write(tail);
    }

    private static uint[] BuildCrcTable()
    {
        var table = new uint[256];
        for (uint n = 0; n < 256; n++)
        {
            var c = n;
            for (var k = 0; k < 8; k++)
                c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[n] = c;
        }
        return table;
    }
}
