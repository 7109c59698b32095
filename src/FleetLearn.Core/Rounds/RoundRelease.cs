using FleetLearn.Core.Privacy;
using FleetLearn.Core.Compression;

namespace FleetLearn.Core.Rounds;

/// <summary>
/// The close of a round from its combined sum — decode, then <see cref="RoundPolicy.Release"/> — the one function that both
/// <see cref="RoundCoordinator"/> (its own sum) and <see cref="ShardCombiner"/> (the shards' sums added) call.
/// </summary>
internal static class RoundRelease
{
    /// <summary>
    /// Decodes <paramref name="combined"/> (a secure ring sum with the total survivor count, so the weight-coordinate and
    /// range checks run on the whole sum; central noise on its integers), checks noise shares and the minimum, charges the
    /// contributors once, applies the strategy, and adds the <see cref="CloseEffect"/>. Returns the outcome.
    /// </summary>
    public static RoundOutcome Close(RoundSetup setup, PartialSum combined, IReadOnlyList<string> silent, DateTimeOffset now, List<RoundEffect> effects)
    {
        var rules = setup.Rules;
        string? failure = (combined as FailedPartialSum)?.Reason;
        float[]? mean = null;
        int unclipped = combined.UnclippedCount;
        var contributors = combined.Contributors;
        int n = contributors.Count;
        switch (combined)
        {
            case PlainPartialSum plain:
                mean = plain.Mean;
                break;
            case SecurePartialSum secure:
                try
                {
                    // Central DP on a secure sum: exact discrete Gaussian noise on the integers the server holds (Canonne,
                    // Kamath & Steinke 2020), before anything is decoded to floats.
                    var sum = rules.Privacy == NoiseMode.Central
                        ? setup.Codec.DecodeSumWithCentralNoise(secure.Sum.Span, n, CentralSumNoise(setup), setup.CentralNoise!)
                        : setup.Codec.DecodeSum(secure.Sum.Span, n);
                    unclipped = sum.UnclippedCount;
                    if (sum.WeightSum > 0) mean = sum.Mean;
                }
                catch (SecureSumRejectedException e)
                {
                    // A forged weight coordinate (or values no honest input can produce): the sum is not released.
                    failure = $"secure sum rejected: {e.Message}";
                }
                break;
        }
        // Central noise on a secure sum was added to the integers above; a plaintext mean gets it in the release.
        double? centralStd = rules.Privacy == NoiseMode.Central && combined is PlainPartialSum ? CentralSumNoise(setup) / n : null;
        var next = RoundPolicy.Release(rules, setup.Strategy, setup.Global.Span, mean, n, centralStd, setup.CentralNoise,
            rules.Privacy is null ? [] : [new ChargeEffect(setup.Round, contributors, rules.Charge)], effects, ref failure);
        double loss = combined.LossCount == 0 ? double.NaN : combined.LossSum / combined.LossCount;
        RoundOutcome outcome = next is not null
            ? new RoundApplied { Round = setup.Round, Contributors = contributors, Silent = silent, TrainLoss = loss, UnclippedCount = unclipped, ClosedAt = now, Parameters = next }
            : new RoundAborted { Round = setup.Round, Contributors = contributors, Silent = silent, TrainLoss = loss, UnclippedCount = unclipped, ClosedAt = now, Reason = failure! };
        effects.Add(new CloseEffect(outcome));
        return outcome;
    }

    /// <summary>σ_Δ·C: the standard deviation of central noise on the sum.</summary>
    private static double CentralSumNoise(RoundSetup setup) => (setup.CentralNoiseMultiplier ?? setup.Rules.NoiseMultiplier) * setup.Codec.ClipNorm!.Value;
}
