using FleetLearn.Core.Rounds;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Transport.Mqtt;

/// <summary>Unwraps a vehicle's update envelope into the round's <see cref="VehicleMessage"/>.</summary>
public static class UplinkDecoder
{
    /// <summary>The plaintext update or secure-aggregation message <paramref name="update"/> carries; <see cref="WireFormatException"/> when it does not parse.</summary>
    public static VehicleMessage Decode(Envelope update)
    {
        ArgumentNullException.ThrowIfNull(update);
        if (update.Kind == EnvelopeKind.SecAgg)
        {
            try
            {
                return new SecureUpdateMessage(SecAggCodec.Decode(update.Payload.Span, (ulong)update.Round));
            }
            catch (SecAggFormatException e)
            {
                throw new WireFormatException(e.Message, RejectReasons.Malformed, e);
            }
        }
        if (update.Kind != EnvelopeKind.Update) throw new WireFormatException($"A {update.Kind} envelope is not an update.", RejectReasons.Malformed);
        var plain = PlainUpdate.Decode(update.Payload);
        return new PlainUpdateMessage(plain.Body, plain.TrainLoss);
    }
}
