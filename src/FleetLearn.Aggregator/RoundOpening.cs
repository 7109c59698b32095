using System.Security.Cryptography;
using FleetLearn.Core.Compression;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Model;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Random;
using FleetLearn.Core.Rounds;
using FleetLearn.Core.SecureAggregation;
using FleetLearn.Transport.Mqtt;

namespace FleetLearn.Aggregator;

/// <summary>One opened round: the coordinator that runs it, the signed plan that announces it, and the model bytes it starts from.</summary>
internal sealed record OpenedRound(RoundCoordinator Coordinator, byte[] SignedPlan, RoundProtection Protection, int ModulusBits);

/// <summary>A sharded round as its coordinator opened it: the combiner, the plan and its signed bytes, and what a partial sum of it may hold.</summary>
internal sealed record OpenedShardedRound(ShardCombiner Combiner, RoundPlan Plan, byte[] SignedPlan, PartialSumLimits Limits);

/// <summary>Turns the aggregator's settings, the selected cohort and the current model into a round: the plan vehicles receive and the coordinator's setup.</summary>
internal static class RoundOpening
{
    /// <summary>The fleet's rules for <paramref name="protection"/> (the same object the simulator builds from its options).</summary>
    public static RoundRules Rules(AggregatorOptions options, RoundProtection protection) => new()
    {
        CohortSize = options.CohortSize,
        MinParticipants = options.MinParticipants,
        Privacy = options.PrivacyMode,
        NoiseMultiplier = options.NoiseMultiplier,
        MinNoiseShares = protection.MinNoiseShares,
        UniformWeights = protection.UniformWeights,
        MaxWeight = protection.MaxWeight,
        MaxUpdateNorm = options.MaxUpdateNorm,
    };

    /// <summary>
    /// What one participation in round <paramref name="round"/> costs each contributor: the charge the round's
    /// <see cref="ChargeEffect"/> records and the vehicle's own ledger records (<see cref="RoundProtection.Charge"/>: σ, or the
    /// σ equivalent of the distributed discrete Gaussian actually added); null without DP. The cohort pre-check uses it too.
    /// </summary>
    public static PrivacyCharge? ParticipationCharge(RoundProtection protection, UpdatePipeline pipeline, long round) => protection.Charge(pipeline, round);

    /// <summary>
    /// What the cohort pre-check asks of each candidate's ledger before a round of <paramref name="dimension"/> parameters opens
    /// with up to <paramref name="cohortSize"/> vehicles: <see cref="ParticipationCharge"/> of that round. The charge depends
    /// on the cohort only through m_min = min(MinParticipants, cohort), and a round opens only with at least MinParticipants
    /// vehicles, so every cohort the selection can give records this same charge (and no round's accounting uses its number).
    /// </summary>
    public static PrivacyCharge? EligibilityCharge(AggregatorOptions options, int dimension, int cohortSize)
    {
        ArgumentNullException.ThrowIfNull(options);
        var protection = AggregatorProtection.Describe(options, cohortSize, maxWeight: 1);
        return protection.NoiseMode is null ? null : ParticipationCharge(protection, protection.CreatePipeline(dimension, cohortSize), round: 0);
    }

    /// <summary>Opens round <paramref name="round"/> for <paramref name="cohort"/> (in <see cref="VehicleId.Order"/>) and signs its plan.</summary>
    public static OpenedRound Open(
        AggregatorOptions options, AggregatorRandomness random, FleetRoster roster, string fleet, long round, long epoch, string[] cohort,
        Checkpoint model, byte[] modelBytes, IFederatedStrategy strategy, ECDsa signingKey, TimeProvider time)
    {
        var (plan, protection) = NewPlan(options, random, roster, fleet, round, epoch, cohort, model, modelBytes, strategy, time, shards: null);
        // Signed first: every SecAgg signature of the round binds this plan and the fleet (the session id).
        var signedPlan = RoundPlanCodec.Sign(plan, signingKey);
        var (setup, modulusBits) = Setup(options, random.CentralNoise, roster.DeviceCa, plan, signedPlan, model.Parameters, strategy, signingKey);
        return new OpenedRound(new RoundCoordinator(setup, time), signedPlan, protection, modulusBits);
    }

    /// <summary>
    /// Opens round <paramref name="round"/> as the coordinator of a sharded round: the cohort assigned to the
    /// <paramref name="liveShards"/> (<see cref="ShardAssignment"/>; with secure aggregation at most one shard per 3 vehicles),
    /// each shard's seed and k in the signed plan, and the <see cref="ShardCombiner"/> that releases what the shards hand on.
    /// </summary>
    public static OpenedShardedRound OpenSharded(
        AggregatorOptions options, AggregatorRandomness random, FleetRoster roster, string fleet, long round, long epoch, string[] cohort,
        Checkpoint model, byte[] modelBytes, IFederatedStrategy strategy, ECDsa signingKey, IReadOnlyCollection<int> liveShards, TimeProvider time)
    {
        var (plan, _) = NewPlan(options, random, roster, fleet, round, epoch, cohort, model, modelBytes, strategy, time, liveShards);
        var signedPlan = RoundPlanCodec.Sign(plan, signingKey);
        var (setup, modulusBits) = Setup(options, random.CentralNoise, null, plan, signedPlan, model.Parameters, strategy, signingKey, secure: false);
        var pipeline = setup.Codec.Pipeline;
        var limits = new PartialSumLimits(plan.Round, pipeline.IsSecure ? pipeline.SecAggDimension : 0, modulusBits, model.Parameters.Length, cohort.Length);
        return new OpenedShardedRound(new ShardCombiner(setup, ShardedPlan.Parts(plan), time), plan, signedPlan, limits);
    }

    /// <summary>
    /// Shard <paramref name="shard"/>'s coordinator for the coordinator's <paramref name="plan"/> (received as
    /// <paramref name="signedPlan"/>): its part, its own SecAgg session, the fleet's rules; it hands a partial sum on instead of releasing.
    /// </summary>
    public static RoundCoordinator OpenShard(
        AggregatorOptions options, RoundPlan plan, byte[] signedPlan, int shard, IFederatedStrategy strategy, DeviceCertificateAuthority? deviceCa, TimeProvider time)
    {
        // A shard adds updates; it never applies them, so it needs the model's size, not the model.
        var global = new float[ModelSpec.Parse(plan.ModelSpec).ParameterCount];
        var (setup, _) = Setup(options, null, deviceCa, plan, signedPlan, global, strategy, null, secure: false);
        return new RoundCoordinator(ShardedPlan.ShardSetup(setup, plan, signedPlan, shard, deviceCa, Math.Max(1, Environment.ProcessorCount)), time);
    }

    /// <summary>The plan of a new round; with <paramref name="shards"/>, its shard table over those live shards.</summary>
    private static (RoundPlan Plan, RoundProtection Protection) NewPlan(
        AggregatorOptions options, AggregatorRandomness random, FleetRoster roster, string fleet, long round, long epoch, string[] cohort,
        Checkpoint model, byte[] modelBytes, IFederatedStrategy strategy, TimeProvider time, IReadOnlyCollection<int>? shards)
    {
        var secureMode = options.SecureMode;
        double maxWeight = options.MaxWeight ?? Math.Min(options.WeightCap ?? double.MaxValue, cohort.Max(v => (double)roster[v].Samples));
        var protection = AggregatorProtection.Describe(options, cohort.Length, maxWeight) with
        {
            CodecSeed = DeterministicRandom.Derive(options.Seed, 0xC0DE, (ulong)round).NextUInt64(),
            SecAggRoundSeed = secureMode == SecureAggregationMode.Off ? null : Convert.ToBase64String(random.SecAggSeed(round)),
            DeviceKeys = secureMode == SecureAggregationMode.Off ? null : cohort.Select(v => Convert.ToBase64String(roster[v].DeviceKey)).ToArray(),
            DeviceCertificates = secureMode == SecureAggregationMode.Off || roster.DeviceCa is null ? null : cohort.Select(v => Convert.ToBase64String(roster[v].DeviceCertificate!)).ToArray(),
        };
        var started = time.GetUtcNow();
        var plan = new RoundPlan
        {
            Fleet = fleet,
            Round = round,
            Epoch = epoch,
            ModelVersion = model.Version,
            ModelSpec = model.Spec.ToString(),
            ModelSha256 = RoundPlanCodec.HashModel(modelBytes),
            ModelBytes = modelBytes.Length,
            Cohort = cohort,
            LocalEpochs = options.LocalEpochs,
            Batch = options.Batch,
            LearningRate = options.LearningRate,
            ProximalMu = strategy.ProximalMu,
            Protection = protection,
            DeadlineUnixMs = (started + options.RoundTimeout).ToUnixTimeMilliseconds(),
            IssuedUnixMs = started.ToUnixTimeMilliseconds(),
            Shards = shards is null ? null : ShardTable(options, random, round, cohort, shards),
        };
        return (plan, protection);
    }

    /// <summary>The shard table: balanced parts, a seed per shard, SecAgg+'s k for each part's size (as the in-process simulator sizes it).</summary>
    private static IReadOnlyList<PlanShard> ShardTable(AggregatorOptions options, AggregatorRandomness random, long round, string[] cohort, IReadOnlyCollection<int> live)
    {
        bool secure = options.SecureMode != SecureAggregationMode.Off;
        // Secure aggregation needs 3 vehicles a part: a small cohort uses fewer of the live shards.
        IReadOnlyCollection<int> used = secure ? [.. live.Order().Take(Math.Max(1, cohort.Length / 3))] : live;
        var parts = ShardAssignment.Assign(cohort, used);
        double missing = SecAggPlusParameters.MissingFraction(CohortSelection.SelectionSize(options.CohortSize, options.OverSelection), options.CohortSize);
        Func<int, int?>? neighbors = options.SecureMode != SecureAggregationMode.Plus ? null
            : n => options.SecAggNeighbors is { } k ? Math.Min(k, n - 1) : NeighborGraph.DefaultNeighbors(n, missing);
        return ShardedPlan.Table(cohort, parts, secure ? s => random.ShardSeed(round, s) : null, neighbors);
    }

    /// <summary>
    /// Reopens the plaintext round that <paramref name="signedPlan"/> announced before a restart, replaying the updates it had
    /// folded (<see cref="RoundCoordinator.Resume"/>); <paramref name="replayed"/> is what the replay leaves to carry out.
    /// </summary>
    public static OpenedRound Resume(
        AggregatorOptions options, AggregatorRandomness random, FleetRoster roster, RoundPlan plan, byte[] signedPlan, Checkpoint model,
        IFederatedStrategy strategy, ECDsa signingKey, IEnumerable<JournaledUpdate> journal, TimeProvider time, out IReadOnlyList<RoundEffect> replayed)
    {
        var (setup, modulusBits) = Setup(options, random.CentralNoise, roster.DeviceCa, plan, signedPlan, model.Parameters, strategy, signingKey);
        return new OpenedRound(RoundCoordinator.Resume(setup, time, journal, out replayed), signedPlan, plan.Protection!, modulusBits);
    }

    /// <summary>The coordinator's setup for <paramref name="plan"/>: everything the round's rules need follows from the signed plan and the settings.</summary>
    /// <remarks>With <c>secure</c> false, no secure aggregation over the whole cohort (a sharded round: each shard runs its own).</remarks>
    private static (RoundSetup Setup, int ModulusBits) Setup(
        AggregatorOptions options, Func<long, INoiseSource>? centralNoise, DeviceCertificateAuthority? deviceCa, RoundPlan plan, byte[] signedPlan, ReadOnlyMemory<float> global,
        IFederatedStrategy strategy, ECDsa? signingKey, bool secure = true)
    {
        var protection = plan.Protection!;
        var cohort = plan.Cohort;
        var pipeline = protection.CreatePipeline(global.Length, cohort.Count);
        SecureRoundSetup? secureSetup = null;
        if (protection.DeviceKeys is not null && secure)
        {
            // The aggregator checks round keys the way the vehicles will: against the device CA when the fleet has one.
            var registry = protection.CreateDeviceKeyRegistry(cohort, deviceCa);
            var parameters = protection.CreateSecAggParameters(pipeline, plan.Round, cohort.Count, SecAggSession.Id(plan.Fleet, signedPlan));
            secureSetup = new SecureRoundSetup(parameters, registry, Math.Max(1, Environment.ProcessorCount), protection.MaliciousAggregator ? signingKey : null);
        }
        var codec = protection.ForRound(pipeline, plan.Round);
        // Charged at the σ equivalent of the noise the vehicles actually add (the distributed discrete Gaussian), as vehicles
        // do, and as the cohort pre-check asked of each ledger (EligibilityCharge).
        var rules = Rules(options, protection) with { ChargedNoiseMultiplier = ParticipationCharge(protection, pipeline, plan.Round)?.NoiseMultiplier };
        return (new RoundSetup
        {
            Round = plan.Round,
            Cohort = cohort,
            Global = global,
            Strategy = strategy,
            Codec = codec,
            Rules = rules,
            Deadline = DateTimeOffset.FromUnixTimeMilliseconds(plan.DeadlineUnixMs),
            CentralNoise = rules.Privacy == NoiseMode.Central ? centralNoise?.Invoke(plan.Round) : null,
            Secure = secureSetup,
        }, pipeline.ModulusBits);
    }
}
