namespace FleetLearn.Simulation.Traces;

/// <summary>
/// Secure FedBuff's concurrency accounting (docs/async.md, "Secure aggregation on traces"). A vehicle drawn into a forming
/// group <see cref="Join"/>s: it takes a training slot and is held by its group. It gives the slot back when it stops
/// training (<see cref="StopTraining"/>: its masked input is sent, or it drops), but stays held — it still answers the
/// unmask request while its window is open — until it leaves its group (<see cref="Leave"/>: the group closed, or it
/// dropped). The concurrency limit counts <see cref="Training"/> only; a held vehicle is never drawn into another group
/// (<see cref="Join"/> refuses it). <see cref="Until"/> integrates both counts over simulated hours.
/// </summary>
internal sealed class SecureGroupSlots(int vehicles)
{
    private readonly bool[] _held = new bool[vehicles];
    private readonly bool[] _training = new bool[vehicles];
    private double _last;

    /// <summary>Vehicles training now (what the concurrency limit counts).</summary>
    public int Training { get; private set; }

    /// <summary>Vehicles held by an unfinished group now (training or in a protocol phase).</summary>
    public int Held { get; private set; }

    /// <summary>The most vehicles held at once.</summary>
    public int PeakHeld { get; private set; }

    /// <summary>Vehicle-hours spent training, up to the last <see cref="Until"/>.</summary>
    public double TrainingHours { get; private set; }

    /// <summary>Vehicle-hours spent held by a group without training (done, waiting for its group's phases), up to the last <see cref="Until"/>.</summary>
    public double WaitingHours { get; private set; }

    /// <summary>Whether <paramref name="vehicle"/> is held by an unfinished group.</summary>
    public bool IsHeld(int vehicle) => _held[vehicle];

    /// <summary>Whether <paramref name="vehicle"/> holds a training slot.</summary>
    public bool IsTraining(int vehicle) => _training[vehicle];

    /// <summary>Counts the time from the previous call to <paramref name="hour"/> at the current counts (never backwards).</summary>
    public void Until(double hour)
    {
        if (!(hour > _last)) return;
        TrainingHours += (hour - _last) * Training;
        WaitingHours += (hour - _last) * (Held - Training);
        _last = hour;
    }

    /// <summary><paramref name="vehicle"/> joins a forming group and starts training.</summary>
    /// <exception cref="InvalidOperationException">It is still held by an unfinished group.</exception>
    public void Join(int vehicle)
    {
        if (_held[vehicle]) throw new InvalidOperationException($"Vehicle {vehicle} is still held by an unfinished group: it cannot join another.");
        _held[vehicle] = _training[vehicle] = true;
        Held++;
        Training++;
        PeakHeld = Math.Max(PeakHeld, Held);
    }

    /// <summary><paramref name="vehicle"/> stops training (sent its masked input, or dropped): its slot is free. False if it held none.</summary>
    public bool StopTraining(int vehicle)
    {
        if (!_training[vehicle]) return false;
        _training[vehicle] = false;
        Training--;
        return true;
    }

    /// <summary><paramref name="vehicle"/> leaves its group (it closed, or the vehicle dropped); it stops training if it had not.</summary>
    /// <exception cref="InvalidOperationException">It is not held.</exception>
    public void Leave(int vehicle)
    {
        if (!_held[vehicle]) throw new InvalidOperationException($"Vehicle {vehicle} is not held by a group.");
        StopTraining(vehicle);
        _held[vehicle] = false;
        Held--;
    }
}
