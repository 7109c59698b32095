using System.Security.Cryptography;

namespace FleetLearn.Core.Privacy;

/// <summary>
/// Secret Poisson sampling (issue 13 item 7): each eligible vehicle decides by itself, from its own CSPRNG, to take part in
/// a round with probability q, and tells nobody beforehand. The server cannot choose or predict the cohort, so the
/// Poisson-subsampling amplification of the sampled Gaussian mechanism (Mironov, Talwar &amp; Zhang 2019) applies to the
/// population that ran the coin — provided a vehicle's not taking part is indistinguishable from its absence (it
/// sends nothing it would not have sent otherwise) and every round costs every member rdp(q, σ)
/// (<see cref="SamplingAssumption.UniformPoisson"/>).
/// </summary>
public static class PoissonSelfSelection
{
    /// <summary>True with probability exactly ⌊q·2^53⌋/2^53 from 53 fresh CSPRNG bits (never from a seed the server knows).</summary>
    public static bool Decide(double q)
    {
        if (!(q >= 0 && q <= 1)) throw new ArgumentOutOfRangeException(nameof(q), q, "The sampling rate q must be within [0, 1].");
        if (q == 1) return true;
        Span<byte> bytes = stackalloc byte[8];
        RandomNumberGenerator.Fill(bytes);
        ulong bits = BitConverter.ToUInt64(bytes) >> 11;
        return bits < (ulong)Math.Floor(q * 9007199254740992.0);
    }

    /// <summary>Which ε a report states: the population's sampled figure or the per-vehicle one without amplification.</summary>
    public static string Describe(SamplingAssumption sampling, double q) => sampling == SamplingAssumption.UniformPoisson
        ? $"fleet, Poisson-sampled q = {q.ToString("G4", System.Globalization.CultureInfo.InvariantCulture)}"
        : "per vehicle, q = 1";
}
