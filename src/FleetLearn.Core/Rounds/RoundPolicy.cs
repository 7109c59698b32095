using System.Buffers;
using System.Globalization;
using FleetLearn.Core.Compression;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Numerics;
using FleetLearn.Core.Privacy;

namespace FleetLearn.Core.Rounds;

/// <summary>
/// The two policies every way of closing a round shares — admitting one plaintext update, and releasing a combined update
/// into the next model — so that the synchronous <see cref="RoundCoordinator"/> and the buffered
/// <see cref="BufferedCoordinator"/> cannot drift apart on what is accepted, what is charged, or when a sum is withheld.
/// </summary>
internal static class RoundPolicy
{
    /// <summary>
    /// Decodes one plaintext envelope and checks it against the rules (weight range, uniform weights under DP, norm bound):
    /// null and the decoded update when it may be folded, else the rejection.
    /// </summary>
    public static Admission? AdmitPlain(UpdatePipelineRound codec, RoundRules rules, in ReadOnlySequence<byte> envelope, ulong index, out DecodedUpdate decoded)
    {
        decoded = default!;
        try
        {
            decoded = codec.Decode(envelope, index);
        }
        catch (UpdateFormatException e)
        {
            return Admission.Rejected(e.Message.Contains("NaN", StringComparison.Ordinal) ? RejectReasons.NonFinite : RejectReasons.Malformed, e.Message);
        }
        double weight = decoded.Header.Weight;
        if (!(weight > 0) || !double.IsFinite(weight) || weight > rules.MaxWeight * (1 + 1e-9) && !rules.UniformWeights)
            return Admission.Rejected(RejectReasons.Malformed, string.Create(CultureInfo.InvariantCulture, $"weight {weight} is outside (0, {rules.MaxWeight}]"));
        if (rules.UniformWeights && weight != 1)
            return Admission.Rejected(RejectReasons.Malformed, string.Create(CultureInfo.InvariantCulture, $"weight {weight}: every update weighs 1 under DP"));
        if (rules.MaxUpdateNorm is { } bound && (decoded.SumOfSquares is { } squares ? PlaintextUpdateCheck.CheckSumOfSquares(squares, bound) : PlaintextUpdateCheck.Check(decoded.Delta, bound)) is { IsAccepted: false } check)
            return Admission.Rejected(check.Verdict == UpdateVerdict.NonFinite ? RejectReasons.NonFinite : RejectReasons.NormExceeded, check.Reason!);
        return null;
    }

    /// <summary>Folds an admitted update into <paramref name="aggregator"/> with <paramref name="weight"/>: from the segments it arrived in when it has them.</summary>
    public static void Fold(IUpdateAggregator aggregator, DecodedUpdate decoded, double weight)
    {
        if (decoded.Segments is { } segments) aggregator.Add(segments, weight);
        else aggregator.Add(decoded.Delta, weight);
    }

    /// <summary>
    /// The release: checks noise shares and the minimum, adds <paramref name="charges"/> to <paramref name="effects"/> (before
    /// the sum is used: a crash can only over-count ε), adds central noise of standard deviation
    /// <paramref name="centralMeanStd"/> to the mean when given, and applies the strategy. Returns the next model, or null
    /// with <paramref name="failure"/> saying why nothing was applied.
    /// </summary>
    public static float[]? Release(RoundRules rules, IFederatedStrategy strategy, ReadOnlySpan<float> global, float[]? mean, int contributors,
        double? centralMeanStd, INoiseSource? centralNoise, IEnumerable<ChargeEffect> charges, List<RoundEffect> effects, ref string? failure)
    {
        int n = contributors;
        // Checked before the minimum: MinNoiseShares never exceeds MinParticipants, so behind it this reason could never show.
        if (failure is null && rules.Privacy == NoiseMode.Distributed && n < rules.MinNoiseShares)
            failure = string.Create(CultureInfo.InvariantCulture, $"{n} noise shares < the {rules.MinNoiseShares} the noise was sized for: the sum is not released");
        if (failure is null && n < rules.MinParticipants)
            failure = string.Create(CultureInfo.InvariantCulture, $"{n} updates < minimum {rules.MinParticipants}");
        if (failure is null && mean is null) failure = "no update carried any weight";
        if (failure is not null) return null;
        if (rules.Privacy is not null) effects.AddRange(charges);
        if (centralMeanStd is { } std)
        {
            // N(0, σ²C²) on the sum is N(0, σ²C²/n²) on the mean of n unit-weight updates; discrete Gaussian on a grid
            // 64 times finer than σ, so that no floating-point sampler's artefacts leak (Mironov 2012).
            DiscreteGaussian.AddOnGrid(mean!, std, std / 64, centralNoise!);
        }
        var next = global.ToArray();
        strategy.ApplyUpdate(next, mean!);
        if (!VectorMath.AllFinite(next))
        {
            failure = "the global model diverged (NaN or ∞): lower the learning rates";
            return null;
        }
        return next;
    }
}
