using FleetLearn.Core.Compression;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Model;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Rounds;

namespace FleetLearn.Simulation;

/// <summary>Everything that defines a simulated federated run. Defaults are the FedAvg paper's benchmark settings.</summary>
public sealed record SimulationOptions
{
    /// <summary>Vehicles in the fleet.</summary>
    public int Vehicles { get; init; } = 100;

    /// <summary>Fraction C of the fleet wanted per round (ignored when <see cref="Cohort"/> is set).</summary>
    public double Fraction { get; init; } = 0.1;

    /// <summary>Updates wanted per round (K); overrides <see cref="Fraction"/>.</summary>
    public int? Cohort { get; init; }

    /// <summary>Rounds to run.</summary>
    public int Rounds { get; init; } = 20;

    /// <summary>Local epochs E per round.</summary>
    public int LocalEpochs { get; init; } = 5;

    /// <summary>Local batch size B.</summary>
    public int Batch { get; init; } = 10;

    /// <summary>Client learning rate.</summary>
    public float ClientLearningRate { get; init; } = 0.05f;

    /// <summary>Client SGD momentum (FedAvg paper: 0).</summary>
    public float ClientMomentum { get; init; }

    /// <summary>Strategy text, e.g. <c>fedavg</c>, <c>fedprox:0.01</c>, <c>trimmed:0.1</c>.</summary>
    public string Strategy { get; init; } = "fedavg";

    /// <summary>Server learning rate; null = the strategy's default.</summary>
    public float? ServerLearningRate { get; init; }

    /// <summary>Cap on a vehicle's aggregation weight (its sample count); null = none.</summary>
    public double? WeightCap { get; init; }

    /// <summary>How the training set is split across vehicles.</summary>
    public PartitionScheme Partition { get; init; } = new PartitionScheme.Iid();

    /// <summary>Availability, dropout and speed of the vehicles.</summary>
    public FleetBehavior Behavior { get; init; } = new();

    /// <summary>Extra fraction of vehicles selected to absorb dropouts.</summary>
    public double OverSelection { get; init; }

    /// <summary>Fewer accepted updates and the round fails (model unchanged); null = 1.</summary>
    public int? MinParticipants { get; init; }

    /// <summary>Round deadline in simulated seconds.</summary>
    public double DeadlineSeconds { get; init; } = double.PositiveInfinity;

    /// <summary>Model architecture.</summary>
    public ModelSpec Model { get; init; } = ModelSpec.TwoNN;

    /// <summary>Initial weights of the global model.</summary>
    public InitScheme Init { get; init; } = InitScheme.He;

    /// <summary>Seed of everything random in the run.</summary>
    public ulong Seed { get; init; } = 1;

    /// <summary>Accuracy whose first crossing is reported as rounds-to-target.</summary>
    public double Target { get; init; } = 0.85;

    /// <summary>Vehicles trained in parallel (one trainer each). Results do not depend on it.</summary>
    public int Workers { get; init; } = Math.Max(1, Environment.ProcessorCount);

    /// <summary>Evaluate the global model on the test set every N rounds (and always on the last).</summary>
    public int EvaluateEvery { get; init; } = 1;

    /// <summary>Differential privacy; null = off.</summary>
    public PrivacySettings? Privacy { get; init; }

    /// <summary>ε of the k-ary randomized-response label telemetry each participant sends; null = off.</summary>
    public double? TelemetryEpsilon { get; init; }

    /// <summary>Update codec (<c>none</c>, <c>q8</c>, <c>rot+q4</c>, <c>sub0.25+rot+q8</c>, <c>topk0.01+ef+q8</c>, …); see docs/compression.md.</summary>
    public CodecSpec Codec { get; init; } = CodecSpec.None;

    /// <summary>Secure aggregation: off, SecAgg (complete graph) or SecAgg+ (k neighbours).</summary>
    public SecureAggregationMode SecureAggregation { get; init; }

    /// <summary>Run SecAgg as against a malicious aggregator: certified device keys, ConsistencyCheck round, signed downlink (issue 13 item 5).</summary>
    public bool SecAggMaliciousServer { get; init; }

    /// <summary>k of SecAgg+; null = the smallest even k ≥ 2·⌈log₂ n⌉ (Bell et al. 2020: k = O(log n)).</summary>
    public int? SecAggNeighbors { get; init; }

    /// <summary>Explicit modulus bits m of the secure sum; null = the smallest that holds the cohort's sum.</summary>
    public int? SecAggModulusBits { get; init; }

    /// <summary>L2 norm bound C applied without DP (needed by secure aggregation and shared-range codecs); ignored when <see cref="Privacy"/> sets C.</summary>
    public double? NormBound { get; init; }

    /// <summary>Memory budget for top-k error-feedback residuals (4·P bytes per vehicle that has one); least recently used are dropped beyond it.</summary>
    public long ErrorFeedbackMemoryBytes { get; init; } = 2L << 30;

    /// <summary>
    /// Aggregator shards (Bonawitz et al. 2019): with more than 1, each owns a part of the cohort and runs its own plain or
    /// secure sum, and one combiner adds the partial sums and releases (docs/scale.md, "Sharded aggregation").
    /// </summary>
    public int Shards { get; init; } = 1;

    /// <summary>Shards that die mid-round (tests): the shard's part is lost for that round and later rounds reassign its vehicles.</summary>
    public IReadOnlyList<ShardKill> ShardKills { get; init; } = [];

    /// <summary>The cohort size K this configuration asks for.</summary>
    public int CohortSize => Cohort ?? Math.Max(1, (int)Math.Round(Fraction * Vehicles));

    /// <summary>The minimum participants of a round: <see cref="MinParticipants"/>, else the default every runner shares (<see cref="RoundRules.DefaultMinParticipants"/>).</summary>
    public int EffectiveMinParticipants => MinParticipants ?? Core.Rounds.RoundRules.DefaultMinParticipants(CohortSize, Privacy?.Mode);

    /// <summary>Throws with a clear message when a setting is out of range.</summary>
    public void Validate()
    {
        if (Vehicles < 1) throw new ArgumentException("--vehicles must be at least 1.");
        if (Cohort is null && !(Fraction > 0 && Fraction <= 1)) throw new ArgumentException("--fraction must be within (0, 1].");
        if (CohortSize > Vehicles) throw new ArgumentException($"The cohort ({CohortSize}) cannot exceed the fleet ({Vehicles} vehicles).");
        if (Rounds < 1) throw new ArgumentException("--rounds must be at least 1.");
        if (LocalEpochs < 1) throw new ArgumentException("--local-epochs must be at least 1.");
        if (Batch < 1 || Batch > 4096) throw new ArgumentException("--batch must be within 1..4096.");
        if (!(ClientLearningRate > 0)) throw new ArgumentException("--lr must be positive.");
        if (Workers < 1) throw new ArgumentException("--workers must be at least 1.");
        if (EvaluateEvery < 1) throw new ArgumentException("--eval-every must be at least 1.");
        if (WeightCap is { } cap && !(cap > 0)) throw new ArgumentException("--weight-cap must be positive.");
        Behavior.Validate();
        Privacy?.Validate();
        if (TelemetryEpsilon is { } te && !(te > 0 && te <= 20)) throw new ArgumentException("--telemetry-epsilon must be within (0, 20].");
        var settings = new RoundSettings(CohortSize, OverSelection, EffectiveMinParticipants, DeadlineSeconds);
        settings.Validate();
        if (NormBound is { } bound && (!(bound > 0) || double.IsInfinity(bound))) throw new ArgumentException("--clip (norm bound) must be a positive number.");
        if (ErrorFeedbackMemoryBytes < 4L * Model.ParameterCount) throw new ArgumentException($"The error-feedback memory budget ({ErrorFeedbackMemoryBytes} bytes) holds no residual of {4L * Model.ParameterCount} bytes.");
        if (SecAggMaliciousServer && SecureAggregation == SecureAggregationMode.Off)
            throw new ArgumentException("--secagg-malicious needs --secagg full or plus.");
        if (SecureAggregation != SecureAggregationMode.Off)
        {
            if (settings.SelectionSize < 3) throw new CodecConfigurationException($"Secure aggregation needs at least 3 selected vehicles per round; this configuration selects {settings.SelectionSize}.");
            var strategy = StrategyCatalog.Parse(Strategy, ServerLearningRate);
            if (strategy.CreateAggregator(1) is not WeightedMeanAggregator || strategy is Core.Federated.Strategies.NormBounding)
                throw new CodecConfigurationException($"Strategy '{strategy.Name}' needs each vehicle's update, but secure aggregation reveals only the sum: use fedavg, fedavgm, fedprox or an adaptive server optimizer.");
        }
        if (Shards < 1) throw new ArgumentException("--shards must be at least 1.");
        if (ShardKills.FirstOrDefault(k => k.Shard < 0 || k.Shard >= Shards || Shards == 1 || k.Round < 1 || k.Round > Rounds) is { } kill)
            throw new ArgumentException($"--shard-kill {kill.Round}:{kill.Shard}: names no shard of this run (--shards {Shards}, shards 0..{Shards - 1}, rounds 1..{Rounds}).");
        if (Shards > 1)
        {
            if (SecureAggregation != SecureAggregationMode.Off && settings.SelectionSize / Shards < 3)
                throw new ArgumentException($"--shards {Shards}: each shard runs its own secure aggregation over at least 3 vehicles, and {settings.SelectionSize} selected vehicles give {settings.SelectionSize / Shards} per shard.");
            if (SecAggMaliciousServer) throw new ArgumentException("--shards with --secagg-malicious is not built: the shards' signed downlink and consistency round need one session per shard in the plan.");
            if (SecureAggregation == SecureAggregationMode.Off && !StrategyCatalog.Parse(Strategy, ServerLearningRate).CreateAggregator(1).IsStreaming)
                throw new ArgumentException($"--shards: strategy '{Strategy}' does not combine by weighted mean, so the shards' partial means cannot be added.");
        }
        _ = CreatePipeline();
    }

    /// <summary>The rules of every round of this configuration (what the coordinator's close policy reads), for any runner.</summary>
    internal RoundRules RoundRules(int largestPartition) => new()
    {
        CohortSize = CohortSize,
        MinParticipants = EffectiveMinParticipants,
        Privacy = Privacy?.Mode,
        NoiseMultiplier = Privacy?.NoiseMultiplier ?? 0,
        MinNoiseShares = Privacy is { Mode: NoiseMode.Distributed } ? EffectiveMinParticipants : 1,
        UniformWeights = Privacy is not null,
        MaxWeight = MaxWeight(largestPartition),
    };

    /// <summary>The public bound on an aggregation weight W (sample counts are sent as w/W under secure aggregation).</summary>
    internal double MaxWeight(int largestPartition) => Privacy is not null ? 1 : Math.Max(1, WeightCap is { } cap ? Math.Min(cap, largestPartition) : largestPartition);

    /// <summary>k of SecAgg+ for a cohort of <paramref name="n"/> vehicles.</summary>
    internal int? EffectiveNeighbors(int n)
    {
        if (SecureAggregation != SecureAggregationMode.Plus) return null;
        double missing = Core.SecureAggregation.SecAggPlusParameters.MissingFraction(n, CohortSize);
        // Against a malicious aggregator each vehicle draws its own holders: k derived for that graph.
        return SecAggNeighbors ?? (SecAggMaliciousServer ? Core.SecureAggregation.SecAggPlusParameters.DefaultSelfChosenHolders(n, missing) : Core.SecureAggregation.NeighborGraph.DefaultNeighbors(n, missing));
    }

    /// <summary>The update pipeline this configuration implies (throws <see cref="CodecConfigurationException"/> on a conflict).</summary>
    internal UpdatePipeline CreatePipeline(int largestPartition = 1)
    {
        int n = new RoundSettings(CohortSize, OverSelection).SelectionSize;
        return new UpdatePipeline(new UpdatePipelineOptions
        {
            Codec = Codec,
            Dimension = Model.ParameterCount,
            SecureAggregation = SecureAggregation,
            Neighbors = EffectiveNeighbors(n),
            CohortSize = Math.Max(1, n),
            ModulusBits = SecAggModulusBits,
            ClipNorm = Privacy?.ClipNorm ?? NormBound,
            Noise = Privacy?.Mode,
            MaxWeight = MaxWeight(largestPartition),
            UniformWeights = Privacy is not null,
            SendUnclippedBit = Privacy?.AdaptiveClip == true,
        });
    }
}

/// <summary>Shard <paramref name="Shard"/> dies in round <paramref name="Round"/> before its vehicles' masked inputs (or its plaintext partial) reach it.</summary>
public sealed record ShardKill(int Round, int Shard);
