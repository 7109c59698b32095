using System.Globalization;
using FleetLearn.Aggregator;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Rounds;
using FleetLearn.EdgeAgent;

namespace FleetLearn.Simulation;

/// <summary>
/// <see cref="FleetSimulator"/>'s seeded fleet model (<see cref="FleetBehavior"/>, <see cref="RoundPlanner.Forecast"/>) as the
/// link and behaviour of real agents over MQTT, so that both transports run the same rounds (docs/transport.md, "Parity"):
/// a vehicle the model makes unavailable is not parked and withdraws its check-in; the aggregator selects once exactly the
/// available vehicles have checked in (<see cref="Gate"/>); a selected vehicle the model drops, or finds surplus or
/// straggling, goes silent after the key exchange (it never trains or uploads); plaintext uploads leave in the simulated
/// finishing order, each once the one before it was folded, so the aggregator folds the floating-point sum in the order the
/// in-process coordinator does (in a sharded round the coordinator folds nothing: there an upload leaves once the one before
/// it was acknowledged by its shard, so each shard folds its part in the in-process shard's order); and when everyone who will answer has answered, the aggregator's clock skips to the
/// deadline (<see cref="SkippingClock"/>), as the in-process fake clock does.
/// </summary>
public sealed class SimulatedFleetLink : IAgentLink, IAsyncDisposable
{
    private readonly SimulationOptions _options;
    private readonly int[][] _partitions;
    private readonly AggregatorStatus _status;
    private readonly SkippingClock _clock;
    private readonly TimeSpan _roundTimeout;
    private readonly TimeSpan _phaseTimeout;
    private readonly RoundSettings _settings;
    private readonly Lock _lock = new();
    private readonly Dictionary<long, RoundForecast> _forecasts = [];
    private readonly Dictionary<(long Round, int Turn), TaskCompletionSource> _turns = [];
    private readonly HashSet<(long Round, string Phase)> _skipped = [];
    private readonly Dictionary<string, int> _sent = new(StringComparer.Ordinal);
    private readonly Dictionary<long, HashSet<string>> _acknowledged = []; // sharded rounds: vehicles whose update a shard acknowledged
    private readonly HashSet<long> _sharded = [];
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _watch;
    private long _gathering = 1;

    /// <summary>Models <paramref name="options"/>' fleet over the aggregator whose status and clock are given.</summary>
    public SimulatedFleetLink(SimulationOptions options, int[][] partitions, AggregatorStatus status, SkippingClock clock, TimeSpan roundTimeout, TimeSpan phaseTimeout)
    {
        ArgumentNullException.ThrowIfNull(options);
        (_options, _partitions, _status, _clock, _roundTimeout, _phaseTimeout) = (options, partitions, status, clock, roundTimeout, phaseTimeout);
        _settings = new RoundSettings(options.CohortSize, options.OverSelection, options.EffectiveMinParticipants, options.DeadlineSeconds);
        _watch = WatchAsync(_stop.Token);
    }

    /// <summary>Whether the model can make a selected vehicle silent (then agents check in every second: the gate waits for them).</summary>
    public static bool SilencesVehicles(SimulationOptions options) =>
        options.Behavior.Dropout > 0 || options.Behavior.Availability < 1 || options.OverSelection > 0 || double.IsFinite(options.DeadlineSeconds);

    /// <summary>Selects round r's cohort once the eligible check-ins are exactly the vehicles with data that the model makes available in r.</summary>
    public CohortGate Gate => (round, candidates) =>
    {
        Interlocked.Exchange(ref _gathering, round);
        var expected = Enumerable.Range(0, _options.Vehicles).Where(v => _partitions[v].Length > 0 && _options.Behavior.IsAvailable(_options.Seed, (int)round, v))
            .Select(MqttFleetSimulation.VehicleName).ToHashSet(StringComparer.Ordinal);
        return candidates.Count == expected.Count && candidates.All(expected.Contains);
    };

    /// <summary>Vehicle <paramref name="vehicle"/>'s state: parked (eligible) in the rounds the model makes it available, driving in the others.</summary>
    public IVehicleStateProvider StateOf(int vehicle) => new Availability(this, vehicle);

    /// <inheritdoc/>
    public async ValueTask<IReadOnlyList<VehicleEffect>> ShapeAsync(string vehicle, RoundPlan plan, IReadOnlyList<VehicleEffect> effects, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(plan);
        ArgumentNullException.ThrowIfNull(effects);
        var forecast = ForecastOf(plan);
        int v = IndexOf(vehicle);
        var fate = forecast.Selected.FirstOrDefault(p => p.Vehicle == v);
        // Dropped, surplus or straggling: the vehicle answers the key exchange, then vanishes — it never trains or uploads.
        if (fate.Outcome != VehicleOutcome.Accepted)
            return Count([.. effects.Where(e => e is not (TrainEffect or SendUpdateEffect or SendSecAggEffect { Message: Core.SecureAggregation.MaskedInputMessage }))]);
        // A plaintext update leaves once the updates of every vehicle that finished before it were folded (a secure sum is exact).
        if (effects.Any(e => e is SendUpdateEffect))
        {
            int turn = forecast.Accepted.TakeWhile(a => a != v).Count();
            if (turn > 0) await TurnAsync(plan.Round, turn).WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        return Count(effects);
    }

    /// <summary>Secure-aggregation messages the agents sent, by message type name (e.g. ConsistencySignatureMessage): what crossed the wire.</summary>
    public IReadOnlyDictionary<string, int> SecAggMessagesSent
    {
        get
        {
            lock (_lock) return new Dictionary<string, int>(_sent, StringComparer.Ordinal);
        }
    }

    private IReadOnlyList<VehicleEffect> Count(IReadOnlyList<VehicleEffect> effects)
    {
        lock (_lock)
            foreach (var send in effects.OfType<SendSecAggEffect>())
                _sent[send.Message.GetType().Name] = _sent.GetValueOrDefault(send.Message.GetType().Name) + 1;
        return effects;
    }

    /// <inheritdoc/>
    public void UpdateAcknowledged(string vehicle, long round)
    {
        lock (_lock)
        {
            if (!_acknowledged.TryGetValue(round, out var vehicles)) _acknowledged[round] = vehicles = new HashSet<string>(StringComparer.Ordinal);
            vehicles.Add(vehicle);
        }
        Evaluate();
    }

    /// <summary>
    /// Re-reads the aggregator's progress: opens the turns it allows, and skips a phase nobody else will answer to its deadline.
    /// A turn opens once the aggregator has folded the updates before it, or in a sharded round (whose coordinator only combines)
    /// once that many updates were acknowledged: a shard acknowledges an update after folding it.
    /// </summary>
    public void Evaluate()
    {
        var phase = _status.Phase;
        TimeSpan? skip = null;
        lock (_lock)
        {
            foreach (var ((round, turn), waiting) in _turns.ToArray())
            {
                bool closed = phase is not null && (phase.Round > round || phase.Round == round && phase.Phase is "Applied" or "Aborted");
                bool folded = _sharded.Contains(round)
                    ? _acknowledged.GetValueOrDefault(round)?.Count >= turn
                    : phase is not null && phase.Round == round && phase.Phase == "Collecting" && phase.Answered >= turn;
                if (closed || folded)
                {
                    waiting.TrySetResult();
                    _turns.Remove((round, turn));
                }
            }
            if (phase is null) return;
            if (phase.Phase is "Collecting" or "MaskedInputCollection" && _forecasts.TryGetValue(phase.Round, out var forecast)
                && phase.Answered == forecast.AcceptedCount && phase.Answered < phase.Expected && _skipped.Add((phase.Round, phase.Phase)))
                skip = phase.Phase == "Collecting" ? _roundTimeout : _phaseTimeout;
        }
        if (skip is { } by) _clock.Skip(by);
    }

    private Task TurnAsync(long round, int turn)
    {
        TaskCompletionSource waiting;
        lock (_lock)
        {
            if (!_turns.TryGetValue((round, turn), out waiting!)) _turns[(round, turn)] = waiting = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        Evaluate();
        return waiting.Task;
    }

    private RoundForecast ForecastOf(RoundPlan plan)
    {
        lock (_lock)
        {
            if (_forecasts.TryGetValue(plan.Round, out var known)) return known;
            var selected = plan.Cohort.Select(IndexOf).ToArray();
            var forecast = RoundPlanner.Forecast((int)plan.Round, selected.Length, selected, v => (long)_partitions[v].Length * _options.LocalEpochs, _settings, _options.Behavior, _options.Seed);
            _forecasts[plan.Round] = forecast;
            if (plan.Shards is { Count: > 0 }) _sharded.Add(plan.Round);
            return forecast;
        }
    }

    private static int IndexOf(string vehicle) =>
        vehicle.StartsWith("vehicle-", StringComparison.Ordinal) && int.TryParse(vehicle.AsSpan(8), NumberStyles.None, CultureInfo.InvariantCulture, out int v) ? v
        : throw new ArgumentException($"'{vehicle}' is not a simulated vehicle's name.", nameof(vehicle));

    /// <summary>Evaluates every 50 ms as well: progress that no agent event follows (a round nobody answers) still moves on.</summary>
    private async Task WatchAsync(CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(50));
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false)) Evaluate();
        }
        catch (OperationCanceledException)
        {
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        await _watch.ConfigureAwait(false);
        _stop.Dispose();
        lock (_lock)
            foreach (var waiting in _turns.Values) waiting.TrySetCanceled();
    }

    private sealed class Availability(SimulatedFleetLink link, int vehicle) : IVehicleStateProvider
    {
        private static readonly VehicleState Driving = new(Parked: false, Charging: false, Unmetered: false);

        public VehicleState Current() =>
            link._options.Behavior.IsAvailable(link._options.Seed, (int)Interlocked.Read(ref link._gathering), vehicle) ? VehicleState.Idle : Driving;
    }
}
