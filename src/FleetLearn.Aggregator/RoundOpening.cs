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
        };
        // Signed first: every SecAgg signature of the round binds this plan and the fleet (the session id).
        var signedPlan = RoundPlanCodec.Sign(plan, signingKey);
        var (setup, modulusBits) = Setup(options, random, roster, plan, signedPlan, model, strategy, signingKey);
        return new OpenedRound(new RoundCoordinator(setup, time), signedPlan, protection, modulusBits);
    }

    /// <summary>
    /// Reopens the plaintext round that <paramref name="signedPlan"/> announced before a restart, replaying the updates it had
    /// folded (<see cref="RoundCoordinator.Resume"/>); <paramref name="replayed"/> is what the replay leaves to carry out.
    /// </summary>
    public static OpenedRound Resume(
        AggregatorOptions options, AggregatorRandomness random, FleetRoster roster, RoundPlan plan, byte[] signedPlan, Checkpoint model,
        IFederatedStrategy strategy, ECDsa signingKey, IEnumerable<JournaledUpdate> journal, TimeProvider time, out IReadOnlyList<RoundEffect> replayed)
    {
        var (setup, modulusBits) = Setup(options, random, roster, plan, signedPlan, model, strategy, signingKey);
        return new OpenedRound(RoundCoordinator.Resume(setup, time, journal, out replayed), signedPlan, plan.Protection!, modulusBits);
    }

    /// <summary>The coordinator's setup for <paramref name="plan"/>: everything the round's rules need follows from the signed plan and the settings.</summary>
    private static (RoundSetup Setup, int ModulusBits) Setup(
        AggregatorOptions options, AggregatorRandomness random, FleetRoster roster, RoundPlan plan, byte[] signedPlan, Checkpoint model, IFederatedStrategy strategy,
        ECDsa signingKey)
    {
        var protection = plan.Protection!;
        var cohort = plan.Cohort;
        var pipeline = protection.CreatePipeline(model.Parameters.Length, cohort.Count);
        SecureRoundSetup? secure = null;
        if (protection.DeviceKeys is not null)
        {
            // The aggregator checks round keys the way the vehicles will: against the device CA when the fleet has one.
            var registry = protection.CreateDeviceKeyRegistry(cohort, roster.DeviceCa);
            var parameters = protection.CreateSecAggParameters(pipeline, plan.Round, cohort.Count, SecAggSession.Id(plan.Fleet, signedPlan));
            secure = new SecureRoundSetup(parameters, registry, Math.Max(1, Environment.ProcessorCount), protection.MaliciousAggregator ? signingKey : null);
        }
        var codec = protection.ForRound(pipeline, plan.Round);
        // Charged at the σ equivalent of the noise the vehicles actually add (the distributed discrete Gaussian), as vehicles
        // do, and as the cohort pre-check asked of each ledger (EligibilityCharge).
        var rules = Rules(options, protection) with { ChargedNoiseMultiplier = ParticipationCharge(protection, pipeline, plan.Round)?.NoiseMultiplier };
        return (new RoundSetup
        {
            Round = plan.Round,
            Cohort = cohort,
            Global = model.Parameters,
            Strategy = strategy,
            Codec = codec,
            Rules = rules,
            Deadline = DateTimeOffset.FromUnixTimeMilliseconds(plan.DeadlineUnixMs),
            CentralNoise = rules.Privacy == NoiseMode.Central ? random.CentralNoise(plan.Round) : null,
            Secure = secure,
        }, pipeline.ModulusBits);
    }
}
