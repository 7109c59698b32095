using System.Globalization;
using System.Text;

namespace FleetLearn.Core.Compression;

/// <summary>Optional lossless stage applied to the packed body of a plaintext update.</summary>
public enum LosslessKind : byte
{
    /// <summary>No lossless stage.</summary>
    None = 0,
    /// <summary>Deflate (RFC 1951, <see cref="System.IO.Compression.DeflateStream"/>).</summary>
    Deflate = 1,
    /// <summary>Brotli (RFC 7932, <see cref="System.IO.Compression.BrotliEncoder"/>).</summary>
    Brotli = 2,
}

/// <summary>
/// A parsed codec string such as <c>none</c>, <c>q8</c>, <c>rot+q4</c>, <c>sub0.25+rot+q8</c> or <c>topk0.01+ef+q8+deflate</c>.
/// Tokens may come in any order; the pipeline always applies them in the order of DESIGN.md
/// (top-k + EF → clip → noise → rotate → subsample → quantize). Token meanings:
/// <c>q{b}</c> stochastic quantization to b ∈ [1, 16] bits (QSGD, Alistarh et al. 2017; Suresh et al. 2017);
/// <c>rot</c> randomized Hadamard rotation (Suresh et al. 2017); <c>sub{p}</c> shared random subsample of a fraction p
/// of the coordinates (Konečný et al. 2016); <c>topk{p}</c> top-k sparsification keeping a fraction p, <c>ef</c> error
/// feedback (Stich et al. 2018; Karimireddy et al. 2019); <c>shared</c> a public quantization range derived from the clip norm
/// (implied by secure aggregation); <c>deflate</c>/<c>brotli</c> a lossless stage.
/// </summary>
public sealed record CodecSpec
{
    /// <summary>Largest quantization bit width.</summary>
    public const int MaxBits = 16;

    /// <summary>Quantization bits b, or null for float32 coordinates.</summary>
    public int? Bits { get; init; }

    /// <summary>Randomized Hadamard rotation before quantization.</summary>
    public bool Rotate { get; init; }

    /// <summary>Fraction of coordinates kept by the shared subsample (null = all).</summary>
    public double? SubsampleFraction { get; init; }

    /// <summary>Fraction of coordinates kept by top-k (null = off).</summary>
    public double? TopKFraction { get; init; }

    /// <summary>Error feedback for top-k.</summary>
    public bool ErrorFeedback { get; init; }

    /// <summary>Quantize on a public range derived from the clip norm (same grid for every vehicle).</summary>
    public bool SharedRange { get; init; }

    /// <summary>Lossless stage.</summary>
    public LosslessKind Lossless { get; init; }

    /// <summary>The identity codec (float32, no transform).</summary>
    public static CodecSpec None { get; } = new();

    /// <summary>Parses a codec string; throws <see cref="CodecConfigurationException"/> naming the bad token.</summary>
    public static CodecSpec Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        string trimmed = text.Trim().ToLowerInvariant();
        if (trimmed.Length == 0) throw new CodecConfigurationException("--codec is empty; expected e.g. none, q8, rot+q4, sub0.25+rot+q8 or topk0.01+ef+q8.");
        if (trimmed == "none") return None;
        var spec = new CodecSpec();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (string raw in trimmed.Split('+'))
        {
            string token = raw.Trim();
            string kind = token.StartsWith("topk", StringComparison.Ordinal) ? "topk"
                : token.StartsWith("sub", StringComparison.Ordinal) ? "sub"
                : token.StartsWith('q') && token.Length > 1 && char.IsAsciiDigit(token[1]) ? "q"
                : token;
            if (!seen.Add(kind is "deflate" or "brotli" ? "lossless" : kind))
                throw new CodecConfigurationException($"Codec '{text}': '{token}' repeats a stage (each of q, rot, sub, topk, ef, shared and one lossless stage may appear once).");
            spec = kind switch
            {
                "q" => spec with { Bits = ParseBits(text, token) },
                "rot" => spec with { Rotate = true },
                "sub" => spec with { SubsampleFraction = ParseFraction(text, token, 3, allowOne: true) },
                "topk" => spec with { TopKFraction = ParseFraction(text, token, 4, allowOne: false) },
                "ef" => spec with { ErrorFeedback = true },
                "shared" => spec with { SharedRange = true },
                "deflate" => spec with { Lossless = LosslessKind.Deflate },
                "brotli" => spec with { Lossless = LosslessKind.Brotli },
                "none" => throw new CodecConfigurationException($"Codec '{text}': 'none' cannot be combined with other stages."),
                _ => throw new CodecConfigurationException($"Codec '{text}': unknown stage '{token}'. Stages: q{{1..16}}, rot, sub{{p}}, topk{{p}}, ef, shared, deflate, brotli (or none)."),
            };
        }
        spec.ValidateStandalone(text);
        return spec;
    }

    private static int ParseBits(string text, string token)
    {
        if (!int.TryParse(token.AsSpan(1), NumberStyles.None, CultureInfo.InvariantCulture, out int bits) || bits < 1 || bits > MaxBits)
            throw new CodecConfigurationException($"Codec '{text}': quantization '{token}' needs b within 1..{MaxBits} bits.");
        return bits;
    }

    private static double ParseFraction(string text, string token, int prefix, bool allowOne)
    {
        if (!double.TryParse(token.AsSpan(prefix), NumberStyles.Float, CultureInfo.InvariantCulture, out double p) || !(p > 0) || p > 1 || (!allowOne && p >= 1))
            throw new CodecConfigurationException($"Codec '{text}': '{token}' needs a fraction p within (0, {(allowOne ? "1]" : "1)")}, e.g. {token[..prefix]}0.25.");
        return p;
    }

    /// <summary>Checks conflicts between stages that do not depend on privacy or secure aggregation.</summary>
    internal void ValidateStandalone(string text)
    {
        if (ErrorFeedback && TopKFraction is null)
            throw new CodecConfigurationException($"Codec '{text}': 'ef' (error feedback) needs 'topk{{p}}': it carries the coordinates top-k did not send into the next round.");
        if (TopKFraction is not null && Rotate)
            throw new CodecConfigurationException($"Codec '{text}': 'topk' cannot be combined with 'rot': a rotation after top-k spreads the k kept values over every coordinate and undoes the sparsity.");
        if (TopKFraction is not null && SubsampleFraction is not null)
            throw new CodecConfigurationException($"Codec '{text}': 'topk' and 'sub' are both sparsifications; use one.");
        if (TopKFraction is not null && SharedRange)
            throw new CodecConfigurationException($"Codec '{text}': 'shared' (public quantization range) applies to dense codecs; top-k quantizes the k kept values on their own range.");
        if (SharedRange && Bits is null)
            throw new CodecConfigurationException($"Codec '{text}': 'shared' needs a quantizer 'q{{b}}'.");
    }

    /// <summary>The canonical string, stages in pipeline order.</summary>
    public override string ToString()
    {
        var parts = new List<string>();
        if (TopKFraction is { } k) parts.Add(string.Create(CultureInfo.InvariantCulture, $"topk{k:R}"));
        if (ErrorFeedback) parts.Add("ef");
        if (Rotate) parts.Add("rot");
        if (SubsampleFraction is { } p) parts.Add(string.Create(CultureInfo.InvariantCulture, $"sub{p:R}"));
        if (Bits is { } b) parts.Add(string.Create(CultureInfo.InvariantCulture, $"q{b}"));
        if (SharedRange) parts.Add("shared");
        if (Lossless != LosslessKind.None) parts.Add(Lossless.ToString().ToLowerInvariant());
        return parts.Count == 0 ? "none" : string.Join('+', parts);
    }

    /// <summary>32-bit fingerprint of the canonical string (FNV-1a), carried in every envelope so a decoder can refuse another codec.</summary>
    public uint Fingerprint()
    {
        uint h = 2166136261;
        foreach (byte c in Encoding.UTF8.GetBytes(ToString())) h = (h ^ c) * 16777619;
        return h;
    }
}
