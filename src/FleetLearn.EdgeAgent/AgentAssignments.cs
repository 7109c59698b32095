using System.Security.Cryptography;
using FleetLearn.Core.Compression;
using FleetLearn.Core.Rounds;
using FleetLearn.Transport.Mqtt;
using Microsoft.Extensions.Logging;

namespace FleetLearn.EdgeAgent;

/// <summary>
/// A FedBuff task the vehicle joined: its round (a plaintext <see cref="VehicleRound"/> on the assigned version), the plan and the
/// plan's tag; or, for a secure group, no round yet and the group's signed plan (<see cref="GroupPlan"/>) to join as any round's plan.
/// </summary>
internal sealed record AssignedTask(VehicleRound? Round, RoundPlan Plan, ulong PlanTag, IReadOnlyList<VehicleEffect> Effects)
{
    /// <summary>A secure group's plan as if it came on the round topic (its signed bytes and what is left of its expiry).</summary>
    public MqttIncoming? GroupPlan { get; init; }
}

/// <summary>
/// The vehicle's answer to the aggregator's FedBuff assignments (<c>vehicles/{id}/inbox/assignment</c>, docs/async.md "Over MQTT"):
/// verifies the signed assignment and its plan, and joins it as a <see cref="BufferedTask"/>; a refusal (busy, participation cap)
/// is logged and the vehicle checks in again later. Secure FedBuff: a waiting assignment (joined a group still forming) is logged;
/// the group's plan, when it forms, is handed back to be joined as an ordinary secure <see cref="VehicleRound"/> (the vehicle's own
/// floors, malicious-aggregator requirement and budget apply as in a synchronous round).
/// </summary>
internal static class AgentAssignments
{
    /// <summary>
    /// The task <paramref name="message"/> hands this vehicle, or null (refused, declined, or not for it); a declined assignment
    /// withdraws the check-in at once, so that the slot is not held until the lease ends. Throws <see cref="WireFormatException"/> on a bad message.
    /// </summary>
    /// <remarks>
    /// While <paramref name="busy"/> (a round unfinished) a plaintext assignment is ignored; a secure group's plan is not: the
    /// aggregator sends one only to a vehicle it holds in no other group, so the unfinished round is one it gave up (a restart).
    /// </remarks>
    public static async Task<AssignedTask?> JoinAsync(MqttIncoming message, bool busy, ECDsa aggregatorKey, string fleet, VehicleProfile profile, AgentCheckIn checkIn, AgentRandomness random,
        TimeProvider time, ILogger logger, CancellationToken cancellationToken)
    {
        var ledger = checkIn.Ledger;
        var assignment = Assignment.Verify(message.Payload, aggregatorKey);
        if (assignment.Status != AckStatus.Accepted)
        {
            logger.LogDebug("agent {Vehicle}: check-in not assigned ({Reason}).", profile.VehicleId, assignment.Reason);
            return null;
        }
        if (assignment.IsWaiting)
        {
            logger.LogInformation("agent {Vehicle}: {Reason}.", profile.VehicleId, assignment.Reason);
            return null;
        }
        var plan = RoundPlanCodec.Verify(assignment.SignedPlan, aggregatorKey, fleet);
        if (plan.ModelSpec != profile.Pinned.ToString())
            throw new WireFormatException($"An assignment asks for model {plan.ModelSpec}; this vehicle runs only {profile.Pinned}.");
        bool secure = (plan.Protection?.SecureMode ?? SecureAggregationMode.Off) != SecureAggregationMode.Off;
        if (busy && !secure) return null;
        if (secure)
            return new AssignedTask(null, plan, Envelope.TagOf(assignment.SignedPlan), []) { GroupPlan = new MqttIncoming(message.Topic, assignment.SignedPlan, false) { ExpiresIn = message.ExpiresIn } };
        var randomness = new VehicleRoundRandomness(random.Noise(plan.Round), random.Rounding(plan.Round), Guid.NewGuid());
        // The lease as a duration from arrival (skew-free, as a round plan's deadline): the broker's expiry caps what is left.
        switch (BufferedTask.Join(plan, assignment.Slot, assignment.BufferSize, profile, ledger, randomness, time, PlanTiming.Remaining(plan, message.ExpiresIn)))
        {
            case Joined joined:
                logger.LogInformation("agent {Vehicle}: assigned model {Version} (slot {Slot}, K = {K}).", profile.VehicleId, plan.ModelVersion, assignment.Slot, assignment.BufferSize);
                return new AssignedTask(joined.Round, plan, Envelope.TagOf(assignment.SignedPlan), joined.Effects);
            case Declined declined:
                logger.LogWarning("agent {Vehicle}: declines the assignment of model {Version}: {Reason}; withdraws its check-in.", profile.VehicleId, plan.ModelVersion, declined.Reason);
                await checkIn.WithdrawAsync(cancellationToken).ConfigureAwait(false);
                return null;
            default:
                return null;
        }
    }
}
