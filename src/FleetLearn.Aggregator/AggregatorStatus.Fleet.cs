using System.Text.Json;
using FleetLearn.Core.Rounds;
using FleetLearn.Storage;
using FleetLearn.Transport.Mqtt;

namespace FleetLearn.Aggregator;

/// <summary>Progress of the phase in progress: how many of the vehicles it waits for have answered.</summary>
/// <param name="Round">The round.</param>
/// <param name="Phase">Phase name (<c>updates</c> for a plaintext round; the secure-aggregation phase otherwise).</param>
/// <param name="Answered">Vehicles that answered in this phase so far.</param>
/// <param name="Expected">Vehicles the phase waits for.</param>
/// <param name="Since">When the phase began.</param>
public sealed record PhaseProgress(long Round, string Phase, int Answered, int Expected, DateTimeOffset Since);

/// <summary>One vehicle's evaluation of a global model on its own hold-out frames (the report on <c>vehicles/{id}/up/eval</c>).</summary>
/// <param name="Vehicle">The reporting vehicle.</param>
/// <param name="ModelVersion">The global model version it scored.</param>
/// <param name="Count">Hold-out frames it scored.</param>
/// <param name="Accuracy">The accuracy it reported (Laplace-noised when <paramref name="Noised"/>).</param>
/// <param name="Noised">Whether the vehicle added Laplace noise to the accuracy before reporting it.</param>
/// <param name="At">When the aggregator received it.</param>
public sealed record VehicleEvaluation(string Vehicle, long ModelVersion, int Count, double Accuracy, bool Noised, DateTimeOffset At);

/// <summary>The fleet's accuracy for one model version: the frame-weighted mean of the vehicles' reports and its spread.</summary>
/// <param name="ModelVersion">The global model version.</param>
/// <param name="Reports">Vehicles that reported.</param>
/// <param name="NoisedReports">How many of those reports carry Laplace noise (local differential privacy).</param>
/// <param name="Frames">Hold-out frames scored in all.</param>
/// <param name="Accuracy">Frame-weighted mean accuracy.</param>
/// <param name="StandardError">Standard error of the mean over vehicles (0 with one report): the reports' noise and the fleet's spread together.</param>
/// <param name="Min">Lowest report.</param>
/// <param name="Max">Highest report.</param>
public sealed record FleetAccuracy(long ModelVersion, int Reports, int NoisedReports, long Frames, double Accuracy, double StandardError, double Min, double Max);

/// <summary>What the aggregator knows of one vehicle.</summary>
/// <param name="Vehicle">Vehicle id.</param>
/// <param name="Participations">Rounds its update (or masked input) was counted in.</param>
/// <param name="LastRound">The last round it took part in.</param>
/// <param name="LastSeen">Last message from it (check-in, update, evaluation).</param>
/// <param name="Epsilon">ε it has spent by the aggregator's ledger (null without DP or before the worker reports it).</param>
/// <param name="Rejections">Its messages rejected, by reason.</param>
/// <param name="LastEvaluation">Its newest evaluation report.</param>
/// <param name="ClockSkewSeconds">How far its clock was ahead of the aggregator's at its last check-in (negative: behind; a check-in's wait at the broker counts as behind); null before a stamped check-in.</param>
public sealed record VehicleView(string Vehicle, int Participations, long? LastRound, DateTimeOffset? LastSeen, double? Epsilon,
    IReadOnlyDictionary<string, long> Rejections, VehicleEvaluation? LastEvaluation, double? ClockSkewSeconds = null);

/// <summary>Traffic of one round: what the aggregator received and published from its start until the next round's (its new model's publication included).</summary>
/// <param name="Round">The round.</param>
/// <param name="BytesReceived">Bytes of vehicle messages received from the round's start until the next round's (until its close while it is the last).</param>
/// <param name="BytesSent">Bytes published over the same span.</param>
public sealed record RoundTraffic(long Round, long BytesReceived, long BytesSent);

public sealed partial class AggregatorStatus
{
    /// <summary>Largest evaluation report accepted (a few dozen bytes of JSON in practice).</summary>
    public const int MaxEvaluationBytes = 1024;

    private readonly FleetView _fleet = new();

    /// <summary>The phase in progress and how many vehicles have answered in it; null between rounds.</summary>
    public PhaseProgress? Phase => _fleet.Phase;

    /// <summary>Fleet accuracy per model version from the vehicles' evaluation reports, oldest version first.</summary>
    public IReadOnlyList<FleetAccuracy> Accuracy => _fleet.Accuracy();

    /// <summary>Every vehicle the aggregator has heard of, by id.</summary>
    public IReadOnlyList<VehicleView> Vehicles => _fleet.Vehicles();

    /// <summary>Bytes received and published per round, from its start until the next round's (rounds opened by this run).</summary>
    public IReadOnlyList<RoundTraffic> Traffic => _fleet.Traffic();

    /// <summary>True while the broker connection is up, as last reported by the worker; null when it has not reported.</summary>
    public bool? BrokerConnected { get; private set; }

    /// <summary>The round's phase changed or a vehicle answered in it (the worker calls this; it replaces the progress derived from <see cref="Record"/> and accepted updates).</summary>
    public void ReportPhase(long round, string phase, int answered, int expected)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(phase);
        _fleet.ReportPhase(round, phase, answered, expected, _time.GetUtcNow());
    }

    /// <summary>The broker connection went up or down (the worker calls this from its connection's events).</summary>
    public void ReportBroker(bool connected) => BrokerConnected = connected;

    /// <summary>A message arrived from <paramref name="vehicle"/> (updates last-seen).</summary>
    public void VehicleSeen(string vehicle) => _fleet.Touch(vehicle, _time.GetUtcNow());

    /// <summary><paramref name="vehicle"/>'s contribution was counted in <paramref name="round"/>.</summary>
    public void VehicleParticipated(string vehicle, long round) => _fleet.Participated(vehicle, round, _time.GetUtcNow());

    /// <summary><paramref name="vehicle"/> has spent <paramref name="epsilon"/> by the aggregator's privacy ledger.</summary>
    public void VehicleEpsilon(string vehicle, double epsilon)
    {
        if (!double.IsFinite(epsilon) || epsilon < 0) throw new ArgumentOutOfRangeException(nameof(epsilon), epsilon, "ε must be finite and not negative.");
        _fleet.Epsilon(vehicle, epsilon);
        if (!(epsilon <= MaxVehicleEpsilon)) MaxVehicleEpsilon = Math.Max(epsilon, double.IsFinite(MaxVehicleEpsilon) ? MaxVehicleEpsilon : 0);
    }

    /// <summary><paramref name="vehicle"/>'s check-in said its clock is <paramref name="skew"/> ahead of the aggregator's (negative: behind).</summary>
    public void VehicleClock(string vehicle, TimeSpan skew) => _fleet.Clock(vehicle, skew);

    /// <summary>Vehicles whose last check-in was skewed beyond <c>Aggregator:ClockSkewTolerance</c>.</summary>
    public int ClockSkewedVehicles { get; internal set; }

    /// <summary>A message of <paramref name="vehicle"/> was rejected for <paramref name="reason"/> (call besides <see cref="Rejected"/>, which counts it).</summary>
    public void VehicleRejected(string vehicle, string reason) => _fleet.Rejected(vehicle, reason);

    /// <summary>
    /// Takes a vehicle's evaluation report as it arrived on <c>vehicles/{vehicle}/up/eval</c>
    /// (<c>{"vehicle":…,"model_version":…,"count":…,"accuracy":…,"noised":…}</c>). A repeated report for the same model
    /// version replaces the earlier one, so a resend is harmless.
    /// </summary>
    /// <exception cref="WireFormatException">The report is oversized, not that JSON, names another vehicle, or holds an accuracy outside [0, 1] when not noised, a non-finite number or a count below 1.</exception>
    public VehicleEvaluation RecordEvaluation(string vehicle, ReadOnlySpan<byte> report)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(vehicle);
        var evaluation = ParseEvaluation(vehicle, report, _time.GetUtcNow());
        _fleet.Evaluated(evaluation);
        return evaluation;
    }

    internal static VehicleEvaluation ParseEvaluation(string vehicle, ReadOnlySpan<byte> report, DateTimeOffset at)
    {
        if (report.Length > MaxEvaluationBytes)
            throw new WireFormatException($"Evaluation report of {vehicle} is {report.Length} bytes (limit {MaxEvaluationBytes}).", RejectReasons.Oversized);
        string? named = null;
        long? version = null;
        long? count = null;
        double? accuracy = null;
        bool noised = false;
        try
        {
            var reader = new Utf8JsonReader(report, new JsonReaderOptions { MaxDepth = 2 });
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject) throw new WireFormatException($"Evaluation report of {vehicle} is not a JSON object.");
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                string name = reader.GetString()!;
                reader.Read();
                switch (name)
                {
                    case "vehicle": named = reader.GetString(); break;
                    case "model_version": version = reader.GetInt64(); break;
                    case "count": count = reader.GetInt64(); break;
                    case "accuracy": accuracy = reader.GetDouble(); break;
                    case "noised": noised = reader.GetBoolean(); break;
                    default: reader.Skip(); break;
                }
            }
            if (reader.TokenType != JsonTokenType.EndObject || reader.Read())
                throw new WireFormatException($"Evaluation report of {vehicle} has trailing data.");
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
        {
            throw new WireFormatException($"Evaluation report of {vehicle} is not valid JSON: {e.Message}");
        }
        if (named is null || version is null || count is null || accuracy is null)
            throw new WireFormatException($"Evaluation report of {vehicle} lacks one of vehicle, model_version, count, accuracy.");
        if (named != vehicle)
            throw new WireFormatException($"Evaluation report on {vehicle}'s topic names {named}.", RejectReasons.NotInCohort);
        if (!double.IsFinite(accuracy.Value))
            throw new WireFormatException($"Evaluation report of {vehicle} has a non-finite accuracy.", RejectReasons.NonFinite);
        // A noised accuracy may leave [0, 1] (Laplace noise is unbounded); a plain one may not.
        if (!noised && accuracy.Value is < 0 or > 1)
            throw new WireFormatException($"Evaluation report of {vehicle} has accuracy {accuracy.Value} outside [0, 1].");
        if (count.Value is < 1 or > int.MaxValue || version.Value < 0)
            throw new WireFormatException($"Evaluation report of {vehicle} has count {count.Value} / model version {version.Value}.");
        return new VehicleEvaluation(vehicle, version.Value, (int)count.Value, accuracy.Value, noised, at);
    }

    /// <summary>Per-vehicle and per-round views for the dashboard and the API; one lock, all operations small.</summary>
    private sealed class FleetView
    {
        private const int MaxVersionsKept = 1000;
        private readonly Lock _lock = new();
        private readonly Dictionary<string, VehicleState> _vehicles = new(StringComparer.Ordinal);
        private readonly SortedDictionary<long, Dictionary<string, VehicleEvaluation>> _evaluations = [];
        private readonly Dictionary<long, (long Up, long Down)> _roundStart = [];
        private readonly SortedDictionary<long, RoundTraffic> _traffic = [];
        private PhaseProgress? _phase;
        private bool _phaseReported;
        private (long Round, long Up, long Down)? _closedRound;

        public PhaseProgress? Phase
        {
            get
            {
                lock (_lock) return _phase;
            }
        }

        public void RoundRecorded(RoundRecord record, long up, long down)
        {
            lock (_lock)
            {
                if (record.Status == RoundStatus.Open)
                {
                    // The previous round's traffic runs until this one starts: its new model's publication belongs to it.
                    if (_closedRound is { } last)
                    {
                        _traffic[last.Round] = new RoundTraffic(last.Round, up - last.Up, down - last.Down);
                        _closedRound = null;
                    }
                    _roundStart.TryAdd(record.Round, (up, down));
                    if (!_phaseReported) _phase = new PhaseProgress(record.Round, "updates", 0, record.CohortSize, record.StartedAt);
                    return;
                }
                if (_roundStart.Remove(record.Round, out var start))
                {
                    _traffic[record.Round] = new RoundTraffic(record.Round, up - start.Up, down - start.Down);
                    _closedRound = (record.Round, start.Up, start.Down);
                }
                if (_phase?.Round == record.Round) _phase = null;
            }
        }

        public void UpdateAccepted()
        {
            lock (_lock)
            {
                if (!_phaseReported && _phase is { } p) _phase = p with { Answered = p.Answered + 1 };
            }
        }

        public void ReportPhase(long round, string phase, int answered, int expected, DateTimeOffset now)
        {
            lock (_lock)
            {
                _phaseReported = true;
                _phase = _phase is { } p && p.Round == round && p.Phase == phase
                    ? p with { Answered = answered, Expected = expected }
                    : new PhaseProgress(round, phase, answered, expected, now);
            }
        }

        public void Touch(string vehicle, DateTimeOffset now)
        {
            lock (_lock) Get(vehicle).LastSeen = now;
        }

        public void Participated(string vehicle, long round, DateTimeOffset now)
        {
            lock (_lock)
            {
                var v = Get(vehicle);
                if (v.Rounds.Add(round)) v.LastRound = Math.Max(v.LastRound ?? 0, round);
                v.LastSeen = now;
            }
        }

        public void Epsilon(string vehicle, double epsilon)
        {
            lock (_lock) Get(vehicle).Epsilon = epsilon;
        }

        public void Clock(string vehicle, TimeSpan skew)
        {
            lock (_lock) Get(vehicle).ClockSkew = skew;
        }

        public void Rejected(string vehicle, string reason)
        {
            lock (_lock)
            {
                var v = Get(vehicle);
                v.Rejections[reason] = v.Rejections.GetValueOrDefault(reason) + 1;
            }
        }

        public void Evaluated(VehicleEvaluation evaluation)
        {
            lock (_lock)
            {
                if (!_evaluations.TryGetValue(evaluation.ModelVersion, out var byVehicle))
                {
                    _evaluations[evaluation.ModelVersion] = byVehicle = new(StringComparer.Ordinal);
                    while (_evaluations.Count > MaxVersionsKept) _evaluations.Remove(_evaluations.Keys.First());
                }
                byVehicle[evaluation.Vehicle] = evaluation;
                var v = Get(evaluation.Vehicle);
                v.LastSeen = evaluation.At;
                if (v.LastEvaluation is null || v.LastEvaluation.ModelVersion <= evaluation.ModelVersion) v.LastEvaluation = evaluation;
            }
        }

        public IReadOnlyList<FleetAccuracy> Accuracy()
        {
            lock (_lock)
            {
                var result = new List<FleetAccuracy>(_evaluations.Count);
                foreach (var (version, byVehicle) in _evaluations)
                {
                    var reports = byVehicle.Values;
                    long frames = reports.Sum(r => (long)r.Count);
                    double mean = reports.Sum(r => r.Accuracy * r.Count) / frames;
                    double plain = reports.Average(r => r.Accuracy);
                    double se = reports.Count < 2 ? 0 : Math.Sqrt(reports.Sum(r => (r.Accuracy - plain) * (r.Accuracy - plain)) / (reports.Count - 1) / reports.Count);
                    result.Add(new FleetAccuracy(version, reports.Count, reports.Count(r => r.Noised), frames, mean, se, reports.Min(r => r.Accuracy), reports.Max(r => r.Accuracy)));
                }
                return result;
            }
        }

        public IReadOnlyList<VehicleView> Vehicles()
        {
            lock (_lock)
            {
                return [.. _vehicles.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => new VehicleView(p.Key, p.Value.Rounds.Count, p.Value.LastRound,
                    p.Value.LastSeen, p.Value.Epsilon, new Dictionary<string, long>(p.Value.Rejections, StringComparer.Ordinal), p.Value.LastEvaluation, p.Value.ClockSkew?.TotalSeconds))];
            }
        }

        public IReadOnlyList<RoundTraffic> Traffic()
        {
            lock (_lock) return [.. _traffic.Values];
        }

        private VehicleState Get(string vehicle)
        {
            if (!_vehicles.TryGetValue(vehicle, out var state)) _vehicles[vehicle] = state = new VehicleState();
            return state;
        }

        private sealed class VehicleState
        {
            public HashSet<long> Rounds { get; } = [];
            public long? LastRound { get; set; }
            public DateTimeOffset? LastSeen { get; set; }
            public double? Epsilon { get; set; }
            public Dictionary<string, long> Rejections { get; } = new(StringComparer.Ordinal);
            public VehicleEvaluation? LastEvaluation { get; set; }
            public TimeSpan? ClockSkew { get; set; }
        }
    }
}
