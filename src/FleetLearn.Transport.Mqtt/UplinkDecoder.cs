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
                return new SecureUpdateMessage(SecAggCodec.Decode(update.Body, (ulong)update.Round));
            }
            catch (SecAggFormatException e)
            {
                throw new WireFormatException(e.Message, RejectReasons.Malformed, e);
            }
        }
        if (update.Kind != EnvelopeKind.Update) throw new WireFormatException($"A {update.Kind} envelope is not an update.", RejectReasons.Malformed);
        var (loss, _, body) = PlainUpdate.Decode(update.Body); // in the segments the update arrived in: folded from there
        return new PlainUpdateMessage(body, loss);
    }
}
