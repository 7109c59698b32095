namespace FleetLearn.Core.Federated;

/// <summary>Per-round settings of the server (Bonawitz et al. 2019: cohorts, over-selection, deadlines).</summary>
/// <param name="CohortSize">Updates the server wants per round (K).</param>
/// <param name="OverSelection">Extra fraction selected to absorb dropouts: ⌈K·(1+o)⌉ are asked; the first K to finish count.</param>
/// <param name="MinParticipants">Fewer accepted updates than this and the round fails: the model stays as it was.</param>
/// <param name="DeadlineSeconds">Reporting deadline in simulated seconds; later vehicles are stragglers (∞ = none).</param>
public sealed record RoundSettings(int CohortSize, double OverSelection = 0, int MinParticipants = 1, double DeadlineSeconds = double.PositiveInfinity)
{
    /// <summary>Throws on impossible settings, saying which.</summary>
    public void Validate()
    {
        if (CohortSize < 1) throw new ArgumentOutOfRangeException(nameof(CohortSize), CohortSize, "Cohort size must be at least 1.");
        if (!(OverSelection >= 0 && OverSelection <= 10)) throw new ArgumentOutOfRangeException(nameof(OverSelection), OverSelection, "Over-selection must be within [0, 10].");
        if (MinParticipants < 1 || MinParticipants > CohortSize)
            throw new ArgumentOutOfRangeException(nameof(MinParticipants), MinParticipants, $"Minimum participants must be within 1..{CohortSize} (the cohort size).");
        if (!(DeadlineSeconds > 0)) throw new ArgumentOutOfRangeException(nameof(DeadlineSeconds), DeadlineSeconds, "Deadline must be positive.");
    }

    /// <summary>How many vehicles are asked: ⌈K·(1+o)⌉.</summary>
    public int SelectionSize => Rounds.CohortSelection.SelectionSize(CohortSize, OverSelection);
}

/// <summary>What happens to one selected vehicle in a round.</summary>
public enum VehicleOutcome
{
    /// <summary>Its update counts.</summary>
    Accepted,

    /// <summary>It vanished before uploading.</summary>
    Dropped,

    /// <summary>It would have finished after the deadline.</summary>
    Straggler,

    /// <summary>It finished, but K faster vehicles had already reported (over-selection surplus).</summary>
    Surplus,
}

/// <summary>One selected vehicle's fate.</summary>
public readonly record struct PlannedVehicle(int Vehicle, VehicleOutcome Outcome, double FinishSeconds);

/// <summary>The selection and the predicted outcome of each selected vehicle for one round.</summary>
public sealed record RoundForecast(int Round, int Available, IReadOnlyList<PlannedVehicle> Selected)
{
    /// <summary>Vehicles whose updates count, in the order they finish.</summary>
    public IEnumerable<int> Accepted => Selected.Where(v => v.Outcome == VehicleOutcome.Accepted).OrderBy(v => v.FinishSeconds).ThenBy(v => v.Vehicle).Select(v => v.Vehicle);

    /// <summary>Number of accepted vehicles.</summary>
    public int AcceptedCount => Selected.Count(v => v.Outcome == VehicleOutcome.Accepted);

    /// <summary>Count of a given outcome.</summary>
    public int CountOf(VehicleOutcome outcome) => Selected.Count(v => v.Outcome == outcome);

    /// <summary>Simulated round duration: when the last accepted update arrived (or the deadline).</summary>
    public double SimulatedSeconds { get; init; }
}

/// <summary>The simulator's forecast of a round: which eligible vehicles are selected and what each one's behaviour makes of it.</summary>
public static class RoundPlanner
{
    /// <summary>
    /// Plans round <paramref name="round"/>: finds eligible vehicles (available per the behaviour
    /// model and allowed by <paramref name="isEligible"/>, e.g. privacy budget left), selects
    /// ⌈K·(1+o)⌉ uniformly without replacement, and predicts each one's outcome.
    /// </summary>
    public static RoundForecast Plan(
        int round,
        int vehicleCount,
        Func<int, long> workSamples,
        RoundSettings settings,
        FleetBehavior behavior,
        ulong seed,
        Func<int, bool>? isEligible = null)
    {
        ArgumentNullException.ThrowIfNull(workSamples);
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(behavior);
        var eligible = new List<int>(vehicleCount);
        for (int v = 0; v < vehicleCount; v++)
        {
            if (behavior.IsAvailable(seed, round, v) && (isEligible is null || isEligible(v))) eligible.Add(v);
        }
        // The one cohort selection (the aggregator worker calls the same function over its checked-in vehicles).
        var chosen = Rounds.CohortSelection.Select(eligible, settings.SelectionSize, seed, round);
        return Forecast(round, eligible.Count, chosen, workSamples, settings, behavior, seed);
    }

    /// <summary>
    /// What the behaviour model makes of a selected cohort: which members vanish mid-round (after key exchange, before upload),
    /// which would miss the deadline, and which of the rest finish among the first K (accepted, in finishing order) or after
    /// them (surplus). A pure function of (seed, round, vehicle): the in-process simulator plans its round with it, and the MQTT
    /// simulation's agents follow it as their link's behaviour, so both transports see the same fates.
    /// </summary>
    public static RoundForecast Forecast(int round, int available, IReadOnlyList<int> selected, Func<int, long> workSamples, RoundSettings settings, FleetBehavior behavior, ulong seed)
    {
        ArgumentNullException.ThrowIfNull(selected);
        ArgumentNullException.ThrowIfNull(workSamples);
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(behavior);
        var planned = new List<PlannedVehicle>(selected.Count);
        foreach (int v in selected)
        {
            double finish = behavior.TrainingSeconds(seed, v, workSamples(v));
            var outcome = behavior.DropsOut(seed, round, v) ? VehicleOutcome.Dropped
                : finish > settings.DeadlineSeconds ? VehicleOutcome.Straggler
                : VehicleOutcome.Accepted;
            planned.Add(new PlannedVehicle(v, outcome, finish));
        }
        // Only the first K finishers count; the rest of an over-selected cohort is surplus.
        var finishers = planned.Select((p, i) => (p, i)).Where(x => x.p.Outcome == VehicleOutcome.Accepted)
            .OrderBy(x => x.p.FinishSeconds).ThenBy(x => x.p.Vehicle).ToList();
        double end = 0;
        for (int k = 0; k < finishers.Count; k++)
        {
            if (k >= settings.CohortSize)
                planned[finishers[k].i] = finishers[k].p with { Outcome = VehicleOutcome.Surplus };
            else
                end = Math.Max(end, finishers[k].p.FinishSeconds);
        }
        if (finishers.Count < settings.CohortSize && double.IsFinite(settings.DeadlineSeconds) && planned.Any(p => p.Outcome is VehicleOutcome.Straggler))
            end = settings.DeadlineSeconds;
        return new RoundForecast(round, available, planned) { SimulatedSeconds = end };
    }
}
