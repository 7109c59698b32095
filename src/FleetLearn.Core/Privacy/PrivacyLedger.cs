namespace FleetLearn.Core.Privacy;

/// <summary>How vehicles come to contribute, which decides whether privacy amplification by sampling may be claimed.</summary>
public enum SamplingAssumption
{
    /// <summary>
    /// The default. Vehicles check in when they please (Balle et al. 2020, "Privacy Amplification via Random
    /// Check-Ins"): they are not a uniform sample, so no amplification is claimed and every participation is
    /// accounted as the full Gaussian mechanism (q = 1). Rounds without the vehicle cost it nothing.
    /// </summary>
    PerParticipation,

    /// <summary>
    /// Each vehicle of a fixed population is included independently with probability q per round by a coin the
    /// server can neither choose nor see in advance (<see cref="PoissonSelfSelection"/>: the vehicle flips it), so the
    /// sampled Gaussian mechanism's amplification applies. Fixed-size cohorts drawn from a public seed do not qualify. Then every round costs
    /// every member vehicle rdp(q, σ) whether or not it was drawn: record each round for each member, not only
    /// the rounds it took part in.
    /// </summary>
    UniformPoisson,
}

/// <summary>One accounted release that used a vehicle's data: sampling rate q, noise multiplier σ, steps.</summary>
public readonly record struct PrivacyCharge
{
    /// <summary>Creates a validated charge.</summary>
    public PrivacyCharge(double samplingRate, double noiseMultiplier, int steps = 1)
    {
        if (!(samplingRate > 0 && samplingRate <= 1)) throw new ArgumentOutOfRangeException(nameof(samplingRate), samplingRate, "q must lie in (0, 1].");
        if (!(noiseMultiplier > 0) || double.IsInfinity(noiseMultiplier)) throw new ArgumentOutOfRangeException(nameof(noiseMultiplier), noiseMultiplier, "σ must be a positive finite number.");
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(steps);
        SamplingRate = samplingRate;
        NoiseMultiplier = noiseMultiplier;
        Steps = steps;
    }

    /// <summary>q: the probability the vehicle was included (1 without amplification).</summary>
    public double SamplingRate { get; }

    /// <summary>σ: noise standard deviation over the clip norm.</summary>
    public double NoiseMultiplier { get; }

    /// <summary>Number of compositions this release stands for (1 per DP-FedAvg round).</summary>
    public int Steps { get; }

    /// <summary>A participation without sampling amplification (q = 1), the default accounting.</summary>
    public static PrivacyCharge Participation(double noiseMultiplier, int steps = 1) => new(1.0, noiseMultiplier, steps);
}

/// <summary>Settings of a <see cref="PrivacyLedger"/>: budget ε_max at δ, orders, conversion, sampling assumption.</summary>
public sealed record PrivacyLedgerOptions
{
    /// <summary>Creates validated options.</summary>
    public PrivacyLedgerOptions(double epsilonMax, double delta, SamplingAssumption sampling = SamplingAssumption.PerParticipation,
        IReadOnlyList<double>? orders = null, RdpConversion conversion = RdpConversion.Improved)
    {
        if (!(epsilonMax > 0) || double.IsInfinity(epsilonMax)) throw new ArgumentOutOfRangeException(nameof(epsilonMax), epsilonMax, "ε_max must be a positive finite number.");
        if (!(delta > 0 && delta < 1)) throw new ArgumentOutOfRangeException(nameof(delta), delta, "δ must lie in (0, 1); choose δ well below 1/(number of vehicles).");
        var o = (orders ?? RdpAccountant.DefaultOrders).ToArray();
        if (o.Length == 0 || o.Any(a => !(a > 1) || double.IsInfinity(a))) throw new ArgumentException("Orders must be finite and > 1.", nameof(orders));
        EpsilonMax = epsilonMax;
        Delta = delta;
        Sampling = sampling;
        Orders = o;
        Conversion = conversion;
    }

    /// <summary>ε_max: a vehicle whose ε would exceed it stops contributing.</summary>
    public double EpsilonMax { get; }

    /// <summary>δ of the (ε, δ) guarantee.</summary>
    public double Delta { get; }

    /// <summary>Whether charges may claim amplification by sampling (q &lt; 1).</summary>
    public SamplingAssumption Sampling { get; }

    /// <summary>Rényi orders of the accumulated RDP curve.</summary>
    public IReadOnlyList<double> Orders { get; }

    /// <summary>RDP → (ε, δ) conversion.</summary>
    public RdpConversion Conversion { get; }
}

/// <summary>One vehicle's accumulated privacy loss: the recorded rounds and charges, their RDP curve and ε.</summary>
public sealed class VehiclePrivacyState
{
    internal VehiclePrivacyState(string vehicleId, long[] rounds, PrivacyCharge[] charges, double[] rdp, PrivacySpent spent)
    {
        VehicleId = vehicleId;
        Rounds = rounds;
        Charges = charges;
        Rdp = rdp;
        Spent = spent;
    }

    /// <summary>The vehicle's identifier.</summary>
    public string VehicleId { get; }

    /// <summary>Rounds recorded, in the order they were recorded.</summary>
    public IReadOnlyList<long> Rounds { get; }

    /// <summary>The charge of each recorded round (parallel to <see cref="Rounds"/>): the history, source of truth.</summary>
    public IReadOnlyList<PrivacyCharge> Charges { get; }

    /// <summary>Accumulated RDP at each of the ledger's orders.</summary>
    public IReadOnlyList<double> Rdp { get; }

    /// <summary>(ε, δ) and the order that attains it.</summary>
    public PrivacySpent Spent { get; }

    /// <summary>ε spent so far.</summary>
    public double Epsilon => Spent.Epsilon;

    /// <summary>Number of recorded participations (rounds).</summary>
    public int Participations => Rounds.Count;
}

/// <summary>What a coordinator reads of a privacy ledger to refuse a vehicle: its state and whether one more charge fits its budget.</summary>
public interface IPrivacyLedgerView
{
    /// <summary>The vehicle's state (an empty state with ε = 0 if it never took part).</summary>
    VehiclePrivacyState Get(string vehicleId);

    /// <summary>Whether one more charge keeps the vehicle within the ledger's ε budget.</summary>
    bool CanParticipate(string vehicleId, PrivacyCharge next);
}

/// <summary>
/// Vehicle-level privacy ledger: per vehicle, the accounted rounds and the accumulated Rényi-DP of the
/// sampled Gaussian mechanism (Mironov 2017; Mironov, Talwar, Zhang 2019), converted to ε at δ. ε never
/// decreases: charges only add non-negative RDP, and <see cref="Restore"/> refuses a state that lost rounds.
/// </summary>
/// <remarks>
/// Pure and single-threaded; persistence lives in FleetLearn.Storage. Record the spend <b>before</b> the
/// vehicle's update is used or sent, so a crash can only over-count ε, never under-count it. See
/// <see cref="SamplingAssumption"/> for when q &lt; 1 may be used.
/// </remarks>
public sealed class PrivacyLedger : IPrivacyLedgerView
{
    private readonly Dictionary<string, VehiclePrivacyState> _vehicles = new(StringComparer.Ordinal);
    private readonly Dictionary<(double Q, double Sigma), double[]> _rdpPerStep = [];

    /// <summary>Creates an empty ledger.</summary>
    public PrivacyLedger(PrivacyLedgerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        Options = options;
    }

    /// <summary>The ledger's budget and accounting settings.</summary>
    public PrivacyLedgerOptions Options { get; }

    /// <summary>Every vehicle with at least one recorded round.</summary>
    public IEnumerable<VehiclePrivacyState> Vehicles => _vehicles.Values;

    /// <summary>The vehicle's state (an empty state with ε = 0 if it never took part).</summary>
    public VehiclePrivacyState Get(string vehicleId)
    {
        ValidateId(vehicleId);
        return _vehicles.TryGetValue(vehicleId, out var state) ? state : Empty(vehicleId);
    }

    /// <summary>ε the vehicle has spent so far.</summary>
    public double EpsilonOf(string vehicleId) => Get(vehicleId).Epsilon;

    /// <summary>The (ε, δ) the vehicle would have after one more charge.</summary>
    public PrivacySpent Preview(string vehicleId, PrivacyCharge next)
    {
        ValidateCharge(next);
        var current = Get(vehicleId);
        var rdp = Add(current.Rdp, next);
        return RdpAccountant.GetPrivacySpent(Options.Orders, rdp, Options.Delta, Options.Conversion);
    }

    /// <summary>Whether the next round (charge) keeps the vehicle within ε_max; a vehicle over budget stops contributing.</summary>
    public bool CanParticipate(string vehicleId, PrivacyCharge next) => Preview(vehicleId, next).Epsilon <= Options.EpsilonMax;

    /// <summary>
    /// Records round <paramref name="round"/> if it keeps the vehicle within ε_max; returns false (recording nothing)
    /// otherwise. Re-recording an already recorded round with the same charge is a no-op that returns true.
    /// </summary>
    public bool TryRecord(string vehicleId, long round, PrivacyCharge charge, out VehiclePrivacyState state)
    {
        var current = Get(vehicleId);
        if (IsRecorded(current, round, charge))
        {
            state = current;
            return true;
        }
        if (!CanParticipate(vehicleId, charge))
        {
            state = current;
            return false;
        }
        state = Record(vehicleId, round, charge);
        return true;
    }

    /// <summary>
    /// Records round <paramref name="round"/> unconditionally (a release that already happened must be accounted even
    /// over budget). Idempotent per (vehicle, round); recording the same round with a different charge throws.
    /// </summary>
    public VehiclePrivacyState Record(string vehicleId, long round, PrivacyCharge charge)
    {
        ValidateCharge(charge);
        ArgumentOutOfRangeException.ThrowIfNegative(round);
        var current = Get(vehicleId);
        if (IsRecorded(current, round, charge)) return current;
        var rdp = Add(current.Rdp, charge);
        var next = new VehiclePrivacyState(vehicleId, [.. current.Rounds, round], [.. current.Charges, charge], rdp,
            RdpAccountant.GetPrivacySpent(Options.Orders, rdp, Options.Delta, Options.Conversion));
        _vehicles[vehicleId] = next;
        return next;
    }

    /// <summary>
    /// Rebuilds a vehicle's state from its persisted history (recomputing RDP and ε from the charges, the source of
    /// truth) and installs it. Throws if the history is malformed or would lose rounds the ledger already holds.
    /// </summary>
    public VehiclePrivacyState Restore(string vehicleId, IReadOnlyList<long> rounds, IReadOnlyList<PrivacyCharge> charges)
    {
        ValidateId(vehicleId);
        ArgumentNullException.ThrowIfNull(rounds);
        ArgumentNullException.ThrowIfNull(charges);
        if (rounds.Count != charges.Count)
            throw new InvalidDataException($"Vehicle '{vehicleId}': {rounds.Count} rounds but {charges.Count} charges.");
        if (rounds.Distinct().Count() != rounds.Count)
            throw new InvalidDataException($"Vehicle '{vehicleId}': a round is recorded twice.");
        var rdp = new double[Options.Orders.Count];
        foreach (var c in charges)
        {
            ValidateCharge(c);
            rdp = Add(rdp, c);
        }
        if (_vehicles.TryGetValue(vehicleId, out var existing) && existing.Rounds.Except(rounds).Any())
            throw new InvalidOperationException($"Vehicle '{vehicleId}': the restored history lacks rounds the ledger already holds; ε must never decrease.");
        var state = new VehiclePrivacyState(vehicleId, [.. rounds], [.. charges], rdp,
            RdpAccountant.GetPrivacySpent(Options.Orders, rdp, Options.Delta, Options.Conversion));
        _vehicles[vehicleId] = state;
        return state;
    }

    private VehiclePrivacyState Empty(string vehicleId)
        => new(vehicleId, [], [], new double[Options.Orders.Count], new PrivacySpent(0, Options.Delta, Options.Orders[0]));

    private static bool IsRecorded(VehiclePrivacyState state, long round, PrivacyCharge charge)
    {
        for (int i = 0; i < state.Rounds.Count; i++)
        {
            if (state.Rounds[i] != round) continue;
            if (state.Charges[i] != charge)
                throw new InvalidOperationException($"Vehicle '{state.VehicleId}': round {round} is already recorded with {state.Charges[i]}, not {charge}.");
            return true;
        }
        return false;
    }

    private double[] Add(IReadOnlyList<double> rdp, PrivacyCharge charge)
    {
        if (!_rdpPerStep.TryGetValue((charge.SamplingRate, charge.NoiseMultiplier), out var perStep))
        {
            perStep = RdpAccountant.ComputeRdp(charge.SamplingRate, charge.NoiseMultiplier, 1, Options.Orders);
            _rdpPerStep[(charge.SamplingRate, charge.NoiseMultiplier)] = perStep;
        }
        var sum = new double[rdp.Count];
        for (int i = 0; i < sum.Length; i++) sum[i] = rdp[i] + perStep[i] * charge.Steps;
        return sum;
    }

    private void ValidateCharge(PrivacyCharge charge)
    {
        if (charge.Steps == 0) throw new ArgumentException("A default PrivacyCharge is not a charge; construct one with q, σ and steps.", nameof(charge));
        if (Options.Sampling == SamplingAssumption.PerParticipation && charge.SamplingRate < 1)
            throw new ArgumentException(
                $"q = {charge.SamplingRate} claims amplification by sampling, but this ledger assumes vehicles are not uniformly sampled (random check-ins, Balle et al. 2020); account each participation with q = 1 or configure SamplingAssumption.UniformPoisson.",
                nameof(charge));
    }

    private static void ValidateId(string vehicleId)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(vehicleId);
        if (vehicleId.Length > 256) throw new ArgumentException("Vehicle ids are at most 256 characters.", nameof(vehicleId));
    }
}
