using System.Buffers.Binary;
using System.IO.Compression;

namespace FleetLearn.Reporting.Rendering;

/// <summary>One rasterised glyph: alpha coverage with its offset from the pen position on the baseline.</summary>
internal sealed record Glyph(double Advance, int Left, int Top, int Width, int Height, byte[] Alpha);

/// <summary>One face at one pixel size.</summary>
internal sealed class GlyphFace(FontMetrics metrics, Dictionary<char, Glyph> glyphs)
{
    private readonly Dictionary<char, Glyph> _glyphs = glyphs;

    public FontMetrics Metrics { get; } = metrics;

    /// <summary>The glyph for a character; characters the atlas lacks fall back to '?'.</summary>
    public Glyph Get(char c) => _glyphs.TryGetValue(c, out var g) ? g : _glyphs['?'];

    /// <summary>Whether the atlas has a glyph for the character.</summary>
    public bool Has(char c) => _glyphs.ContainsKey(c);

    /// <summary>Advance width of a string in pixels.</summary>
    public double Measure(string text)
    {
        var w = 0.0;
        foreach (var c in text)
            w += Get(c).Advance;
        return w;
    }
}

/// <summary>
/// The embedded anti-aliased glyph bitmaps (DejaVu Sans, see Fonts/generate_atlas.py for the format):
/// text renders the same on any machine, with or without system fonts.
/// </summary>
internal static class GlyphAtlas
{
    private static readonly Lazy<GlyphFace[]> s_faces = new(Load);

    public static GlyphFace Face(FontRole role) => s_faces.Value[(int)role];

    private static GlyphFace[] Load()
    {
        using var resource = typeof(GlyphAtlas).Assembly.GetManifestResourceStream("FleetLearn.Reporting.glyph-atlas.bin")
            ?? throw new InvalidOperationException("Embedded glyph atlas is missing.");
        using var zlib = new ZLibStream(resource, CompressionMode.Decompress);
        using var buffer = new MemoryStream();
        zlib.CopyTo(buffer);
        ReadOnlySpan<byte> data = buffer.GetBuffer().AsSpan(0, (int)buffer.Length);
        if (!data[..4].SequenceEqual("FLGA"u8) || data[4] != 2)
            throw new InvalidOperationException("Embedded glyph atlas has an unknown format.");
        var faceCount = data[5];
        var faces = new GlyphFace[faceCount];
        var pos = 6;
        for (var f = 0; f < faceCount; f++)
        {
            int id = data[pos], size = data[pos + 1], ascent = data[pos + 2], descent = data[pos + 3];
            int count = BinaryPrimitives.ReadUInt16LittleEndian(data[(pos + 4)..]);
            pos += 6;
            var glyphs = new Dictionary<char, Glyph>(count);
            for (var g = 0; g < count; g++)
            {
                var ch = (char)BinaryPrimitives.ReadUInt16LittleEndian(data[pos..]);
                var advance = BinaryPrimitives.ReadUInt16LittleEndian(data[(pos + 2)..]) / 64.0;
                int left = (sbyte)data[pos + 4], top = (sbyte)data[pos + 5], w = data[pos + 6], h = data[pos + 7];
                pos += 8;
                glyphs[ch] = new Glyph(advance, left, top, w, h, data.Slice(pos, w * h).ToArray());
                pos += w * h;
            }
            faces[id] = new GlyphFace(new FontMetrics(size, ascent, descent, Bold: id == (int)FontRole.Title), glyphs);
        }
        return faces;
    }
}
