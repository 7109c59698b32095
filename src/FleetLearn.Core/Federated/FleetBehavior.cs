using FleetLearn.Core.Random;

namespace FleetLearn.Core.Federated;

/// <summary>
/// Seeded model of how vehicles behave: whether one is available for a round, whether it drops
/// out mid-round, and how fast it trains. Every draw is a pure function of (seed, round, vehicle),
/// so a vehicle costs no memory and a run replays exactly.
/// </summary>
/// <param name="Availability">Probability that a vehicle is eligible (parked, charging, on Wi-Fi) in a round.</param>
/// <param name="Dropout">Probability that a selected vehicle disappears before uploading.</param>
/// <param name="SpeedSpread">σ of the log-normal per-vehicle speed factor (0 = all alike).</param>
/// <param name="NominalSamplesPerSecond">Training speed of a median vehicle, in samples/s (drives the simulated clock).</param>
public sealed record FleetBehavior(double Availability = 1.0, double Dropout = 0.0, double SpeedSpread = 0.5, double NominalSamplesPerSecond = 2000)
{
    /// <summary>Throws when a probability is outside [0, 1] or a rate is not positive.</summary>
    public void Validate()
    {
        if (!(Availability > 0 && Availability <= 1)) throw new ArgumentOutOfRangeException(nameof(Availability), Availability, "Availability must be within (0, 1].");
        if (!(Dropout >= 0 && Dropout < 1)) throw new ArgumentOutOfRangeException(nameof(Dropout), Dropout, "Dropout must be within [0, 1).");
        if (!(SpeedSpread >= 0 && SpeedSpread <= 5)) throw new ArgumentOutOfRangeException(nameof(SpeedSpread), SpeedSpread, "Speed spread must be within [0, 5].");
        if (!(NominalSamplesPerSecond > 0)) throw new ArgumentOutOfRangeException(nameof(NominalSamplesPerSecond), NominalSamplesPerSecond, "Nominal speed must be positive.");
    }

    /// <summary>Whether <paramref name="vehicle"/> is available in <paramref name="round"/>.</summary>
    public bool IsAvailable(ulong seed, int round, int vehicle) =>
        Availability >= 1 || Draw(seed, 0xA7A1, round, vehicle) < Availability;

    /// <summary>Whether <paramref name="vehicle"/> drops out mid-<paramref name="round"/>.</summary>
    public bool DropsOut(ulong seed, int round, int vehicle) =>
        Dropout > 0 && Draw(seed, 0xD20B, round, vehicle) < Dropout;

    /// <summary>The vehicle's fixed speed factor (log-normal, median 1).</summary>
    public double SpeedFactor(ulong seed, int vehicle)
    {
        if (SpeedSpread == 0) return 1;
        var rng = DeterministicRandom.Derive(seed, 0x5BEE, (ulong)vehicle);
        return Math.Exp(SpeedSpread * rng.NextGaussian());
    }

    /// <summary>Simulated seconds for a vehicle to train <paramref name="samples"/> samples.</summary>
    public double TrainingSeconds(ulong seed, int vehicle, long samples) =>
        samples / (NominalSamplesPerSecond * SpeedFactor(seed, vehicle));

    private static double Draw(ulong seed, ulong purpose, int round, int vehicle) =>
        DeterministicRandom.Derive(seed, purpose, ((ulong)(uint)round << 32) | (uint)vehicle).NextDouble();
}
