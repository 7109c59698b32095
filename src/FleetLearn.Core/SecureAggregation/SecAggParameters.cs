using System.Numerics;

namespace FleetLearn.Core.SecureAggregation;

/// <summary>How SecAgg+ picks each vehicle's share holders.</summary>
public enum HolderSelection
{
    /// <summary>The Harary ring shuffled by the plan's round seed (Bell et al. 2020): fine while the aggregator is semi-honest.</summary>
    SeedRing,
    /// <summary>Each vehicle draws its own k holders after the cohort is fixed (<see cref="SelfChosenGraph"/>): nothing for a malicious aggregator to grind.</summary>
    SelfChosen,
}

/// <summary>
/// Public parameters of one secure-aggregation round, identical on the server and every vehicle
/// (they travel in the signed round plan). Vehicles are named by their index 0..n−1 in the cohort.
/// </summary>
/// <remarks>
/// <para><b>Graph.</b> <see cref="Neighbors"/> = null (or ≥ n − 1) gives the complete graph, i.e. the
/// protocol of Bonawitz et al. 2017. An even k &lt; n − 1 gives SecAgg+ (Bell et al. 2020): a Harary
/// graph H(k, n) whose ring order is a permutation drawn from <see cref="RoundSeed"/>, so every
/// vehicle has exactly k neighbours and everyone derives the same graph without talking.</para>
/// <para><b>Share holders.</b> A vehicle u Shamir-shares its secrets among H(u) = N(u) ∪ {u}
/// (it keeps its own share); <see cref="Threshold"/> t applies to that set (size n for the complete
/// graph, k + 1 for SecAgg+). t must be a strict majority of the holders, so that honest vehicles
/// can never hand the server t self-mask shares <i>and</i> t key shares of the same vehicle.</para>
/// <para><b>Modulus.</b> Inputs are integers in [0, <see cref="MaxInputValue"/>] and are summed mod
/// 2^<see cref="BitWidth"/>; n · MaxInputValue must be ≤ 2^m − 1 so the cohort's sum never wraps.</para>
/// </remarks>
public sealed class SecAggParameters
{
    /// <summary>Largest cohort a round accepts (also the decoders' limit).</summary>
    public const int MaxCohortSize = 1 << 20;

    private NeighborGraph? _graph;

    /// <summary>Round number; bound into every key derivation, signature and message.</summary>
    public required ulong Round { get; init; }

    /// <summary>Number of vehicles n selected for the round (ids 0..n−1).</summary>
    public required int CohortSize { get; init; }

    /// <summary>Length of each vehicle's input vector (the weight coordinate included).</summary>
    public required int Dimension { get; init; }

    /// <summary>m: sums are computed mod 2^m, 1 ≤ m ≤ 32.</summary>
    public required int BitWidth { get; init; }

    /// <summary>Largest value any coordinate of one vehicle's input may take.</summary>
    public required ulong MaxInputValue { get; init; }

    /// <summary>
    /// Inputs are signed integers mod 2^m (the distributed discrete Gaussian: unbounded noise, read back centred), so
    /// any residue is a valid input and the no-wrap check on n·<see cref="MaxInputValue"/> does not apply.
    /// </summary>
    public bool SignedInputs { get; init; }

    /// <summary>k for SecAgg+ (even); null for the complete graph.</summary>
    public int? Neighbors { get; init; }

    /// <summary>t; null picks the smallest strict majority of the share holders.</summary>
    public int? Threshold { get; init; }

    /// <summary>
    /// Fewest survivors whose inputs may be unmasked (distributed DP: the noise shares the sum's noise was sized for).
    /// The server aborts before unmasking with fewer, and every vehicle refuses an unmask request that lists fewer.
    /// </summary>
    public int MinNoiseShares { get; init; } = 1;

    /// <summary>
    /// The aggregator may be malicious (issue 13 item 5): the round gets Bonawitz et al.'s ConsistencyCheck round, and a
    /// vehicle reveals shares only with t signatures of its share holders on the one survivor set it signed itself.
    /// </summary>
    public bool MaliciousServer { get; init; }

    /// <summary>
    /// How SecAgg+ picks share holders when the aggregator is semi-honest (default: the seed ring). Against a malicious
    /// aggregator SecAgg+ always uses <see cref="HolderSelection.SelfChosen"/> (<see cref="SelfChosenHolders"/>).
    /// </summary>
    public HolderSelection HolderSelection { get; init; }

    /// <summary>
    /// True when each vehicle draws its own share holders: SecAgg+ with <see cref="MaliciousServer"/> or
    /// <see cref="HolderSelection.SelfChosen"/>. The complete graph has nothing to choose.
    /// </summary>
    public bool SelfChosenHolders => !IsCompleteGraph && (MaliciousServer || HolderSelection == HolderSelection.SelfChosen);

    /// <summary>c: colluding vehicles tolerated among one vehicle's share holders under <see cref="MaliciousServer"/>; t must exceed (h + c)/2.</summary>
    public int ColludingHolders { get; init; }

    /// <summary>Up to 64 bytes bound into every signature of the round (SHA-256 of the signed plan and the fleet id); empty = none.</summary>
    public byte[] SessionId { get; init; } = [];

    /// <summary>32 public random bytes of the round plan; they fix the SecAgg+ graph.</summary>
    public required byte[] RoundSeed { get; init; }

    /// <summary>How long the server collects each phase's messages before closing it.</summary>
    public TimeSpan PhaseTimeout { get; init; } = TimeSpan.FromMinutes(2);

    /// <summary>How long a vehicle waits for the server's next message before aborting (default 2 × <see cref="PhaseTimeout"/>).</summary>
    public TimeSpan? VehicleTimeout { get; init; }

    /// <summary>True when every vehicle is every other vehicle's neighbour (classic SecAgg).</summary>
    public bool IsCompleteGraph => Neighbors is null || Neighbors.Value >= CohortSize - 1;

    /// <summary>Number of share holders of each vehicle: n, or k + 1 for SecAgg+.</summary>
    public int HolderCount => IsCompleteGraph ? CohortSize : Neighbors!.Value + 1;

    /// <summary>The threshold t actually used.</summary>
    public int EffectiveThreshold => Threshold ?? HolderCount / 2 + 1;

    /// <summary>The vehicle timeout actually used.</summary>
    public TimeSpan EffectiveVehicleTimeout => VehicleTimeout ?? PhaseTimeout * 2;

    /// <summary>2^m − 1 as a bit mask.</summary>
    public uint ValueMask => BitWidth == 32 ? uint.MaxValue : (1u << BitWidth) - 1;

    /// <summary>
    /// The neighbour graph of this round (built once, on first use): the complete graph or the seed ring. With
    /// <see cref="SelfChosenHolders"/> the graph comes from the advertisements instead (<see cref="SelfChosenGraph"/>).
    /// </summary>
    public NeighborGraph Graph => SelfChosenHolders
        ? throw new InvalidOperationException("With self-chosen share holders the graph is built from the vehicles' signed advertisements (SelfChosenGraph), not from the round seed.")
        : _graph ??= NeighborGraph.Create(CohortSize, IsCompleteGraph ? null : Neighbors, RoundSeed);

    /// <summary>A copy for a round against a malicious server (ConsistencyCheck, signed downlink bound to <paramref name="sessionId"/>), validated.</summary>
    public SecAggParameters AgainstMaliciousServer(byte[] sessionId, int colludingHolders)
    {
        var p = new SecAggParameters
        {
            Round = Round, CohortSize = CohortSize, Dimension = Dimension, BitWidth = BitWidth, MaxInputValue = MaxInputValue, SignedInputs = SignedInputs,
            Neighbors = Neighbors, Threshold = Threshold, MinNoiseShares = MinNoiseShares, RoundSeed = RoundSeed, PhaseTimeout = PhaseTimeout,
            VehicleTimeout = VehicleTimeout, HolderSelection = HolderSelection, MaliciousServer = true, ColludingHolders = colludingHolders, SessionId = sessionId ?? throw new ArgumentNullException(nameof(sessionId)),
        };
        p.Validate();
        return p;
    }

    /// <summary>Throws <see cref="SecAggConfigurationException"/> with the offending numbers when the parameters are unusable.</summary>
    public void Validate()
    {
        if (CohortSize < 3 || CohortSize > MaxCohortSize)
            throw new SecAggConfigurationException($"Cohort size {CohortSize} is outside [3, {MaxCohortSize}].");
        if (Dimension < 1 || Dimension > SecAggCodecLimits.Default.MaxDimension)
            throw new SecAggConfigurationException($"Dimension {Dimension} is outside [1, {SecAggCodecLimits.Default.MaxDimension}].");
        if (BitWidth < 1 || BitWidth > 32)
            throw new SecAggConfigurationException($"Bit width {BitWidth} is outside [1, 32].");
        if (RoundSeed is null || RoundSeed.Length != 32)
            throw new SecAggConfigurationException($"Round seed must be 32 bytes, got {RoundSeed?.Length ?? 0}.");
        if (PhaseTimeout <= TimeSpan.Zero || EffectiveVehicleTimeout <= TimeSpan.Zero)
            throw new SecAggConfigurationException($"Timeouts must be positive (phase {PhaseTimeout}, vehicle {EffectiveVehicleTimeout}).");
        if (!SignedInputs) EnsureModulusHoldsSum(CohortSize, MaxInputValue, BitWidth);
        else if (MaxInputValue > ValueMask) throw new SecAggConfigurationException($"Max input value {MaxInputValue} exceeds 2^{BitWidth} − 1.");
        if (MinNoiseShares < 1 || MinNoiseShares > CohortSize)
            throw new SecAggConfigurationException($"Minimum noise shares {MinNoiseShares} is outside [1, {CohortSize}] (the cohort).");
        if (Neighbors is { } k && k < CohortSize - 1)
        {
            if (SelfChosenHolders && k < 2)
                throw new SecAggConfigurationException($"SecAgg+ with self-chosen holders needs k = {k} ≥ 2 holders per vehicle; use null or ≥ n − 1 = {CohortSize - 1} for the complete graph.");
            if (!SelfChosenHolders && (k < 2 || k % 2 != 0))
                throw new SecAggConfigurationException($"SecAgg+ neighbour count k = {k} must be even and ≥ 2 (Harary graph H(k, n)); use null or ≥ n − 1 = {CohortSize - 1} for the complete graph.");
        }
        int h = HolderCount, t = EffectiveThreshold;
        if (t > h || 2 * t <= h)
            throw new SecAggConfigurationException($"Threshold t = {t} must satisfy {h}/2 < t ≤ {h} (strict majority of the {h} share holders of each vehicle).");
        if (SessionId is null || SessionId.Length > 64)
            throw new SecAggConfigurationException($"Session id must be at most 64 bytes, got {SessionId?.Length.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "null"}.");
        if (ColludingHolders < 0 || ColludingHolders >= h)
            throw new SecAggConfigurationException($"Colluding holders c = {ColludingHolders} is outside [0, {h}).");
        // Two survivor sets can each collect t signatures in one neighbourhood only if 2t − c ≤ h: the c colluders sign both.
        if (MaliciousServer && 2 * t <= h + ColludingHolders)
            throw new SecAggConfigurationException($"Against a malicious server, threshold t = {t} must exceed (h + c)/2 = ({h} + {ColludingHolders})/2 so that only one survivor set can gather t signatures.");
    }

    /// <summary>Throws when n vehicles with inputs up to <paramref name="maxInputValue"/> could wrap the sum mod 2^m.</summary>
    public static void EnsureModulusHoldsSum(int cohortSize, ulong maxInputValue, int bitWidth)
    {
        var needed = (BigInteger)cohortSize * maxInputValue;
        var limit = (BigInteger.One << bitWidth) - 1;
        if (needed > limit)
        {
            long bits = (long)needed.GetBitLength();
            throw new SecAggConfigurationException(
                $"Modulus 2^{bitWidth} = {limit + 1} cannot hold the cohort's sum without wrapping: " +
                $"{cohortSize} vehicles × max input {maxInputValue} = {needed} > {limit}. " +
                $"Use a bit width of at least {bits} or lower the input range.");
        }
    }
}
