using System.Security.Cryptography;
using FleetLearn.Core.Compression;
using FleetLearn.Core.Model;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Core.Rounds;

/// <summary>A vehicle's secure-aggregation state machine for one plan, with the key registry it checks peers against and what the round charges.</summary>
/// <param name="Vehicle">The state machine (call <see cref="SecAggVehicle.Start"/> to advertise keys).</param>
/// <param name="Registry">The cohort's device keys as this vehicle checks them (certified ones when it holds the device CA).</param>
/// <param name="Charge">What taking part costs this vehicle's ledger (<see cref="RoundProtection.Charge"/>); null without DP.</param>
public sealed record SecureVehicleRound(SecAggVehicle Vehicle, IDeviceKeyRegistry Registry, PrivacyCharge? Charge) : IDisposable
{
    /// <inheritdoc/>
    public void Dispose()
    {
        Vehicle.Dispose();
        (Registry as IDisposable)?.Dispose();
    }
}

/// <summary>Builds a vehicle's side of a plan's secure aggregation the one way every vehicle runner must (issue 13 item 5).</summary>
public static class SecureVehicleSetup
{
    /// <summary>
    /// The vehicle's SecAgg state machine for <paramref name="plan"/>, received as <paramref name="signedPlan"/> (its bytes bind
    /// every signature of the round, with the fleet id). Throws <see cref="WireFormatException"/> when the vehicle must refuse
    /// the plan: not in the cohort, a plan without the malicious-aggregator mode this vehicle requires, no certificates while
    /// the vehicle holds the device CA, or another certificate than its own in its slot.
    /// </summary>
    /// <param name="plan">The decoded, signature-checked plan (secure aggregation on).</param>
    /// <param name="signedPlan">The plan exactly as received (what the aggregator signed).</param>
    /// <param name="vehicleId">This vehicle's id (its certificate's CN).</param>
    /// <param name="deviceKey">Its device key: the private key of its mTLS certificate when the fleet has a device CA.</param>
    /// <param name="deviceCa">The fleet's device CA (the vehicle's own copy, e.g. Mqtt:CaFile); null = trust the plan's keys (honest-but-curious aggregator).</param>
    /// <param name="aggregatorKey">The aggregator's public plan key: it checks the signed SecAgg downlink.</param>
    /// <param name="requireMaliciousAggregatorMode">This vehicle's own floor: refuse plans that do not run against a malicious aggregator.</param>
    /// <param name="time">Clock for the vehicle's deadlines.</param>
    /// <param name="pipeline">The plan's pipeline when the caller built it already (<see cref="RoundProtection.CreatePipeline"/>); null = built here.</param>
    /// <param name="holderRandomness">Where the vehicle draws its own SecAgg+ share holders; null = the OS CSPRNG (seeded only by simulations).</param>
    public static SecureVehicleRound Create(
        RoundPlan plan, ReadOnlySpan<byte> signedPlan, string vehicleId, ECDsa deviceKey, DeviceCertificateAuthority? deviceCa, ECDsa aggregatorKey,
        bool requireMaliciousAggregatorMode = false, TimeProvider? time = null, UpdatePipeline? pipeline = null, INoiseSource? holderRandomness = null)
    {
        ArgumentNullException.ThrowIfNull(plan);
        ArgumentNullException.ThrowIfNull(deviceKey);
        ArgumentNullException.ThrowIfNull(aggregatorKey);
        var protection = plan.Protection ?? throw new WireFormatException($"Round plan {plan.Round} has no protection settings.", RejectReasons.Malformed);
        if (protection.SecureMode == SecureAggregationMode.Off) throw new WireFormatException($"Round plan {plan.Round} has no secure aggregation.", RejectReasons.Malformed);
        if (requireMaliciousAggregatorMode && !protection.MaliciousAggregator)
            throw new WireFormatException($"Round plan {plan.Round} does not run against a malicious aggregator, which this vehicle requires.", RejectReasons.Signature);
        int index = plan.Cohort.ToList().IndexOf(vehicleId);
        if (index < 0) throw new WireFormatException($"Vehicle {vehicleId} is not in the cohort of round {plan.Round}.", RejectReasons.Malformed);
        // A sharded plan: the vehicle joins its shard's own secure sum (its part, seed and k); the modulus stays the whole cohort's.
        var shard = PlanShards.Of(plan, vehicleId);
        if (plan.Shards is not null && shard is null) throw new WireFormatException($"Round plan {plan.Round} puts vehicle {vehicleId} in no shard.", RejectReasons.Malformed);
        var cohort = shard?.Cohort ?? plan.Cohort;
        if (shard is not null) index = shard.Index;
        pipeline ??= protection.CreatePipeline(ModelSpec.Parse(plan.ModelSpec).ParameterCount, plan.Cohort.Count);
        var parameters = protection.CreateSecAggParameters(pipeline, plan.Round, cohort.Count, SecAggSession.Id(plan.Fleet, signedPlan), shard?.Shard);
        var registry = protection.CreateDeviceKeyRegistry(cohort, deviceCa, shard?.Shard);
        try
        {
            // Its own slot must carry its own key: otherwise its peers would check its round keys against someone else's.
            var listed = registry.FindDeviceKey(index)
                ?? throw new WireFormatException($"Round plan {plan.Round}: this vehicle's own slot does not check out: {registry.WhyUnknown(index)}.", RejectReasons.Signature);
            if (!listed.ExportSubjectPublicKeyInfo().AsSpan().SequenceEqual(deviceKey.ExportSubjectPublicKeyInfo()))
                throw new WireFormatException($"Round plan {plan.Round} lists another device key for this vehicle.", RejectReasons.Signature);
            var vehicle = new SecAggVehicle(parameters, index, deviceKey, registry, time, protection.MaliciousAggregator ? aggregatorKey : null, holderRandomness);
            return new SecureVehicleRound(vehicle, registry, protection.Charge(pipeline, plan.Round));
        }
        catch
        {
            (registry as IDisposable)?.Dispose();
            throw;
        }
    }
}
