using System.Buffers;
using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.InteropServices;
using FleetLearn.Core.Numerics;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Core.Compression;

/// <summary>Secure aggregation of a round: off, SecAgg (Bonawitz et al. 2017) or SecAgg+ (Bell et al. 2020).</summary>
public enum SecureAggregationMode
{
    /// <summary>Plaintext updates in <see cref="UpdateEnvelope"/>s.</summary>
    Off,
    /// <summary>Complete masking graph (Bonawitz et al. 2017).</summary>
    Full,
    /// <summary>k-regular masking graph (Bell et al. 2020).</summary>
    Plus,
}

/// <summary>What configures the update pipeline; <see cref="UpdatePipeline"/> checks it as a whole.</summary>
public sealed record UpdatePipelineOptions
{
    /// <summary>Codec stages.</summary>
    public CodecSpec Codec { get; init; } = CodecSpec.None;

    /// <summary>Model parameters P.</summary>
    public required int Dimension { get; init; }

    /// <summary>Secure aggregation mode.</summary>
    public SecureAggregationMode SecureAggregation { get; init; }

    /// <summary>k of SecAgg+ (even); null or ≥ n − 1 = the complete graph.</summary>
    public int? Neighbors { get; init; }

    /// <summary>n: the most vehicles whose inputs one secure sum holds (sizes the modulus).</summary>
    public int CohortSize { get; init; } = 1;

    /// <summary>m: explicit modulus bits of the secure sum; null = the smallest that holds the cohort's sum.</summary>
    public int? ModulusBits { get; init; }

    /// <summary>C: the L2 clip norm (DP) or norm bound (needed for a public quantization range); null = no clipping.</summary>
    public double? ClipNorm { get; init; }

    /// <summary>DP noise mode; null = no DP.</summary>
    public NoiseMode? Noise { get; init; }

    /// <summary>W: public bound on an update's aggregation weight (weights are sent as w/W under secure aggregation).</summary>
    public double MaxWeight { get; init; } = 1;

    /// <summary>Every update weighs 1, so a secure sum's mean divides by the public survivor count; null = uniform exactly when DP noise is on.</summary>
    public bool? UniformWeights { get; init; }

    /// <summary>
    /// Distributed DP as the distributed discrete Gaussian (Kairouz, Liu &amp; Steinke 2021): conditional randomized rounding
    /// to integers, then N_Z noise on those integers, signed mod 2^m. null = on exactly under secure aggregation with
    /// distributed noise; false keeps the continuous Gaussian before quantization (for comparison only: its rounding is not accounted).
    /// </summary>
    public bool? DiscreteGaussian { get; init; }

    /// <summary>β of conditional randomized rounding (KLS 2021 use e^{-1/2}): each attempt fails with probability ≤ β; Δ₂ grows with log(1/β).</summary>
    public double RoundingBeta { get; init; } = 0.6065306597126334;

    /// <summary>Public floor of a sample-count weight (honest weights are clamped to [MinWeight, W]); it bounds how far one vehicle can shrink the denominator.</summary>
    public double MinWeight { get; init; }

    /// <summary>Send the adaptive-clipping bit 1[‖Δ‖ ≤ C] (under secure aggregation as one more summed coordinate).</summary>
    public bool SendUnclippedBit { get; init; }

    /// <summary>β: probability bound that a rotated coordinate exceeds the public range (then it is clamped).</summary>
    public double RangeFailureProbability { get; init; } = 1e-6;

    /// <summary>Bits of the fixed-point encoding under secure aggregation when the codec has no quantizer.</summary>
    public int SecAggFixedPointBits { get; init; } = 16;

    /// <summary>Scale the subsampled sum by 1/p so that it is unbiased (Konečný et al. 2016); false keeps the plain projection.</summary>
    public bool UnbiasedSubsample { get; init; } = true;

    /// <summary>Largest plaintext envelope the decoder accepts; null = the largest this configuration can produce.</summary>
    public int? MaxEnvelopeBytes { get; init; }
}

/// <summary>What encoding one update produced besides its bytes.</summary>
/// <param name="PreClipNorm">‖Δ‖ before clipping (NaN without clipping).</param>
/// <param name="Unclipped">1[‖Δ‖ ≤ C].</param>
/// <param name="Clamped">Coordinates clamped to the quantization range.</param>
public readonly record struct EncodeInfo(double PreClipNorm, bool Unclipped, int Clamped);

/// <summary>A decoded plaintext update: Δ̂ as an array, or (a float32 update decoded where it arrived) as the received segments.</summary>
public sealed class DecodedUpdate
{
    private float[]? _delta;

    /// <summary>An update decoded into <paramref name="delta"/>.</summary>
    public DecodedUpdate(UpdateEnvelopeHeader header, float[] delta)
    {
        Header = header;
        _delta = delta;
    }

    /// <summary>An update whose values stay in the segments they arrived in, checked finite by their <paramref name="sumOfSquares"/>.</summary>
    public DecodedUpdate(UpdateEnvelopeHeader header, FloatSegments values, double sumOfSquares)
    {
        Header = header;
        Segments = values;
        SumOfSquares = sumOfSquares;
    }

    /// <summary>Envelope header.</summary>
    public UpdateEnvelopeHeader Header { get; }

    /// <summary>Δ̂ (P coordinates) as an array; copied out of <see cref="Segments"/> on first use when it has any.</summary>
    public float[] Delta => _delta ??= Segments!.Value.ToArray();

    /// <summary>Δ̂ as received, when it was not decoded into an array: fold it from here (no copy).</summary>
    public FloatSegments? Segments { get; }

    /// <summary>‖Δ̂‖₂², computed in double while the decoder checked the values (null when it did not).</summary>
    public double? SumOfSquares { get; }
}

/// <summary>A decoded secure sum.</summary>
/// <param name="Mean">Σ(w/W)Δ̂ / Σ(w/W) (Σ Δ̂ / |U3| under uniform weights; zeros when the weight sum is 0).</param>
/// <param name="WeightSum">Σ w/W.</param>
/// <param name="UnclippedCount">Σ 1[‖Δ‖ ≤ C] (0 unless sent; plus the vehicles' noise shares when they add them).</param>
public sealed record DecodedSum(float[] Mean, double WeightSum, int UnclippedCount);

/// <summary>
/// The update pipeline of DESIGN.md, one type for vehicles and aggregator:
/// train → Δ → [top-k + error feedback] → clip to C → + Gaussian noise → [randomized Hadamard rotation] → [shared subsample]
/// → stochastic quantization → fixed point mod 2^m → secure-aggregation masks → bit-pack → envelope.
/// The constructor rejects configurations that cannot work, naming the conflict (<see cref="CodecConfigurationException"/>);
/// <see cref="ForRound"/> fixes the per-round public randomness (rotation signs, subsample) and range.
/// </summary>
/// <remarks>
/// One file over 450 lines because the vehicle's encoders and the aggregator's decoders (in <see cref="UpdatePipelineRound"/>)
/// must stay exact inverses (Transform/Untransform, EncodePlain/Decode, EncodeSecure/DecodeSum) and are checked by reading them side by side; the
/// stages themselves live in their own files (TopK, RandomizedHadamard, SharedSubsample, StochasticQuantizer).
/// </remarks>
public sealed class UpdatePipeline
{
    /// <summary>Reads and checks a configuration.</summary>
    public UpdatePipeline(UpdatePipelineOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        Options = options;
        var c = options.Codec ?? throw new CodecConfigurationException("No codec given.");
        string codec = c.ToString();
        c.ValidateStandalone(codec);
        if (options.Dimension < 1 || options.Dimension > SecAggCodecLimits.Default.MaxDimension - 2)
            throw new CodecConfigurationException($"Model dimension {options.Dimension} is outside [1, {SecAggCodecLimits.Default.MaxDimension - 2}].");
        if (options.ClipNorm is { } clip && (!(clip > 0) || double.IsInfinity(clip)))
            throw new CodecConfigurationException($"Clip norm {clip} must be a positive finite number.");
        if (!(options.MaxWeight > 0) || double.IsInfinity(options.MaxWeight))
            throw new CodecConfigurationException($"Maximum weight W = {options.MaxWeight} must be a positive finite number.");
        if (!(options.MinWeight >= 0) || options.MinWeight > options.MaxWeight)
            throw new CodecConfigurationException($"Minimum weight {options.MinWeight} must be within [0, W = {options.MaxWeight}].");
        UniformWeights = options.UniformWeights ?? options.Noise is not null;
        if (!(options.RoundingBeta > 0 && options.RoundingBeta < 1))
            throw new CodecConfigurationException($"Rounding β = {options.RoundingBeta} must be within (0, 1).");
        bool ddgPossible = options.SecureAggregation != SecureAggregationMode.Off && options.Noise == NoiseMode.Distributed;
        if (options.DiscreteGaussian == true && !ddgPossible)
            throw new CodecConfigurationException("The distributed discrete Gaussian needs secure aggregation and distributed DP noise: its integers are only private once summed.");
        IsDiscreteGaussian = options.DiscreteGaussian ?? ddgPossible;
        if (!(options.RangeFailureProbability > 0 && options.RangeFailureProbability < 1))
            throw new CodecConfigurationException($"β = {options.RangeFailureProbability} must be within (0, 1).");
        if (c.TopKFraction is not null && options.Noise == NoiseMode.Distributed)
            throw new CodecConfigurationException($"Codec '{codec}' with distributed DP noise: the top-k indices depend on the data and are not noised, and each vehicle's dense noise would undo the sparsity. Use central DP or a dense codec (rot, sub, q).");
        if (c.SharedRange && options.ClipNorm is null)
            throw new CodecConfigurationException($"Codec '{codec}': a shared (public) quantization range needs a clip norm C to derive it from.");

        IsSecure = options.SecureAggregation != SecureAggregationMode.Off;
        QuantizationBits = c.Bits ?? (IsSecure ? options.SecAggFixedPointBits : null);
        if (IsSecure)
        {
            string mode = options.SecureAggregation == SecureAggregationMode.Plus ? "SecAgg+" : "SecAgg";
            if (c.TopKFraction is not null)
                throw new CodecConfigurationException($"Codec '{codec}' with secure aggregation ({mode}): top-k picks different coordinates on every vehicle, but a secure sum adds the same coordinates of every input. Use 'sub{{p}}' (a subsample shared by the cohort) instead, or turn secure aggregation off.");
            if (c.Lossless != LosslessKind.None)
                throw new CodecConfigurationException($"Codec '{codec}' with secure aggregation ({mode}): masked values are uniformly random, so a lossless stage ({c.Lossless.ToString().ToLowerInvariant()}) cannot shrink them.");
            if (options.ClipNorm is null)
                throw new CodecConfigurationException($"Secure aggregation ({mode}) needs a clip norm (or norm bound) C: the fixed-point range every vehicle shares is derived from it.");
            if (options.CohortSize < 3 || options.CohortSize > SecAggParameters.MaxCohortSize)
                throw new CodecConfigurationException($"Secure aggregation ({mode}) needs a cohort of 3..{SecAggParameters.MaxCohortSize} vehicles; got {options.CohortSize}.");
            if (options.SecAggFixedPointBits is < 1 or > CodecSpec.MaxBits)
                throw new CodecConfigurationException($"Fixed-point bits {options.SecAggFixedPointBits} are outside 1..{CodecSpec.MaxBits}.");
            if (options.SecureAggregation == SecureAggregationMode.Plus && options.Neighbors is { } k && k < options.CohortSize - 1 && (k < 2 || k % 2 != 0))
                throw new CodecConfigurationException($"SecAgg+ neighbour count k = {k} must be even and ≥ 2 (Harary graph H(k, n)).");
            ulong maxLevel = StochasticQuantizer.MaxLevel(QuantizationBits!.Value);
            var needed = (System.Numerics.BigInteger)options.CohortSize * maxLevel;
            int neededBits = (int)needed.GetBitLength();
            if (options.ModulusBits is { } m)
            {
                if (m is < 1 or > 32) throw new CodecConfigurationException($"Modulus bits m = {m} are outside 1..32.");
                if (m < neededBits)
                    throw new CodecConfigurationException($"Modulus 2^{m} is too small for the cohort's sum: {options.CohortSize} vehicles × level {maxLevel} (q{QuantizationBits}) = {needed} needs m ≥ {neededBits} bits.");
            }
            else if (neededBits > 32)
                throw new CodecConfigurationException($"The cohort's sum does not fit 32 bits: {options.CohortSize} vehicles × level {maxLevel} (q{QuantizationBits}) = {needed} needs {neededBits} bits; lower b or the cohort.");
            ModulusBits = options.ModulusBits ?? neededBits;
        }
        SharedRange = IsSecure || c.SharedRange;
        PaddedLength = c.Rotate ? RandomizedHadamard.PaddedLength(options.Dimension) : options.Dimension;
        KeptCount = c.SubsampleFraction is { } p ? SharedSubsample.KeptCount(PaddedLength, p)
            : c.TopKFraction is { } k2 ? TopK.Count(options.Dimension, k2)
            : PaddedLength;
        SecAggDimension = KeptCount + 1 + (options.SendUnclippedBit ? 1 : 0);
        MaxRawBodyBytes = (c.TopKFraction is not null ? 5L * KeptCount : 0) + ValueBytes;
        MaxEnvelopeBytes = options.MaxEnvelopeBytes ?? (int)Math.Min(int.MaxValue, UpdateEnvelope.HeaderBytes + MaxRawBodyBytes);
        CodecId = c.Fingerprint() ^ (SharedRange ? 0x5A5A0000u : 0);
    }

    /// <summary>The configuration.</summary>
    public UpdatePipelineOptions Options { get; }

    /// <summary>The codec.</summary>
    public CodecSpec Codec => Options.Codec;

    /// <summary>True under SecAgg or SecAgg+.</summary>
    public bool IsSecure { get; }

    /// <summary>True when vehicles send conditionally rounded integers plus discrete Gaussian noise, signed mod 2^m (KLS 2021).</summary>
    public bool IsDiscreteGaussian { get; }

    /// <summary>True when every update weighs 1 (the default under DP: the sum's sensitivity is then C).</summary>
    public bool UniformWeights { get; }

    /// <summary>Quantization bits actually used (null: float32 values).</summary>
    public int? QuantizationBits { get; }

    /// <summary>m of the secure sum (0 when secure aggregation is off).</summary>
    public int ModulusBits { get; }

    /// <summary>True when the quantization range is public (derived from C) rather than each update's own max |x|.</summary>
    public bool SharedRange { get; }

    /// <summary>Length after rotation padding (P without rotation).</summary>
    public int PaddedLength { get; }

    /// <summary>Coordinates each vehicle sends.</summary>
    public int KeptCount { get; }

    /// <summary>Length of a secure-aggregation input: kept coordinates, the weight and (optionally) the unclipped bit.</summary>
    public int SecAggDimension { get; }

    /// <summary>Envelope id of this codec.</summary>
    public uint CodecId { get; }

    /// <summary>Largest plaintext envelope the decoder accepts.</summary>
    public int MaxEnvelopeBytes { get; }

    private long MaxRawBodyBytes { get; }

    private long ValueBytes => QuantizationBits is { } b ? BitPacking.PackedLength(KeptCount, b) : 4L * KeptCount;

    /// <summary>The largest value of a secure-aggregation input coordinate, 2^b − 1.</summary>
    public ulong MaxInputValue => IsSecure ? StochasticQuantizer.MaxLevel(QuantizationBits!.Value) : 0;

    /// <summary>
    /// The public parameters of a secure-aggregation round for this pipeline (<paramref name="minNoiseShares"/>: see
    /// <see cref="SecAggParameters.MinNoiseShares"/>; <paramref name="neighbors"/>: SecAgg+'s k for this sum when it differs
    /// from the pipeline's, as for a shard's part of the cohort — the modulus stays the whole cohort's).
    /// </summary>
    public SecAggParameters CreateSecAggParameters(ulong round, int cohortSize, byte[] roundSeed, TimeSpan phaseTimeout, int minNoiseShares = 1, int? neighbors = null)
    {
        if (!IsSecure) throw new InvalidOperationException("Secure aggregation is off.");
        if (cohortSize > Options.CohortSize)
            throw new CodecConfigurationException($"A secure sum of {cohortSize} vehicles exceeds the cohort of {Options.CohortSize} the modulus 2^{ModulusBits} was sized for.");
        var p = new SecAggParameters
        {
            Round = round,
            CohortSize = cohortSize,
            Dimension = SecAggDimension,
            BitWidth = ModulusBits,
            // Discrete Gaussian inputs are signed integers mod 2^m (any residue); the centred sum is what the modulus holds.
            MaxInputValue = IsDiscreteGaussian ? (ModulusBits == 32 ? uint.MaxValue : (1u << ModulusBits) - 1) : MaxInputValue,
            SignedInputs = IsDiscreteGaussian,
            Neighbors = Options.SecureAggregation == SecureAggregationMode.Plus ? neighbors ?? Options.Neighbors : null,
            RoundSeed = roundSeed,
            PhaseTimeout = phaseTimeout,
            MinNoiseShares = minNoiseShares,
        };
        try { p.Validate(); }
        catch (SecAggConfigurationException e) { throw new CodecConfigurationException(e.Message); }
        return p;
    }

    /// <summary>Fixes one round's public randomness (rotation signs and subsample from <paramref name="seed"/>), clip norm and vehicle noise.</summary>
    /// <param name="round">Round number (checked by decoders).</param>
    /// <param name="seed">Public per-round seed shared by all vehicles and the server.</param>
    /// <param name="clipNorm">C of this round (adaptive clipping changes it); null = <see cref="UpdatePipelineOptions.ClipNorm"/>.</param>
    /// <param name="vehicleNoiseStdDev">Standard deviation each vehicle adds (distributed DP), 0 otherwise.</param>
    /// <param name="unclippedBitNoiseStdDev">
    /// Each vehicle's discrete Gaussian share on the adaptive-clipping bit (σ_b/√m_min, Andrew et al. 2021) under the
    /// distributed discrete Gaussian, so the count is never summed bare; 0 = the bit is sent as is.
    /// </param>
    public UpdatePipelineRound ForRound(ulong round, ulong seed, double? clipNorm = null, double vehicleNoiseStdDev = 0, double unclippedBitNoiseStdDev = 0) =>
        new(this, round, seed, clipNorm ?? Options.ClipNorm, vehicleNoiseStdDev, unclippedBitNoiseStdDev);
}

/// <summary>One round of an <see cref="UpdatePipeline"/>: encoders for vehicles, decoders for the aggregator. Thread-safe.</summary>
public sealed class UpdatePipelineRound
{
    private readonly UpdatePipeline _p;
    private readonly RandomizedHadamard? _rotation;
    private readonly SharedSubsample? _subsample;

    internal UpdatePipelineRound(UpdatePipeline pipeline, ulong round, ulong seed, double? clipNorm, double noiseStdDev, double bitNoiseStdDev = 0)
    {
        if (!(bitNoiseStdDev >= 0) || double.IsInfinity(bitNoiseStdDev)) throw new CodecConfigurationException($"Unclipped-bit noise standard deviation {bitNoiseStdDev} must be finite and ≥ 0.");
        if (bitNoiseStdDev > 0 && !(pipeline.IsDiscreteGaussian && pipeline.Options.SendUnclippedBit))
            throw new CodecConfigurationException("Noise shares on the unclipped bit need the distributed discrete Gaussian and the unclipped bit.");
        UnclippedBitNoiseStdDev = bitNoiseStdDev;
        _p = pipeline;
        Round = round;
        if (clipNorm is { } c && (!(c > 0) || double.IsInfinity(c))) throw new CodecConfigurationException($"Clip norm {c} must be a positive finite number.");
        if (!(noiseStdDev >= 0) || double.IsInfinity(noiseStdDev)) throw new CodecConfigurationException($"Vehicle noise standard deviation {noiseStdDev} must be finite and ≥ 0.");
        if (pipeline.SharedRange && clipNorm is null) throw new CodecConfigurationException("A shared quantization range needs a clip norm.");
        ClipNorm = clipNorm;
        NoiseStdDev = noiseStdDev;
        var codec = pipeline.Codec;
        if (codec.Rotate) _rotation = new RandomizedHadamard(pipeline.PaddedLength, seed);
        if (codec.SubsampleFraction is { } p) _subsample = new SharedSubsample(pipeline.PaddedLength, p, seed);
        if (pipeline.SharedRange)
        {
            double beta = pipeline.Options.RangeFailureProbability;
            double signal = codec.Rotate ? RandomizedHadamard.CoordinateBound(clipNorm!.Value, pipeline.PaddedLength, beta) : clipNorm!.Value;
            double noise = noiseStdDev * Math.Sqrt(2 * Math.Log(2.0 * pipeline.PaddedLength / beta));
            // The range travels as float32 in envelopes; round it there so both sides use the same grid.
            SharedRangeValue = (float)(signal + noise);
        }
    }

    /// <summary>Round number.</summary>
    public ulong Round { get; }

    /// <summary>C of this round.</summary>
    public double? ClipNorm { get; }

    /// <summary>Each vehicle's discrete Gaussian share on the unclipped bit (0 = sent bare).</summary>
    public double UnclippedBitNoiseStdDev { get; }

    /// <summary>Each vehicle's noise standard deviation.</summary>
    public double NoiseStdDev { get; }

    /// <summary>The public quantization range r (NaN when each update uses its own).</summary>
    public float SharedRangeValue { get; } = float.NaN;

    /// <summary>The pipeline.</summary>
    public UpdatePipeline Pipeline => _p;

    /// <summary>
    /// The stated error bound of one decoded update in the transformed domain: every carried coordinate is within one
    /// quantization step Δ = 2r/(2^b − 1) of its value (0 for float32); the L2 error of the whole update is at most
    /// Δ·√(kept) before inverse rotation, which preserves norms.
    /// </summary>
    public double StepFor(double range) => _p.QuantizationBits is { } b ? StochasticQuantizer.Step(range, b) : 0;

    /// <summary>γ: the real value of one integer unit of a secure input (the grid step on the public range; NaN without a shared range).</summary>
    public double Granularity => _p.SharedRange && _p.QuantizationBits is not null ? StepFor(SharedRangeValue) : double.NaN;

    /// <summary>
    /// What an accountant needs about this round's distributed discrete Gaussian: per-vehicle σ, C, γ, β and the dimension
    /// d of what is summed (null unless <see cref="UpdatePipeline.IsDiscreteGaussian"/>).
    /// </summary>
    public DiscreteGaussianAccounting? DiscreteGaussianAccounting => _p.IsDiscreteGaussian && ClipNorm is { } c && NoiseStdDev > 0
        ? new DiscreteGaussianAccounting(NoiseStdDev, c, Granularity, _p.Options.RoundingBeta, _p.KeptCount)
        : null;

    // ---- Vehicle side ---------------------------------------------------------------------------

    /// <summary>
    /// Runs top-k/EF, clip, noise, rotation, subsample on <paramref name="delta"/> (modified in place) and returns the carried
    /// coordinates (before quantization), their indices for top-k, and the clip info.
    /// </summary>
    private float[] Transform(Span<float> delta, INoiseSource noise, float[]? residual, out int[]? indices, out double preClipNorm, out bool unclipped)
    {
        ArgumentNullException.ThrowIfNull(noise);
        if (delta.Length != _p.Options.Dimension) throw new ArgumentException($"The update has {delta.Length} values; the model has {_p.Options.Dimension}.", nameof(delta));
        if (!Numerics.VectorMath.AllFinite(delta)) throw new ArgumentException("The update contains NaN or infinite values; it must be rejected, not encoded.", nameof(delta));
        var codec = _p.Codec;
        indices = null;
        float[] carried;
        if (codec.TopKFraction is not null)
        {
            if (codec.ErrorFeedback)
            {
                if (residual is null || residual.Length != delta.Length) throw new ArgumentException("Error feedback needs this vehicle's residual (one value per parameter).", nameof(residual));
                Numerics.VectorMath.Axpy(1f, residual, delta);
            }
            indices = new int[_p.KeptCount];
            TopK.Select(delta, indices);
            carried = new float[indices.Length];
            for (int j = 0; j < indices.Length; j++) carried[j] = delta[indices[j]];
            if (codec.ErrorFeedback)
            {
                // The residual keeps what top-k did not send (Stich et al. 2018); quantization is unbiased and needs none.
                delta.CopyTo(residual);
                foreach (int i in indices) residual![i] = 0;
            }
        }
        else carried = null!;

        Span<float> work = carried is not null ? carried : delta;
        preClipNorm = double.NaN;
        unclipped = true;
        if (ClipNorm is { } c)
        {
            preClipNorm = L2Clipping.Clip(work, c);
            unclipped = AdaptiveClipping.IsUnclipped(preClipNorm, c);
        }
        // The discrete Gaussian is added later, on the rounded integers (KLS 2021); the continuous one here.
        if (NoiseStdDev > 0 && !_p.IsDiscreteGaussian) GaussianNoise.Add(work, NoiseStdDev, noise);
        if (carried is not null) return carried;

        float[] full;
        if (_rotation is not null)
        {
            full = new float[_p.PaddedLength];
            delta.CopyTo(full);
            _rotation.Forward(full);
        }
        else full = delta.ToArray();
        if (_subsample is null) return full;
        var kept = new float[_subsample.Indices.Length];
        _subsample.Gather(full, kept);
        return kept;
    }

    /// <summary>
    /// A vehicle's plaintext upload: the pipeline up to quantization, bit-packing and the <see cref="UpdateEnvelope"/>.
    /// <paramref name="delta"/> is overwritten (clipped and noised in place).
    /// </summary>
    /// <param name="delta">Δ (P values).</param>
    /// <param name="weight">Aggregation weight.</param>
    /// <param name="vehicle">Vehicle id.</param>
    /// <param name="updateId">Upload id.</param>
    /// <param name="noise">DP noise source (CSPRNG in deployment, seeded in simulation).</param>
    /// <param name="rounding">Uniforms for stochastic rounding.</param>
    /// <param name="residual">This vehicle's error-feedback residual (top-k + EF only).</param>
    /// <param name="info">Clip and clamp information.</param>
    public byte[] EncodePlain(Span<float> delta, double weight, ulong vehicle, Guid updateId, INoiseSource noise, INoiseSource rounding, float[]? residual, out EncodeInfo info)
    {
        if (_p.IsSecure) throw new InvalidOperationException("This pipeline uses secure aggregation: call EncodeSecure.");
        ArgumentNullException.ThrowIfNull(rounding);
        if (!(weight >= 0) || !double.IsFinite(weight)) throw new ArgumentOutOfRangeException(nameof(weight), weight, "The weight must be finite and ≥ 0.");
        var values = Transform(delta, noise, residual, out var indices, out double norm, out bool unclipped);
        byte[] indexBytes = indices is null ? [] : UpdateEnvelope.EncodeIndices(indices);
        int clamped = 0;
        float range = 0;
        byte[] raw;
        if (_p.QuantizationBits is { } b)
        {
            range = _p.SharedRange ? SharedRangeValue : MaxAbs(values);
            var levels = new uint[values.Length];
            clamped = StochasticQuantizer.Quantize(values, range, b, rounding, levels);
            raw = new byte[indexBytes.Length + BitPacking.PackedLength(values.Length, b)];
            BitPacking.Pack(levels, b, raw.AsSpan(indexBytes.Length));
        }
        else
        {
            raw = new byte[indexBytes.Length + 4 * values.Length];
            var dest = raw.AsSpan(indexBytes.Length);
            if (BitConverter.IsLittleEndian) MemoryMarshal.AsBytes(values.AsSpan()).CopyTo(dest);
            else for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(dest[(4 * i)..], values[i]);
        }
        indexBytes.CopyTo(raw, 0);
        info = new EncodeInfo(norm, unclipped, clamped);
        var header = new UpdateEnvelopeHeader
        {
            Round = Round,
            Vehicle = vehicle,
            UpdateId = updateId,
            CodecId = _p.CodecId,
            Dimension = _p.Options.Dimension,
            ValueCount = values.Length,
            Bits = _p.QuantizationBits ?? 0,
            Range = range,
            Weight = weight,
            Unclipped = unclipped,
            IndexBytes = indexBytes.Length,
        };
        return UpdateEnvelope.Write(header, raw, _p.Codec.Lossless);
    }

    /// <summary>
    /// A vehicle's secure-aggregation input: the pipeline up to fixed point — levels of (w/W)·x on the public range, then the
    /// weight w/W and (optionally) the unclipped bit as extra coordinates; every value ≤ 2^b − 1 (masks are added by
    /// <see cref="SecAggVehicle"/>). <paramref name="delta"/> is overwritten.
    /// </summary>
    public uint[] EncodeSecure(Span<float> delta, double weight, INoiseSource noise, INoiseSource rounding, out EncodeInfo info)
    {
        if (!_p.IsSecure) throw new InvalidOperationException("Secure aggregation is off: call EncodePlain.");
        ArgumentNullException.ThrowIfNull(rounding);
        if (!(weight >= 0) || !double.IsFinite(weight)) throw new ArgumentOutOfRangeException(nameof(weight), weight, "The weight must be finite and ≥ 0.");
        var values = Transform(delta, noise, null, out _, out double norm, out bool unclipped);
        // Uniform weights send exactly L, which DecodeSum checks; sample weights are clamped to the public [MinWeight, W].
        double w = _p.UniformWeights ? 1 : Math.Clamp(weight, _p.Options.MinWeight, _p.Options.MaxWeight) / _p.Options.MaxWeight;
        if (w != 1) Privacy.L2Clipping.Scale(values, (float)w);
        int b = _p.QuantizationBits!.Value;
        var input = new uint[_p.SecAggDimension];
        int clamped = _p.IsDiscreteGaussian
            ? EncodeDiscreteGaussian(values, noise, rounding, input.AsSpan(0, values.Length))
            : StochasticQuantizer.Quantize(values, SharedRangeValue, b, rounding, input.AsSpan(0, values.Length));
        input[values.Length] = StochasticQuantizer.QuantizeUnit(w, b, rounding);
        if (_p.Options.SendUnclippedBit)
        {
            long bit = unclipped ? 1 : 0;
            // Issue 13 item 9: the count feeds the clip norm of later rounds, so it carries its noise share too.
            if (UnclippedBitNoiseStdDev > 0) bit += Privacy.DiscreteGaussian.Sample(UnclippedBitNoiseStdDev * UnclippedBitNoiseStdDev, noise);
            input[values.Length + 1] = (uint)((ulong)bit & (_p.ModulusBits == 32 ? uint.MaxValue : (1UL << _p.ModulusBits) - 1));
        }
        info = new EncodeInfo(norm, unclipped, clamped);
        return input;
    }

    /// <summary>
    /// KLS 2021 on the carried coordinates: conditional randomized rounding of x/γ (norm ≤ Δ₂/γ), + N_Z(0, (σ/γ)²) from
    /// <paramref name="noise"/>, each integer written as its residue mod 2^m. Returns how many |x| exceeded the public range.
    /// </summary>
    private int EncodeDiscreteGaussian(ReadOnlySpan<float> values, INoiseSource noise, INoiseSource rounding, Span<uint> destination)
    {
        double gamma = Granularity;
        double c = ClipNorm!.Value;
        var z = new long[values.Length];
        ConditionalRounding.Round(values, gamma, ConditionalRounding.SensitivitySquared(c, gamma, values.Length, _p.Options.RoundingBeta), rounding, z);
        if (NoiseStdDev > 0)
        {
            var n = new long[values.Length];
            Privacy.DiscreteGaussian.Fill(n, NoiseStdDev * NoiseStdDev / (gamma * gamma), noise);
            for (int i = 0; i < z.Length; i++) z[i] += n[i];
        }
        ulong mask = _p.ModulusBits == 32 ? uint.MaxValue : (1UL << _p.ModulusBits) - 1;
        int outside = 0;
        float r = SharedRangeValue;
        for (int i = 0; i < z.Length; i++)
        {
            destination[i] = (uint)((ulong)z[i] & mask);
            if (Math.Abs(values[i]) > r) outside++;
        }
        return outside;
    }

    private static float MaxAbs(ReadOnlySpan<float> values)
    {
        float max = 0;
        foreach (float v in values) max = Math.Max(max, Math.Abs(v));
        return max;
    }

    // ---- Aggregator side ------------------------------------------------------------------------

    /// <summary>
    /// Decodes a plaintext envelope back to Δ̂ (P values): unpack, dequantize, undo subsample and rotation (or scatter top-k).
    /// Throws only <see cref="UpdateFormatException"/> on bad input.
    /// </summary>
    /// <param name="envelope">The bytes received.</param>
    /// <param name="expectedVehicle">The sender the transport authenticated, or null to skip the check.</param>
    public DecodedUpdate Decode(ReadOnlySpan<byte> envelope, ulong? expectedVehicle = null)
    {
        if (_p.IsSecure) throw new InvalidOperationException("This pipeline uses secure aggregation: decode the sum with DecodeSum.");
        var h = UpdateEnvelope.ReadHeader(envelope, Round, _p.MaxEnvelopeBytes);
        CheckHeader(h, expectedVehicle);
        bool topk = _p.Codec.TopKFraction is not null;
        int rawLength = checked(h.IndexBytes + (int)(_p.QuantizationBits is { } bb ? BitPacking.PackedLength(h.ValueCount, bb) : 4L * h.ValueCount));
        var raw = UpdateEnvelope.ReadBodySpan(envelope, h, rawLength);
        var body = raw[h.IndexBytes..];

        // A float32 body overwrites every value below: no zeroing pass over an array the size of the model.
        var values = _p.QuantizationBits is null ? GC.AllocateUninitializedArray<float>(h.ValueCount) : new float[h.ValueCount];
        if (_p.QuantizationBits is { } b)
        {
            var levels = new uint[h.ValueCount];
            if (!BitPacking.TryUnpack(body, b, levels)) throw new UpdateFormatException("Packed levels have the wrong length or non-zero padding bits.");
            StochasticQuantizer.Dequantize(levels, h.Range, b, values);
        }
        else
        {
            if (BitConverter.IsLittleEndian) MemoryMarshal.Cast<byte, float>(body[..(4 * values.Length)]).CopyTo(values); // the wire's order: one block copy
            else for (int i = 0; i < values.Length; i++) values[i] = BinaryPrimitives.ReadSingleLittleEndian(body[(4 * i)..]);
            if (!Numerics.VectorMath.AllFinite(values)) throw new UpdateFormatException("Update contains NaN or infinite values.");
        }
        // Nothing to undo (no subsample, rotation or top-k): the values are Δ̂ itself, so no second copy.
        if (!topk && _subsample is null && _rotation is null && values.Length == _p.Options.Dimension) return new DecodedUpdate(h, values);

        var delta = new float[_p.Options.Dimension];
        if (topk)
        {
            var indices = new int[h.ValueCount];
            UpdateEnvelope.DecodeIndices(raw[..h.IndexBytes], h.Dimension, indices);
            for (int j = 0; j < indices.Length; j++) delta[indices[j]] = values[j];
        }
        else Untransform(values, 1f, delta);
        return new DecodedUpdate(h, delta);
    }

    /// <summary>
    /// <see cref="Decode(ReadOnlySpan{byte}, ulong?)"/> of an envelope in segments (as reassembled from chunks). A dense
    /// float32 update (codec none: no quantization, top-k, subsample or rotation; no lossless stage) is checked where it
    /// arrived — header, length, every value finite — and returned as <see cref="DecodedUpdate.Segments"/>, not copied;
    /// any other codec is decoded into an array as before.
    /// </summary>
    public DecodedUpdate Decode(in ReadOnlySequence<byte> envelope, ulong? expectedVehicle = null)
    {
        if (_p.IsSecure) throw new InvalidOperationException("This pipeline uses secure aggregation: decode the sum with DecodeSum.");
        bool inPlace = _p.QuantizationBits is null && _p.Codec.TopKFraction is null && _subsample is null && _rotation is null && BitConverter.IsLittleEndian;
        if (!inPlace) return Decode(envelope.IsSingleSegment ? envelope.FirstSpan : envelope.ToArray(), expectedVehicle);
        Span<byte> head = stackalloc byte[UpdateEnvelope.HeaderBytes];
        head = head[..(int)Math.Min(head.Length, envelope.Length)];
        envelope.Slice(0, head.Length).CopyTo(head);
        var h = UpdateEnvelope.ReadHeader(head, envelope.Length, Round, _p.MaxEnvelopeBytes);
        if (h.Lossless != LosslessKind.None) return Decode(envelope.ToArray(), expectedVehicle);
        CheckHeader(h, expectedVehicle);
        var body = envelope.Slice(UpdateEnvelope.HeaderBytes);
        if (body.Length != 4L * h.ValueCount) throw new UpdateFormatException($"Update body has {body.Length} bytes; {4L * h.ValueCount} expected for {h.ValueCount} values.");
        if (h.ValueCount != _p.Options.Dimension) return Decode(envelope.ToArray(), expectedVehicle);
        var values = new FloatSegments(body);
        // One pass for both checks: a sum of squares in double is finite exactly when every value is (a finite float's square
        // is below 1.2·10^77, so 2^31 of them stay far inside double's range; NaN and ±∞ make it NaN or +∞). The admission's
        // norm bound then reads it instead of passing over the values again.
        double squares = values.SumOfSquares();
        if (!double.IsFinite(squares)) throw new UpdateFormatException("Update contains NaN or infinite values.");
        return new DecodedUpdate(h, values, squares);
    }

    /// <summary>The checks of a plaintext update's header against this round's codec.</summary>
    private void CheckHeader(UpdateEnvelopeHeader h, ulong? expectedVehicle)
    {
        if (expectedVehicle is { } v && h.Vehicle != v) throw new UpdateFormatException($"Update claims vehicle {h.Vehicle}; it came from vehicle {v}.");
        if (h.CodecId != _p.CodecId) throw new UpdateFormatException($"Update was encoded with codec id 0x{h.CodecId:x8}; this round uses '{_p.Codec}' (0x{_p.CodecId:x8}).");
        if (h.Dimension != _p.Options.Dimension) throw new UpdateFormatException($"Update has dimension {h.Dimension}; the model has {_p.Options.Dimension}.");
        if (h.ValueCount != _p.KeptCount) throw new UpdateFormatException($"Update carries {h.ValueCount} values; this codec sends {_p.KeptCount}.");
        if (h.Bits != (_p.QuantizationBits ?? 0)) throw new UpdateFormatException($"Update uses {h.Bits} bits; this codec uses {_p.QuantizationBits ?? 0}.");
        bool topk = _p.Codec.TopKFraction is not null;
        if (topk != (h.IndexBytes > 0)) throw new UpdateFormatException(topk ? "A top-k update must carry its indices." : "A dense update carries no indices.");
        if (h.IndexBytes > 5L * h.ValueCount) throw new UpdateFormatException($"Top-k index list of {h.IndexBytes} bytes is too long for {h.ValueCount} indices.");
        if (h.Lossless != LosslessKind.None && h.Lossless != _p.Codec.Lossless) throw new UpdateFormatException($"Update uses lossless stage {h.Lossless}; this codec allows only {_p.Codec.Lossless}.");
        if (_p.SharedRange && h.Range != SharedRangeValue) throw new UpdateFormatException($"Update uses range {h.Range}; this round's public range is {SharedRangeValue}.");
        if (_p.QuantizationBits is null && h.Range != 0) throw new UpdateFormatException("A float32 update has no quantization range.");
    }

    /// <summary>
    /// Decodes the unmasked secure sum of <paramref name="contributors"/> inputs (values mod 2^m, already unwrapped because
    /// the modulus holds the sum): Σ(w/W)Δ̂ and Σ w/W, then the mean; subsample and rotation are undone once on the sum.
    /// Throws <see cref="SecureSumRejectedException"/> when the sum cannot be the sum of |U3| = <paramref name="contributors"/>
    /// honest inputs: then the round must be aborted and nothing released.
    /// </summary>
    /// <remarks>
    /// A vehicle can put any value mod 2^m into any coordinate, including the weight. If the mean divided by the masked
    /// weight sum, a weight of 1 − (n−1)L mod 2^m would make that sum 1/L and scale the released mean by n·L, cancelling
    /// central DP noise sized for the mean of n (issue 13 item 1). Under uniform weights every honest weight coordinate is
    /// exactly L, so the sum must be |U3|·L and the mean divides by the public |U3|. Under sample weights each honest weight
    /// lies in [⌊L·MinWeight/W⌋, L], so the sum must lie in |U3| times that range; one vehicle can then shrink the
    /// denominator at most to |U3|·⌊L·MinWeight/W⌋. Every coordinate of an honest sum is at most |U3|·L (no input exceeds L).
    /// </remarks>
    public DecodedSum DecodeSum(ReadOnlySpan<uint> sum, int contributors) => DecodeSum(sum, contributors, 0, null);

    /// <summary>
    /// Central DP on the integers the server holds: <see cref="DecodeSum(ReadOnlySpan{uint}, int)"/> after adding exact
    /// N_Z(0, (σ_sum/γ)²) (Canonne, Kamath &amp; Steinke 2020) to every data coordinate of the integer sum, σ_sum =
    /// <paramref name="sumNoiseStdDev"/> in real units of the sum (σ·C for DP-FedAvg). The forged-sum checks run first.
    /// </summary>
    public DecodedSum DecodeSumWithCentralNoise(ReadOnlySpan<uint> sum, int contributors, double sumNoiseStdDev, INoiseSource noise)
    {
        ArgumentNullException.ThrowIfNull(noise);
        if (!(sumNoiseStdDev >= 0) || !double.IsFinite(sumNoiseStdDev)) throw new ArgumentOutOfRangeException(nameof(sumNoiseStdDev), sumNoiseStdDev, "The noise standard deviation must be finite and ≥ 0.");
        return DecodeSum(sum, contributors, sumNoiseStdDev, noise);
    }

    private DecodedSum DecodeSum(ReadOnlySpan<uint> sum, int contributors, double centralStdDev, INoiseSource? centralNoise)
    {
        if (!_p.IsSecure) throw new InvalidOperationException("Secure aggregation is off.");
        if (sum.Length != _p.SecAggDimension) throw new ArgumentException($"The sum has {sum.Length} coordinates; expected {_p.SecAggDimension}.", nameof(sum));
        if (contributors < 1 || contributors > _p.Options.CohortSize) throw new ArgumentOutOfRangeException(nameof(contributors), contributors, $"Contributors must be within 1..{_p.Options.CohortSize}.");
        int b = _p.QuantizationBits!.Value;
        int k = _p.KeptCount;
        ulong level = StochasticQuantizer.MaxLevel(b);
        ulong honestMax = (ulong)contributors * level;
        // Discrete Gaussian inputs are any residue mod 2^m (noise is unbounded): no range to check on data coordinates.
        for (int i = 0; i < k && !_p.IsDiscreteGaussian; i++)
            if (sum[i] > honestMax)
                throw new SecureSumRejectedException($"Coordinate {i} of the secure sum is {sum[i]}, above |U3|·L = {contributors}·{level} = {honestMax} that {contributors} honest inputs can reach: a vehicle sent an out-of-range value; the sum is not released.");
        ulong weightLevels = sum[k];
        double weightSum;
        if (_p.UniformWeights)
        {
            if (weightLevels != honestMax)
                throw new SecureSumRejectedException($"The weight coordinate of the secure sum is {weightLevels}, not |U3|·L = {contributors}·{level} = {honestMax} as uniform weights require: a vehicle forged its weight; the sum is not released.");
            weightSum = contributors;
        }
        else
        {
            ulong floor = (ulong)Math.Floor(_p.Options.MinWeight / _p.Options.MaxWeight * level);
            ulong lo = (ulong)contributors * floor;
            if (weightLevels < lo || weightLevels > honestMax)
                throw new SecureSumRejectedException($"The weight coordinate of the secure sum is {weightLevels}, outside [{lo}, {honestMax}] that {contributors} weights in [{floor}, {level}] can sum to: a vehicle forged its weight; the sum is not released.");
            weightSum = weightLevels / (double)level;
        }
        int unclipped = 0;
        if (_p.Options.SendUnclippedBit)
        {
            if (UnclippedBitNoiseStdDev > 0)
            {
                // A noised count: the centred residue, any value is possible.
                long modulus = 1L << _p.ModulusBits;
                unclipped = (int)(sum[k + 1] >= modulus / 2 ? sum[k + 1] - modulus : sum[k + 1]);
            }
            else if (sum[k + 1] > (uint)contributors)
                throw new SecureSumRejectedException($"The unclipped-bit coordinate of the secure sum is {sum[k + 1]}, more than the {contributors} contributors: a vehicle forged its bit; the sum is not released.");
            else unclipped = (int)sum[k + 1];
        }
        var sums = new double[k];
        long[]? extra = null;
        if (centralNoise is not null && centralStdDev > 0)
        {
            double g = Granularity;
            extra = new long[k];
            Privacy.DiscreteGaussian.Fill(extra, centralStdDev * centralStdDev / (g * g), centralNoise);
        }
        if (_p.IsDiscreteGaussian)
        {
            // The centred lift of each residue: the sum of signed inputs, which the modulus holds (w.h.p. for the noise).
            long modulus = 1L << _p.ModulusBits, half = modulus / 2;
            double gamma = Granularity;
            for (int i = 0; i < k; i++) sums[i] = ((sum[i] >= half ? sum[i] - modulus : sum[i]) + (extra?[i] ?? 0)) * gamma;
        }
        else
        {
            StochasticQuantizer.DequantizeSum(sum[..k], contributors, SharedRangeValue, b, sums);
            if (extra is not null)
            {
                double step = Granularity;
                for (int i = 0; i < k; i++) sums[i] += extra[i] * step;
            }
        }
        var mean = new float[_p.Options.Dimension];
        if (weightSum > 0)
        {
            var scaled = new float[k];
            for (int i = 0; i < k; i++) scaled[i] = (float)(sums[i] / weightSum);
            Untransform(scaled, 1f, mean);
        }
        return new DecodedSum(mean, weightSum, unclipped);
    }

    /// <summary>Undoes subsample (scattering, ×1/p when unbiased) and rotation, writing P values.</summary>
    private void Untransform(float[] carried, float scale, Span<float> destination)
    {
        float[] full;
        if (_subsample is not null)
        {
            full = new float[_p.PaddedLength];
            float s = scale * (_p.Options.UnbiasedSubsample ? (float)(_p.PaddedLength / (double)_subsample.Indices.Length) : 1f);
            _subsample.Scatter(carried, s, full);
        }
        else
        {
            full = carried;
            if (scale != 1) L2Clipping.Scale(full, scale);
        }
        _rotation?.Inverse(full);
        full.AsSpan(0, destination.Length).CopyTo(destination);
    }
}

/// <summary>
/// One round's distributed discrete Gaussian as the accountant sees it: per-vehicle σ (real units), clip C, granularity γ,
/// rounding β and the summed dimension d (KLS 2021 Theorem 1).
/// </summary>
public sealed record DiscreteGaussianAccounting(double LocalStdDev, double ClipNorm, double Granularity, double RoundingBeta, int Dimension)
{
    /// <summary>Δ₂: the L2 sensitivity after conditional rounding (≥ C).</summary>
    public double Sensitivity => Math.Sqrt(ConditionalRounding.SensitivitySquared(ClipNorm, Granularity, Dimension, RoundingBeta));

    /// <summary>(ε, δ) after <paramref name="steps"/> rounds with at least <paramref name="noiseShares"/> shares in every released sum, sampling rate q.</summary>
    public PrivacySpent GetEpsilon(double q, int noiseShares, long steps, double delta) =>
        DistributedDiscreteGaussianAccountant.GetEpsilon(q, LocalStdDev, ClipNorm, Granularity, RoundingBeta, noiseShares, Dimension, steps, delta);

    /// <summary>
    /// A Gaussian noise multiplier z whose RDP α/(2z²) bounds this mechanism's at every order (Eq. 17's second term:
    /// 1/z = Δ₂/(√n σ) + √d·τ), for ledgers that charge (q = 1, z): sound at q = 1, the per-participation default.
    /// </summary>
    public double EquivalentNoiseMultiplier(int noiseShares)
    {
        double scale = Sensitivity / (Math.Sqrt(noiseShares) * LocalStdDev);
        double tau = DistributedDiscreteGaussianAccountant.Tau(noiseShares, LocalStdDev, Granularity);
        return 1 / (scale + Math.Sqrt(Dimension) * tau);
    }
}
