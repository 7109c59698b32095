using FleetLearn.Core.Compression;

namespace FleetLearn.Core.Rounds;

/// <summary>
/// The vehicle's side of a FedBuff check-in (<see cref="BufferedCoordinator.CheckIn"/>): an accepted check-in hands the vehicle
/// a model version and a slot, announced as a signed plan for that version with the vehicle as its only member. The vehicle
/// runs it as an ordinary plaintext <see cref="VehicleRound"/> — train, charge its own ledger, encode, send — whose codec is
/// version <see cref="RoundPlan.ModelVersion"/>'s (<see cref="CodecFor"/>, the one the coordinator decodes with) and whose
/// envelope names the slot as its vehicle index.
/// </summary>
public static class BufferedTask
{
    /// <summary>
    /// The codec of model version <paramref name="version"/> under <paramref name="protection"/> for a buffer of
    /// <paramref name="bufferSize"/>: what a vehicle handed that version encodes with, and what the coordinator decodes with.
    /// </summary>
    public static UpdatePipelineRound CodecFor(RoundProtection protection, int dimension, int bufferSize, long version)
    {
        ArgumentNullException.ThrowIfNull(protection);
        return protection.ForRound(protection.CreatePipeline(dimension, bufferSize), version);
    }

    /// <summary>
    /// An assignment (a verified <paramref name="plan"/> for one model version, its <paramref name="slot"/> and the buffer size
    /// <paramref name="bufferSize"/>) against the vehicle's own policy: not for this vehicle, declined (privacy floors for a
    /// buffer of K, batch, ε budget, a secure plan sent as a one-vehicle assignment), or joined — then the model version is awaited.
    /// </summary>
    public static PlanDecision Join(RoundPlan plan, ulong slot, int bufferSize, VehicleProfile profile, IVehicleLedger? ledger, VehicleRoundRandomness randomness,
        TimeProvider time, TimeSpan? remaining = null)
    {
        ArgumentNullException.ThrowIfNull(plan);
        ArgumentNullException.ThrowIfNull(profile);
        ArgumentNullException.ThrowIfNull(randomness);
        if (plan.Cohort.Count != 1 || plan.Cohort[0] != profile.VehicleId) return new NotSelected();
        if (bufferSize < 1) return new Declined($"buffer size {bufferSize} is not positive");
        if (slot > int.MaxValue) return new Declined($"slot {slot} is out of range");
        var protection = plan.Protection ?? new RoundProtection();
        if (protection.SecureMode != SecureAggregationMode.Off)
            return new Declined("a secure FedBuff group's plan names the whole group and is joined as a secure round, not as a one-vehicle assignment (docs/async.md)");
        var pipeline = protection.CreatePipeline(profile.Pinned.ParameterCount, bufferSize);
        var charge = protection.Charge(pipeline, plan.ModelVersion);
        if (protection.PrivacyRefusal(profile.Floors, bufferSize) is { } floor) return new Declined(floor);
        if (plan.Batch > profile.MaxBatch) return new Declined($"batch {plan.Batch} exceeds {profile.MaxBatch}");
        if (VehicleBudget.Refusal(charge, ledger, plan.Round, plan.ModelVersion) is { } spent) return new Declined(spent);
        var round = new VehicleRound(new VehicleRoundSetup
        {
            Round = plan.Round,
            VehicleId = profile.VehicleId,
            CohortIndex = (int)slot,
            ModelVersion = plan.ModelVersion,
            Spec = profile.Pinned,
            Deadline = remaining is { } left ? time.GetUtcNow() + left : DateTimeOffset.FromUnixTimeMilliseconds(plan.DeadlineUnixMs),
            Codec = protection.ForRound(pipeline, plan.ModelVersion),
            Charge = charge,
            Ledger = ledger,
            Randomness = randomness,
        }, time);
        return new Joined(round, round.Start());
    }
}
