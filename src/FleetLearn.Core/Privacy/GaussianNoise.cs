namespace FleetLearn.Core.Privacy;

/// <summary>Where the DP-FedAvg Gaussian noise is added.</summary>
public enum NoiseMode
{
    /// <summary>The aggregator adds N(0, σ²C²) to the sum of the clipped updates (McMahan et al. 2018). Requires trusting the aggregator with the raw sum.</summary>
    Central,

    /// <summary>
    /// Each vehicle adds N(0, σ²C²/m_min) to its own clipped update before secure aggregation, so the sum over
    /// any surviving cohort of s ≥ m_min vehicles carries variance s/m_min·σ²C² ≥ σ²C²: the guarantee holds
    /// (and is stronger when more survive). If fewer than m_min survive the round must be discarded.
    /// </summary>
    Distributed,
}

/// <summary>DP-FedAvg noise settings: clip norm C, noise multiplier σ, mode, minimum surviving cohort m_min.</summary>
public sealed record DpNoiseSettings
{
    /// <summary>Creates validated settings.</summary>
    public DpNoiseSettings(double clipNorm, double noiseMultiplier, NoiseMode mode, int minSurvivors = 1)
    {
        if (!(clipNorm > 0) || double.IsInfinity(clipNorm))
            throw new ArgumentOutOfRangeException(nameof(clipNorm), clipNorm, "The clipping norm C must be a positive finite number.");
        if (!(noiseMultiplier >= 0) || double.IsInfinity(noiseMultiplier))
            throw new ArgumentOutOfRangeException(nameof(noiseMultiplier), noiseMultiplier, "The noise multiplier σ must be finite and ≥ 0.");
        if (mode == NoiseMode.Distributed) ArgumentOutOfRangeException.ThrowIfNegativeOrZero(minSurvivors);
        ClipNorm = clipNorm;
        NoiseMultiplier = noiseMultiplier;
        Mode = mode;
        MinSurvivors = mode == NoiseMode.Distributed ? minSurvivors : 1;
    }

    /// <summary>L2 clipping norm C (the sensitivity of the sum).</summary>
    public double ClipNorm { get; }

    /// <summary>Noise multiplier σ: the sum's noise standard deviation is σ·C.</summary>
    public double NoiseMultiplier { get; }

    /// <summary>Central or distributed noise.</summary>
    public NoiseMode Mode { get; }

    /// <summary>m_min: the smallest surviving cohort the round accepts (distributed mode; 1 for central).</summary>
    public int MinSurvivors { get; }

    /// <summary>Standard deviation each vehicle adds: 0 (central) or σC/√m_min (distributed).</summary>
    public double VehicleNoiseStdDev => Mode == NoiseMode.Distributed ? NoiseMultiplier * ClipNorm / Math.Sqrt(MinSurvivors) : 0;

    /// <summary>Standard deviation the aggregator adds to the sum: σC (central) or 0 (distributed).</summary>
    public double AggregatorNoiseStdDev => Mode == NoiseMode.Central ? NoiseMultiplier * ClipNorm : 0;

    /// <summary>
    /// The noise multiplier the sum actually carries with <paramref name="survivors"/> contributions: σ (central),
    /// σ·√(s/m_min) (distributed). The accountant should use <see cref="NoiseMultiplier"/>, the guaranteed lower bound.
    /// </summary>
    public double EffectiveNoiseMultiplier(int survivors)
    {
        if (Mode == NoiseMode.Central) return NoiseMultiplier;
        if (survivors < MinSurvivors)
            throw new InvalidOperationException($"Only {survivors} vehicles survived, fewer than m_min = {MinSurvivors}: the sum carries less noise than accounted, discard the round.");
        return NoiseMultiplier * Math.Sqrt((double)survivors / MinSurvivors);
    }
}

/// <summary>Adds Gaussian noise to a vector (the Gaussian mechanism; DP-FedAvg, McMahan et al. 2018).</summary>
public static class GaussianNoise
{
    private const int Chunk = 4096;

    /// <summary>values[i] += N(0, stdDev²) for every i, with draws from <paramref name="source"/> (default: <see cref="SecureNoiseSource"/>).</summary>
    public static void Add(Span<float> values, double stdDev, INoiseSource? source = null)
    {
        if (!(stdDev >= 0) || double.IsInfinity(stdDev))
            throw new ArgumentOutOfRangeException(nameof(stdDev), stdDev, "The noise standard deviation must be finite and ≥ 0.");
        if (stdDev == 0 || values.IsEmpty) return;
        source ??= new SecureNoiseSource();
        Span<double> noise = stackalloc double[Math.Min(Chunk, values.Length)];
        for (int start = 0; start < values.Length; start += noise.Length)
        {
            int n = Math.Min(noise.Length, values.Length - start);
            var chunk = noise[..n];
            source.FillStandardNormal(chunk);
            var target = values.Slice(start, n);
            for (int i = 0; i < n; i++) target[i] = (float)(target[i] + stdDev * chunk[i]);
        }
    }

    /// <summary>A vehicle's step of distributed DP-FedAvg: clip to C, then add N(0, σ²C²/m_min). Returns the pre-clip norm.</summary>
    public static double ClipAndNoise(Span<float> update, DpNoiseSettings settings, INoiseSource? source = null)
    {
        ArgumentNullException.ThrowIfNull(settings);
        double norm = L2Clipping.Clip(update, settings.ClipNorm);
        Add(update, settings.VehicleNoiseStdDev, source);
        return norm;
    }

    /// <summary>The aggregator's step: add N(0, σ²C²) to the sum in central mode (no-op in distributed mode).</summary>
    public static void NoiseSum(Span<float> sum, DpNoiseSettings settings, INoiseSource? source = null)
    {
        ArgumentNullException.ThrowIfNull(settings);
        Add(sum, settings.AggregatorNoiseStdDev, source);
    }
}
