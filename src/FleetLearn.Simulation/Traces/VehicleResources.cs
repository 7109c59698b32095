using FleetLearn.Core.Random;

namespace FleetLearn.Simulation.Traces;

/// <summary>
/// Per-vehicle compute and link, from stated distributions: one local update takes <see cref="UpdateMinutes"/> × a log-normal
/// speed factor (median 1, σ <see cref="ComputeSpread"/>) of compute — it stands for the whole on-vehicle step (decoding
/// video, the backbone on frames, E epochs of the head), not for the few Fashion-MNIST rows a simulated vehicle holds — and
/// moves the model down and the update up over depot Wi-Fi at a log-normal bandwidth (median <see cref="MedianMbps"/> Mbit/s,
/// σ <see cref="BandwidthSpread"/>). Pure functions of (seed, vehicle).
/// </summary>
/// <param name="UpdateMinutes">Compute minutes of one update on a median vehicle.</param>
/// <param name="ComputeSpread">σ of ln(speed factor).</param>
/// <param name="MedianMbps">Median depot Wi-Fi bandwidth, Mbit/s.</param>
/// <param name="BandwidthSpread">σ of ln(bandwidth).</param>
public sealed record VehicleResources(double UpdateMinutes = 10, double ComputeSpread = 0.6, double MedianMbps = 20, double BandwidthSpread = 1.0)
{
    /// <summary>Throws when a setting is out of range.</summary>
    public void Validate()
    {
        if (!(UpdateMinutes > 0 && UpdateMinutes <= 24 * 60)) throw new ArgumentException("--update-minutes must be within (0, 1440].");
        if (!(ComputeSpread >= 0 && ComputeSpread <= 3)) throw new ArgumentException("The compute spread must be within [0, 3].");
        if (!(MedianMbps > 0)) throw new ArgumentException("The median bandwidth must be positive.");
        if (!(BandwidthSpread >= 0 && BandwidthSpread <= 3)) throw new ArgumentException("The bandwidth spread must be within [0, 3].");
    }

    /// <summary>Compute hours of one update on <paramref name="vehicle"/>.</summary>
    public double ComputeHours(ulong seed, int vehicle) =>
        UpdateMinutes / 60 / Math.Exp(ComputeSpread * DeterministicRandom.Derive(seed, 0xC0C0, (ulong)vehicle).NextGaussian());

    /// <summary><paramref name="vehicle"/>'s depot Wi-Fi bandwidth in Mbit/s.</summary>
    public double Mbps(ulong seed, int vehicle) =>
        MedianMbps * Math.Exp(BandwidthSpread * DeterministicRandom.Derive(seed, 0xBA4D, (ulong)vehicle).NextGaussian());

    /// <summary>Hours from check-in to upload: download <paramref name="downBytes"/>, compute, upload <paramref name="upBytes"/>.</summary>
    public double TaskHours(ulong seed, int vehicle, long downBytes, long upBytes) =>
        ComputeHours(seed, vehicle) + (downBytes + upBytes) * 8.0 / (Mbps(seed, vehicle) * 1e6) / 3600;
}
