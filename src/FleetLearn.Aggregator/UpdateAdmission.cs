using System.Globalization;
using FleetLearn.Core.Rounds;
using FleetLearn.Core.SecureAggregation;
using FleetLearn.Transport.Mqtt;

namespace FleetLearn.Aggregator;

/// <summary>The verdict on an update envelope: closed rounds answer from memory, the open round from its coordinator.</summary>
internal static class UpdateAdmission
{
    /// <summary>Decodes <paramref name="update"/> and admits it; the step's effects are the runner's to carry out (null: none).</summary>
    public static (Admission Admission, RoundStep? Step) Admit(ClosedRounds closed, FleetEpochs epochs, AggregatorStatus status, RoundCoordinator? coordinator, string vehicle, Envelope update) =>
        Admit(closed, epochs, status, coordinator, vehicle, update, out _);

    /// <summary>As <see cref="Admit(ClosedRounds, FleetEpochs, AggregatorStatus, RoundCoordinator?, string, Envelope)"/>; <paramref name="message"/> is the decoded message (null when refused before decoding).</summary>
    public static (Admission Admission, RoundStep? Step) Admit(ClosedRounds closed, FleetEpochs epochs, AggregatorStatus status, RoundCoordinator? coordinator, string vehicle, Envelope update,
        out VehicleMessage? message)
    {
        message = null;
        if (epochs.Check(update) is { } refused) return (refused, null);
        try
        {
            message = UplinkDecoder.Decode(update);
        }
        catch (WireFormatException e)
        {
            return (Admission.Rejected(e.Reason, e.Message), null);
        }
        if (closed.IsClosed(update.Round) && coordinator?.Round != update.Round)
            return (closed.Admit(vehicle, update.Round, update.UpdateId, (message as SecureUpdateMessage)?.Message), null);
        if (coordinator is null || update.Round != coordinator.Round)
            return (Admission.Rejected(RejectReasons.WrongRound, $"round {update.Round} is not open (current {coordinator?.Round.ToString(CultureInfo.InvariantCulture) ?? "none"})"), null);
        var step = coordinator.Receive(vehicle, update.UpdateId, message);
        if (step.Admission.Status == AckStatus.Accepted && message is PlainUpdateMessage or SecureUpdateMessage { Message: MaskedInputMessage })
        {
            status.Accepted();
            status.VehicleParticipated(vehicle, coordinator.Round);
        }
        return (step.Admission, step);
    }
}
