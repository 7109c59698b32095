using System.Globalization;

namespace FleetLearn.Core.Rounds;

/// <summary>Secure FedBuff: when a group's model version is fixed (docs/async.md, "Secure aggregation on traces").</summary>
public enum GroupVersion
{
    /// <summary>When the group has its ⌈K·(1+o)⌉ members: they check in and wait, holding no slot, then all train on the version current then.</summary>
    Formed,

    /// <summary>When its first member checks in: each member trains on that version from its own check-in (the behaviour up to issue 19).</summary>
    FirstCheckIn,
}

/// <summary>How secure FedBuff forms its groups: size, minimum, concurrency, formation window and when the version is fixed.</summary>
public sealed record SecureGroupRules
{
    /// <summary>Members at which a group forms at once: ⌈K·(1+o)⌉ (<see cref="CohortSelection.SelectionSize"/>).</summary>
    public required int GroupSize { get; init; }

    /// <summary>Members a group needs to form when its window has passed: at least 3 (SecAgg) and the minimum participants.</summary>
    public int MinimumMembers { get; init; } = 3;

    /// <summary>Vehicles training at once (waiting members of a forming group count too under <see cref="GroupVersion.Formed"/>).</summary>
    public required int Concurrency { get; init; }

    /// <summary>How long a forming group waits for its last members before it forms with those it has.</summary>
    public TimeSpan FormationWindow { get; init; } = TimeSpan.FromMinutes(30);

    /// <summary>When the group's version is fixed.</summary>
    public GroupVersion Version { get; init; } = GroupVersion.Formed;
}

/// <summary>A group that has formed: its number, its members in join order, when each joined, the version it trains on and when it formed.</summary>
public sealed record FormedGroup<TVehicle>(long Id, IReadOnlyList<TVehicle> Members, IReadOnlyList<DateTimeOffset> JoinedAt, long Version, DateTimeOffset FormedAt);

/// <summary>The answer to a check-in: joined group <paramref name="Group"/> (Accepted) or busy; <paramref name="Formed"/> when this member completed it.</summary>
public sealed record GroupCheckIn<TVehicle>(Admission Admission, long Group, FormedGroup<TVehicle>? Formed);

/// <summary>
/// Secure FedBuff's group formation as a pure state machine (docs/async.md, "Secure aggregation on traces"): a checked-in vehicle
/// joins the forming group or is told busy; the group forms at <see cref="SecureGroupRules.GroupSize"/> members, or once its
/// formation window has passed with at least <see cref="SecureGroupRules.MinimumMembers"/>; its version is the one current when it
/// forms (<see cref="GroupVersion.Formed"/>) or at its first check-in (<see cref="GroupVersion.FirstCheckIn"/>). The concurrency
/// counts members still training (a member frees its slot when it stops training, <see cref="StopTraining"/>), and a member is held
/// by one group at a time until it leaves it (<see cref="Leave"/>). No I/O, time passed in: the simulator and the aggregator's
/// pump drive the same object.
/// </summary>
public sealed class SecureGroupFormation<TVehicle> where TVehicle : notnull
{
    /// <summary>How far before its due time a formation timer counts as due: clocks that count in fractional hours round to ticks.</summary>
    private static readonly TimeSpan Tolerance = TimeSpan.FromMilliseconds(1);

    private readonly SecureGroupRules _rules;
    private readonly HashSet<TVehicle> _held = [];
    private readonly HashSet<TVehicle> _training = [];
    private readonly List<TVehicle> _forming = [];
    private readonly List<DateTimeOffset> _joined = [];
    private long _formingVersion;
    private DateTimeOffset? _due;

    /// <summary>Starts with no group; the first group formed is number <paramref name="firstGroup"/>.</summary>
    public SecureGroupFormation(SecureGroupRules rules, long firstGroup = 1)
    {
        ArgumentNullException.ThrowIfNull(rules);
        if (rules.MinimumMembers < 3) throw new ArgumentException("A secure-aggregation group needs at least 3 members.", nameof(rules));
        if (rules.GroupSize < rules.MinimumMembers) throw new ArgumentException($"The group size {rules.GroupSize} is below the minimum of {rules.MinimumMembers} members.", nameof(rules));
        if (rules.Concurrency < 1) throw new ArgumentException("The concurrency must be at least 1.", nameof(rules));
        if (rules.FormationWindow <= TimeSpan.Zero) throw new ArgumentException("The formation window must be positive.", nameof(rules));
        _rules = rules;
        FormingGroup = firstGroup;
    }

    /// <summary>The rules it forms groups by.</summary>
    public SecureGroupRules Rules => _rules;

    /// <summary>The number the forming group will have.</summary>
    public long FormingGroup { get; private set; }

    /// <summary>Members of the forming group, in join order.</summary>
    public IReadOnlyList<TVehicle> Forming => _forming;

    /// <summary>When the forming group's window has passed (null while nobody has joined).</summary>
    public DateTimeOffset? FormationDue => _due;

    /// <summary>Vehicles training now (what the concurrency counts, with waiting members under <see cref="GroupVersion.Formed"/>).</summary>
    public int Training => _training.Count;

    /// <summary>Vehicles held by a group now (training, or in a protocol phase).</summary>
    public int Held => _held.Count;

    /// <summary>The most vehicles held at once.</summary>
    public int PeakHeld { get; private set; }

    /// <summary>Whether one more vehicle may join the forming group now.</summary>
    public bool HasRoom => _training.Count + (_rules.Version == GroupVersion.Formed ? _forming.Count : 0) < _rules.Concurrency;

    /// <summary>Whether <paramref name="vehicle"/> is held by a group.</summary>
    public bool IsHeld(TVehicle vehicle) => _held.Contains(vehicle);

    /// <summary>Whether <paramref name="vehicle"/> holds a training slot.</summary>
    public bool IsTraining(TVehicle vehicle) => _training.Contains(vehicle);

    /// <summary>Whether <paramref name="vehicle"/> is a member of the forming group.</summary>
    public bool IsForming(TVehicle vehicle) => _forming.Contains(vehicle);

    /// <summary>
    /// An eligible vehicle checks in at <paramref name="now"/> with <paramref name="version"/> current: it joins the forming group
    /// (again Accepted, with the same group, when it already waits in it), or is told busy — it is held by an unfinished group, or
    /// the concurrency is reached. The member that completes the group forms it (<see cref="GroupCheckIn{TVehicle}.Formed"/>).
    /// </summary>
    public GroupCheckIn<TVehicle> CheckIn(TVehicle vehicle, long version, DateTimeOffset now)
    {
        if (_forming.Contains(vehicle)) return new(Admission.Accepted, FormingGroup, null);
        if (_held.Contains(vehicle))
            return new(Admission.Rejected(RejectReasons.Busy, "still a member of an unfinished secure group; check in after it closes"), 0, null);
        if (!HasRoom)
            return new(Admission.Rejected(RejectReasons.Busy, string.Create(CultureInfo.InvariantCulture, $"all {_rules.Concurrency} training slots are taken; check in later")), 0, null);
        if (_forming.Count == 0)
        {
            _formingVersion = version;
            _due = now + _rules.FormationWindow;
        }
        _forming.Add(vehicle);
        _joined.Add(now);
        if (_rules.Version == GroupVersion.FirstCheckIn) Hold(vehicle); // it trains from its own check-in
        long group = FormingGroup;
        return new(Admission.Accepted, group, _forming.Count >= _rules.GroupSize ? Form(version, now) : null);
    }

    /// <summary>
    /// <paramref name="vehicle"/> stops being eligible: a member waiting in the forming group (<see cref="GroupVersion.Formed"/>)
    /// just leaves it (true); any other member stops training (it stays in its group, which counts it as dropped).
    /// </summary>
    public bool Withdraw(TVehicle vehicle)
    {
        if (_rules.Version == GroupVersion.Formed && _forming.IndexOf(vehicle) is var i and >= 0)
        {
            _forming.RemoveAt(i);
            _joined.RemoveAt(i);
            if (_forming.Count == 0) _due = null;
            return true;
        }
        StopTraining(vehicle);
        return false;
    }

    /// <summary>
    /// At <paramref name="now"/>, with <paramref name="version"/> current: once the forming group's window has passed it forms with
    /// the members it has if they are at least the minimum; else it waits one more window.
    /// </summary>
    public FormedGroup<TVehicle>? Tick(long version, DateTimeOffset now)
    {
        if (_due is not { } due || now < due - Tolerance) return null;
        if (_forming.Count >= _rules.MinimumMembers) return Form(version, now);
        _due = now + _rules.FormationWindow;
        return null;
    }

    /// <summary>Forms the forming group now with whoever joined (also below the minimum: the runner decides, e.g. at shutdown); null when nobody joined.</summary>
    public FormedGroup<TVehicle>? Form(long version, DateTimeOffset now)
    {
        if (_forming.Count == 0) return null;
        bool late = _rules.Version == GroupVersion.Formed;
        if (late)
        {
            // Formed now: every member starts training on the version current now (staleness counts from here).
            _formingVersion = version;
            for (int i = 0; i < _forming.Count; i++)
            {
                Hold(_forming[i]);
                _joined[i] = now;
            }
        }
        var group = new FormedGroup<TVehicle>(FormingGroup++, [.. _forming], [.. _joined], _formingVersion, now);
        _forming.Clear();
        _joined.Clear();
        _due = null;
        return group;
    }

    /// <summary><paramref name="vehicle"/> stops training (sent its masked input, or dropped): its slot is free. False if it held none.</summary>
    public bool StopTraining(TVehicle vehicle) => _training.Remove(vehicle);

    /// <summary><paramref name="vehicle"/> leaves its group (it closed, or the vehicle dropped); it stops training if it had not.</summary>
    /// <exception cref="InvalidOperationException">It is not held.</exception>
    public void Leave(TVehicle vehicle)
    {
        if (!_held.Remove(vehicle)) throw new InvalidOperationException($"Vehicle {vehicle} is not held by a group.");
        _training.Remove(vehicle);
    }

    private void Hold(TVehicle vehicle)
    {
        if (!_held.Add(vehicle)) throw new InvalidOperationException($"Vehicle {vehicle} is still held by an unfinished group: it cannot join another.");
        _training.Add(vehicle);
        PeakHeld = Math.Max(PeakHeld, _held.Count);
    }
}
