using FleetLearn.Core.Compression;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Rounds;
using FleetLearn.Core.SecureAggregation;
using FleetLearn.Transport.Mqtt;

namespace FleetLearn.Aggregator;

/// <summary>Turns the aggregator's settings into the <see cref="RoundProtection"/> its round plans carry.</summary>
public static class AggregatorProtection
{
    /// <summary>Parses <c>off</c> / <c>full</c> / <c>plus</c>.</summary>
    public static SecureAggregationMode ParseSecure(string text) => text.Trim().ToLowerInvariant() switch
    {
        "off" or "none" => SecureAggregationMode.Off,
        "full" or "secagg" => SecureAggregationMode.Full,
        "plus" or "secagg+" => SecureAggregationMode.Plus,
        _ => throw new FormatException($"SecureAggregation '{text}': expected off, full or plus."),
    };

    /// <summary><see cref="ParseSecure"/>, or off when the text is not a mode (its own validation reports that).</summary>
    internal static SecureAggregationMode ParseSecureOrOff(string text)
    {
        try { return ParseSecure(text); }
        catch (FormatException) { return SecureAggregationMode.Off; }
    }

    /// <summary>Parses <c>off</c> / <c>central</c> / <c>distributed</c>.</summary>
    public static NoiseMode? ParsePrivacy(string text) => text.Trim().ToLowerInvariant() switch
    {
        "off" or "none" => null,
        "central" => NoiseMode.Central,
        "distributed" => NoiseMode.Distributed,
        _ => throw new FormatException($"Privacy '{text}': expected off, central or distributed."),
    };

    /// <summary>
    /// The round-independent part of the protection for a cohort of <paramref name="cohortSize"/> selected vehicles:
    /// codec, clip norm, noise (σC/√m_min per vehicle under distributed DP, m_min = MinParticipants), weights and the
    /// secure-aggregation graph. <paramref name="maxWeight"/> is W when weights are sample counts.
    /// </summary>
    public static RoundProtection Describe(AggregatorOptions options, int cohortSize, double maxWeight)
    {
        ArgumentNullException.ThrowIfNull(options);
        var secure = options.SecureMode;
        var noise = options.PrivacyMode;
        if (noise is not null && (!(options.NoiseMultiplier > 0) || double.IsInfinity(options.NoiseMultiplier)))
            throw new ArgumentException("Aggregator:NoiseMultiplier must be positive when Privacy is on.");
        if (noise is not null && options.ClipNorm is null) throw new ArgumentException("Aggregator:ClipNorm is required when Privacy is on.");
        if (!(options.Delta > 0 && options.Delta < 1)) throw new ArgumentException("Aggregator:Delta must be within (0, 1).");
        if (options.EpsilonBudget is { } b && !(b > 0)) throw new ArgumentException("Aggregator:EpsilonBudget must be positive.");
        int minShares = Math.Clamp(options.MinParticipants, 1, Math.Max(1, cohortSize));
        return new RoundProtection
        {
            Codec = options.CodecSpec.ToString(),
            SecureAggregation = RoundProtection.Text(secure),
            Neighbors = secure == SecureAggregationMode.Plus ? options.SecAggNeighbors ?? DefaultNeighbors(cohortSize, SecAggPlusParameters.MissingFraction(cohortSize, options.CohortSize), options.SecAggMaliciousServer) : null,
            ModulusBits = options.SecAggModulusBits,
            ClipNorm = options.ClipNorm,
            Noise = RoundProtection.Text(noise),
            NoiseMultiplier = noise is null ? 0 : options.NoiseMultiplier,
            VehicleNoiseStdDev = noise == NoiseMode.Distributed ? options.NoiseMultiplier * options.ClipNorm!.Value / Math.Sqrt(minShares) : 0,
            MinNoiseShares = noise == NoiseMode.Distributed ? minShares : 1,
            Delta = options.Delta,
            // Under DP every clipped update weighs the same, so the sum's sensitivity is C.
            UniformWeights = noise is not null,
            MaxWeight = noise is not null ? 1 : Math.Max(1, maxWeight),
            WeightCap = noise is not null ? null : options.WeightCap,
            PhaseTimeoutMs = (long)options.PhaseTimeout.TotalMilliseconds,
            MaliciousAggregator = secure != SecureAggregationMode.Off && options.SecAggMaliciousServer,
            ColludingHolders = options.SecAggMaliciousServer ? options.SecAggColludingHolders : 0,
        };
    }

    /// <summary>The derived k: for self-chosen holders against a malicious aggregator, else for the seed ring.</summary>
    private static int? DefaultNeighbors(int cohortSize, double missing, bool malicious)
        => malicious ? SecAggPlusParameters.DefaultSelfChosenHolders(cohortSize, missing) : NeighborGraph.DefaultNeighbors(cohortSize, missing);
}
