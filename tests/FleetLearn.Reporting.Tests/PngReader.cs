using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;

namespace FleetLearn.Reporting.Tests;

/// <summary>
/// An independent, strict PNG reader for the tests: checks the signature and every chunk's CRC
/// (bitwise CRC-32, not the encoder's table), inflates IDAT and undoes the scanline filters.
/// </summary>
internal sealed class PngReader
{
    public int Width { get; private init; }
    public int Height { get; private init; }
    public byte BitDepth { get; private init; }
    public byte ColorType { get; private init; }
    public List<string> ChunkTypes { get; } = [];
    public Dictionary<string, string> Text { get; } = [];
    public int InflatedLength { get; private set; }
    public byte[] Rgb { get; private set; } = [];

    public static PngReader Read(byte[] png)
    {
        byte[] signature = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];
        Assert.True(png.AsSpan(0, 8).SequenceEqual(signature), "bad PNG signature");
        var pos = 8;
        PngReader? reader = null;
        using var idat = new MemoryStream();
        var types = new List<string>();
        var text = new Dictionary<string, string>();
        while (pos < png.Length)
        {
            var length = BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(pos));
            var type = Encoding.ASCII.GetString(png, pos + 4, 4);
            var data = png.AsSpan(pos + 8, length);
            var crc = BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(pos + 8 + length));
            Assert.True(BitwiseCrc32(png.AsSpan(pos + 4, 4 + length)) == crc, $"CRC mismatch in chunk {type}");
            types.Add(type);
            switch (type)
            {
                case "IHDR":
                    Assert.Equal(13, length);
                    reader = new PngReader
                    {
                        Width = BinaryPrimitives.ReadInt32BigEndian(data),
                        Height = BinaryPrimitives.ReadInt32BigEndian(data[4..]),
                        BitDepth = data[8],
                        ColorType = data[9],
                    };
                    Assert.Equal(0, data[10]);
                    Assert.Equal(0, data[11]);
                    Assert.Equal(0, data[12]);
                    break;
                case "IDAT":
                    idat.Write(data);
                    break;
                case "tEXt":
                    var sep = data.IndexOf((byte)0);
                    text[Encoding.Latin1.GetString(data[..sep])] = Encoding.Latin1.GetString(data[(sep + 1)..]);
                    break;
            }
            pos += 12 + length;
        }
        Assert.Equal(png.Length, pos);
        Assert.NotNull(reader);
        Assert.Equal("IHDR", types[0]);
        Assert.Equal("IEND", types[^1]);
        reader.ChunkTypes.AddRange(types);
        foreach (var kv in text)
            reader.Text[kv.Key] = kv.Value;

        idat.Position = 0;
        using var inflated = new MemoryStream();
        using (var z = new ZLibStream(idat, CompressionMode.Decompress))
            z.CopyTo(inflated);
        var raw = inflated.ToArray();
        reader.InflatedLength = raw.Length;
        if (reader.BitDepth == 8 && reader.ColorType == 2 && raw.Length == reader.Height * (1 + reader.Width * 3))
            reader.Rgb = Unfilter(raw, reader.Width, reader.Height, 3);
        return reader;
    }

    public (byte R, byte G, byte B) Pixel(int x, int y)
    {
        var o = (y * Width + x) * 3;
        return (Rgb[o], Rgb[o + 1], Rgb[o + 2]);
    }

    private static byte[] Unfilter(byte[] raw, int width, int height, int bpp)
    {
        var stride = width * bpp;
        var output = new byte[height * stride];
        for (var y = 0; y < height; y++)
        {
            var filter = raw[y * (stride + 1)];
            Assert.InRange(filter, (byte)0, (byte)4);
            for (var i = 0; i < stride; i++)
            {
                int x = raw[y * (stride + 1) + 1 + i];
                int a = i >= bpp ? output[y * stride + i - bpp] : 0;
                int b = y > 0 ? output[(y - 1) * stride + i] : 0;
                int c = i >= bpp && y > 0 ? output[(y - 1) * stride + i - bpp] : 0;
                var p = filter switch
                {
                    0 => 0,
                    1 => a,
                    2 => b,
                    3 => (a + b) / 2,
                    _ => Paeth(a, b, c),
                };
                output[y * stride + i] = (byte)(x + p);
            }
        }
        return output;
    }

    private static int Paeth(int a, int b, int c)
    {
        var p = a + b - c;
        int pa = Math.Abs(p - a), pb = Math.Abs(p - b), pc = Math.Abs(p - c);
        return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
    }

    /// <summary>CRC-32 computed bit by bit, independent of the encoder's lookup table.</summary>
    public static uint BitwiseCrc32(ReadOnlySpan<byte> data)
    {
        var crc = 0xFFFFFFFFu;
        foreach (var b in data)
        {
            crc ^= b;
            for (var k = 0; k < 8; k++)
                crc = (crc >> 1) ^ (0xEDB88320u & (uint)-(int)(crc & 1));
        }
        return ~crc;
    }
}
