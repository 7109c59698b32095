using FleetLearn.Core.Privacy;
using FleetLearn.Core.Rounds;
using FleetLearn.Core.SecureAggregation;
using FleetLearn.Storage;
using FleetLearn.Transport.Mqtt;

namespace FleetLearn.Aggregator;

/// <summary>The vehicles that have checked in and may be selected: device keys checked against the registry, budgets against the ledger.</summary>
internal sealed class FleetRoster(LiteDbRoundStore store, LiteDbPrivacyLedgerStore? ledger, double? epsilonBudget, DeviceCertificateAuthority? deviceCa = null)
{
    private readonly Dictionary<string, Checkin> _checkedIn = new(StringComparer.Ordinal);

    /// <summary>Vehicles checked in now.</summary>
    public int Count => _checkedIn.Count;

    /// <summary>The fleet's device CA when check-ins must carry certificates (then plans list them).</summary>
    public DeviceCertificateAuthority? DeviceCa => deviceCa;

    /// <summary>The check-in of <paramref name="vehicle"/> if it is checked in now, else null.</summary>
    public Checkin? Find(string vehicle) => _checkedIn.GetValueOrDefault(vehicle);

    /// <summary>The check-in of <paramref name="vehicle"/>.</summary>
    public Checkin this[string vehicle] => _checkedIn[vehicle];

    /// <summary>
    /// Records a check-in (0 samples: the vehicle withdraws). The device key must be a P-256 key, and the one registered at the
    /// vehicle's first check-in; otherwise the check-in is refused with a <see cref="WireFormatException"/>.
    /// </summary>
    public void CheckIn(string vehicle, Checkin checkin)
    {
        if (checkin.Samples == 0)
        {
            _checkedIn.Remove(vehicle);
            return;
        }
        if (DeviceKeyValidation.Check(checkin.DeviceKey) is { } why)
            throw new WireFormatException($"Check-in of {vehicle} carries no valid device key: {why}");
        if (deviceCa is not null)
        {
            if (checkin.DeviceCertificate is null)
                throw new WireFormatException($"Check-in of {vehicle} carries no device certificate; this fleet requires keys certified by its device CA.", RejectReasons.Signature);
            if (deviceCa.Check(checkin.DeviceCertificate, vehicle, out var certified) is { } uncertified)
                throw new WireFormatException($"Check-in of {vehicle} is refused: {uncertified}.", RejectReasons.Signature);
            using (certified)
                if (!certified!.ExportSubjectPublicKeyInfo().AsSpan().SequenceEqual(checkin.DeviceKey))
                    throw new WireFormatException($"Check-in of {vehicle} carries a device key that is not its certificate's key.", RejectReasons.Signature);
        }
        var ofRecord = store.RegisterDeviceKey(vehicle, checkin.DeviceKey);
        if (!ofRecord.AsSpan().SequenceEqual(checkin.DeviceKey))
            throw new WireFormatException($"Check-in of {vehicle} carries a device key that differs from the registered one.", RejectReasons.Signature);
        _checkedIn[vehicle] = checkin;
    }

    /// <summary>Decodes a check-in envelope from <paramref name="vehicle"/>'s topic and records it; returns the envelope (its round is the vehicle's last joined round).</summary>
    public Envelope CheckIn(string vehicle, byte[] payload)
    {
        var envelope = Envelope.Decode(payload, maxPayload: Checkin.MaxBytes);
        if (envelope.Vehicle != vehicle || envelope.Kind != EnvelopeKind.Checkin)
            throw new WireFormatException($"Check-in on {vehicle}'s topic names {envelope.Vehicle}.", RejectReasons.NotInCohort);
        CheckIn(vehicle, Checkin.Decode(envelope.Payload.Span));
        return envelope;
    }

    /// <summary>Takes vehicles off the available list until they check in again (a vehicle gone for good is not selected round after round).</summary>
    public void Forget(IEnumerable<string> vehicles)
    {
        foreach (var v in vehicles) _checkedIn.Remove(v);
    }

    /// <summary>Checked-in vehicles that may take part under <paramref name="charge"/> (null: no DP), in the canonical candidate order (<see cref="VehicleId.Order"/>).</summary>
    public string[] Eligible(PrivacyCharge? charge) =>
        [.. _checkedIn.Keys.Where(v => ledger is null || epsilonBudget is null || charge is not { } c || ledger.CanParticipate(v, c)).Order(VehicleId.Order)];
}
