using System.Globalization;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Core.Rounds;

/// <summary>
/// What the aggregator remembers of recently closed rounds, so that a message for one is answered correctly: a resend of
/// something counted before the close (its ack was lost) is a duplicate, a survivor's unmask answer that was not needed is
/// harmless, anything else is late.
/// </summary>
public sealed class ClosedRounds(int keep = 3)
{
    private readonly Dictionary<long, IReadOnlySet<Guid>> _seen = [];
    private readonly Dictionary<long, IReadOnlyDictionary<string, int>> _survivors = [];
    private readonly Dictionary<long, IReadOnlySet<string>> _vehicles = [];

    /// <summary>The newest closed round (0 before any).</summary>
    public long LastClosed { get; private set; }

    /// <summary>Remembers a round that has closed.</summary>
    public void Add(RoundCoordinator closed)
    {
        ArgumentNullException.ThrowIfNull(closed);
        if (closed.Phase is not Closed) throw new InvalidOperationException($"Round {closed.Round} has not closed.");
        Add(closed.Round, closed.SeenUpdateIds.ToHashSet(), closed.CompletedSurvivors, closed.Cohort.ToHashSet(StringComparer.Ordinal));
    }

    /// <summary>
    /// Remembers round <paramref name="round"/> as closed with what it saw (also for rounds closed by an earlier run), and the
    /// <paramref name="vehicles"/> whose messages for it are still answered: its cohort, or for a round closed by an earlier run
    /// the vehicles whose updates it folded (the plan naming the cohort is not kept past the close).
    /// </summary>
    public void Add(long round, IReadOnlySet<Guid> seen, IReadOnlyDictionary<string, int> completedSurvivors, IReadOnlySet<string> vehicles)
    {
        LastClosed = Math.Max(LastClosed, round);
        _seen[round] = seen;
        _survivors[round] = completedSurvivors;
        _vehicles[round] = vehicles;
        foreach (var old in _seen.Keys.Where(r => r <= LastClosed - keep).ToList())
        {
            _seen.Remove(old);
            _survivors.Remove(old);
            _vehicles.Remove(old);
        }
    }

    /// <summary>True when <paramref name="vehicle"/> took part in (or was selected for) a closed round remembered here.</summary>
    public bool Remembers(string vehicle) => _vehicles.Values.Any(v => v.Contains(vehicle));

    /// <summary>True when <paramref name="round"/> has closed (messages for it are answered here, not by a coordinator).</summary>
    public bool IsClosed(long round) => round <= LastClosed;

    /// <summary>The verdict on a message for closed round <paramref name="round"/>; <paramref name="secure"/> is its decoded SecAgg message, if any.</summary>
    public Admission Admit(string vehicle, long round, Guid updateId, SecAggMessage? secure)
    {
        if (_seen.TryGetValue(round, out var seen) && seen.Contains(updateId))
            return Admission.Duplicate(string.Create(CultureInfo.InvariantCulture, $"already received in round {round}"));
        // A completed round needs only t shares of each secret; the other survivors' answers are honest, not late input.
        if (secure is UnmaskResponseMessage answer && _survivors.TryGetValue(round, out var survivors) && survivors.TryGetValue(vehicle, out int index) && answer.VehicleId == index)
            return Admission.Duplicate(string.Create(CultureInfo.InvariantCulture, $"not needed: round {round} completed with the shares it needed"));
        return Admission.Rejected(RejectReasons.Late, string.Create(CultureInfo.InvariantCulture, $"round {round} has closed"));
    }
}
