namespace FleetLearn.Aggregator;

/// <summary>
/// Says when the check-ins gathered for round <paramref name="round"/> are complete, so that the cohort is selected from
/// <paramref name="candidates"/> (eligible, in <see cref="Core.Rounds.VehicleId.Order"/>). Without one the aggregator selects as
/// soon as ⌈K·(1+o)⌉ vehicles are eligible, or after <see cref="AggregatorOptions.CohortWait"/>. A simulated fleet passes one
/// that waits for exactly the vehicles its behaviour model makes available in that round — the moment at which the
/// in-process simulator selects — so that both transports draw the same cohort from the same candidates.
/// </summary>
public delegate bool CohortGate(long round, IReadOnlyList<string> candidates);
