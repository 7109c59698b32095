using FleetLearn.Core.Rounds;

namespace FleetLearn.Simulation.Traces;

/// <summary>How rounds are run over a trace.</summary>
public enum RoundMode
{
    /// <summary>Synchronous rounds (<see cref="Core.Rounds.RoundCoordinator"/>): a cohort is selected, the round waits for K updates.</summary>
    Sync,

    /// <summary>Buffered asynchronous aggregation (<see cref="Core.Rounds.BufferedCoordinator"/>): a step at every K-th update.</summary>
    FedBuff,
}

/// <summary>What a run over an availability trace adds to <see cref="SimulationOptions"/> (which still sets the model, data, K and DP).</summary>
public sealed record TraceSettings
{
    /// <summary>Sync or FedBuff.</summary>
    public RoundMode Mode { get; init; } = RoundMode.Sync;

    /// <summary>Simulated hours to run (at most the trace's span).</summary>
    public double Hours { get; init; } = 72;

    /// <summary>FedBuff: vehicles training at once (Nguyen et al.'s concurrency); null = 2K.</summary>
    public int? Concurrency { get; init; }

    /// <summary>FedBuff: updates more than this many versions stale are refused.</summary>
    public int MaxStaleness { get; init; } = 10;

    /// <summary>Secure FedBuff: when a group's version is fixed.</summary>
    public GroupVersion GroupVersion { get; init; } = GroupVersion.Formed;

    /// <summary>Most contributions a vehicle may make in the run (both modes; null = no cap). Under DP this bounds every vehicle's ε.</summary>
    public int? MaxParticipations { get; init; }

    /// <summary>Per-vehicle compute and link.</summary>
    public VehicleResources Resources { get; init; } = new();

    /// <summary>The global model is evaluated after a step once this many simulated hours passed since the last evaluation.</summary>
    public double EvaluateEveryHours { get; init; } = 0.25;

    /// <summary>Sync: pace steering — the aggregator suggests each vehicle its next check-in window (<see cref="Core.Rounds.PaceSteering"/>).</summary>
    public bool Pace { get; init; }

    /// <summary>Stop once the target accuracy is reached (the run's purpose is the hours to it).</summary>
    public bool StopAtTarget { get; init; } = true;

    /// <summary>The concurrency in effect for buffer size <paramref name="k"/>.</summary>
    public int EffectiveConcurrency(int k) => Concurrency ?? 2 * k;

    /// <summary>Throws with a clear message when a setting is out of range.</summary>
    public void Validate()
    {
        if (!(Hours > 0 && Hours <= 24 * 366)) throw new ArgumentException("--hours must be within (0, 8784].");
        if (Concurrency is < 1) throw new ArgumentException("--concurrency must be at least 1.");
        if (MaxStaleness < 0) throw new ArgumentException("--max-staleness must be ≥ 0.");
        if (MaxParticipations is < 1) throw new ArgumentException("--max-participations must be at least 1.");
        if (Pace && Mode != RoundMode.Sync) throw new ArgumentException("--pace steers the check-ins of synchronous rounds: use it with --mode sync (FedBuff paces with its concurrency limit).");
        if (!(EvaluateEveryHours > 0)) throw new ArgumentException("--eval-every-hours must be positive.");
        Resources.Validate();
    }
}

/// <summary>One evaluation of the global model during a trace run.</summary>
/// <param name="Hours">Simulated hours since the trace's origin.</param>
/// <param name="Version">Steps (FedBuff) or rounds (sync) applied so far.</param>
/// <param name="Accuracy">Test accuracy.</param>
/// <param name="Loss">Test loss.</param>
/// <param name="Applied">Updates in applied steps so far.</param>
/// <param name="Wasted">Updates started whose work was thrown away so far.</param>
public sealed record TracePoint(double Hours, long Version, double Accuracy, double Loss, long Applied, long Wasted);

/// <summary>Why a started update was thrown away.</summary>
public enum WasteCause
{
    /// <summary>The vehicle stopped being eligible (window closed) before it uploaded.</summary>
    Dropped,

    /// <summary>FedBuff: trained on a model more than the maximum staleness behind.</summary>
    Stale,

    /// <summary>Sync: still training when the round already had its K updates (over-selection's price).</summary>
    Surplus,

    /// <summary>Sync: still training at the round's deadline.</summary>
    Straggler,

    /// <summary>In a round or step that was not applied.</summary>
    Aborted,
}

/// <summary>What a trace run measured.</summary>
public sealed record TraceRunResult
{
    /// <summary>Sync or FedBuff.</summary>
    public required RoundMode Mode { get; init; }

    /// <summary>Every evaluation, in time order.</summary>
    public required IReadOnlyList<TracePoint> Points { get; init; }

    /// <summary>Simulated hours at the first evaluation at or above the target (null: not reached).</summary>
    public double? HoursToTarget { get; init; }

    /// <summary>Simulated hours the run covered.</summary>
    public required double Hours { get; init; }

    /// <summary>Steps or rounds applied; rounds or steps aborted.</summary>
    public required long Applied { get; init; }

    /// <summary>Rounds or steps that were not applied.</summary>
    public required long Aborted { get; init; }

    /// <summary>Why rounds or steps were not applied, with how often.</summary>
    public IReadOnlyDictionary<string, int> AbortReasons { get; init; } = new Dictionary<string, int>();

    /// <summary>Updates started (check-ins that began training) that were decided by the end: used or wasted.</summary>
    public long Decided => UsedUpdates + WastedUpdates.Values.Sum();

    /// <summary>Updates in applied steps.</summary>
    public required long UsedUpdates { get; init; }

    /// <summary>Updates thrown away, by cause.</summary>
    public required IReadOnlyDictionary<WasteCause, long> WastedUpdates { get; init; }

    /// <summary>Fraction of decided updates thrown away.</summary>
    public double WastedUpdateFraction => Decided == 0 ? 0 : WastedUpdates.Values.Sum() / (double)Decided;

    /// <summary>Vehicle compute hours spent on used and on wasted updates.</summary>
    public required (double Used, double Wasted) ComputeHours { get; init; }

    /// <summary>Accepted updates by staleness (sync: all 0).</summary>
    public required IReadOnlyDictionary<long, long> Staleness { get; init; }

    /// <summary>Contributions per vehicle (index = vehicle).</summary>
    public required int[] Participations { get; init; }

    /// <summary>Sync: check-ins per simulated hour (index = hour), steered or not; null for FedBuff.</summary>
    public IReadOnlyList<long>? CheckInsPerHour { get; init; }

    /// <summary>What secure aggregation cost (null for plaintext runs).</summary>
    public SecureGroupStats? Secure { get; init; }

    /// <summary>Largest per-vehicle ε in the ledger (NaN without DP).</summary>
    public double MaxVehicleEpsilon { get; init; } = double.NaN;

    /// <summary>
    /// FedBuff: the ε each vehicle's own ledger holds (index = vehicle; a fresh contribution's charge per update it sent) — over
    /// MQTT read from the agents' ledgers; null without DP or where the run does not model them.
    /// </summary>
    public IReadOnlyList<double>? VehicleLedgerEpsilon { get; init; }

    /// <summary>FedBuff: assignments vehicles declined on their own ledger (a release already charged, or the ε budget).</summary>
    public long VehicleDeclines { get; init; }

    /// <summary>Wall-clock seconds the run took.</summary>
    public double Seconds { get; init; }
}
