using FleetLearn.Compute;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Model;
using FleetLearn.Core.Numerics;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Random;
using FleetLearn.Core.Training;

namespace FleetLearn.Simulation;

/// <summary>What the malicious vehicles of a <see cref="PoisoningAudit"/> run do.</summary>
public enum PoisoningAttack
{
    /// <summary>No attacker (the reference run of each defence).</summary>
    None,

    /// <summary>Model replacement (Bagdasaryan et al. 2020): train on backdoored data, send γ·Δ with γ = 10.</summary>
    Boost10,

    /// <summary>Model replacement with γ = 100.</summary>
    Boost100,

    /// <summary>Train honestly, send −Δ.</summary>
    SignFlip,

    /// <summary>Train on labels y → 9 − y.</summary>
    LabelFlip,

    /// <summary>Send N(0, σ²) per coordinate instead of an update.</summary>
    GaussianNoise,

    /// <summary>Data poisoning only (BadNets, Gu et al. 2017): train on backdoored data, send Δ unscaled.</summary>
    PixelBackdoor,
}

/// <summary>How the server combines a round's plaintext updates in a <see cref="PoisoningAudit"/> run.</summary>
public enum PoisoningDefence
{
    /// <summary>Sample-weighted mean (McMahan et al. 2017).</summary>
    FedAvg,

    /// <summary>Each Δ scaled to ‖Δ‖ ≤ M, then the weighted mean (Sun et al. 2019).</summary>
    NormBounding,

    /// <summary>Coordinate-wise median (Yin et al. 2018).</summary>
    Median,

    /// <summary>Coordinate-wise β-trimmed mean (Yin et al. 2018).</summary>
    TrimmedMean,

    /// <summary>Multi-Krum (Blanchard et al. 2017).</summary>
    MultiKrum,

    /// <summary>Norm bounding at M plus Gaussian noise N(0, (zM/K)²) on the mean of K updates ("weak DP", Sun et al. 2019).</summary>
    NormBoundingDp,
}

/// <summary>Settings of <see cref="PoisoningAudit"/>; the defaults are the configuration of docs/robustness.md.</summary>
public sealed record PoisoningAuditOptions
{
    /// <summary>Model architecture.</summary>
    public ModelSpec Model { get; init; } = ModelSpec.Parse("784-32-10");

    /// <summary>Vehicles in the fleet; the malicious ones are round(fraction · Vehicles), at least one.</summary>
    public int Vehicles { get; init; } = 100;

    /// <summary>Training rows per vehicle (IID split of Fashion-MNIST's training set).</summary>
    public int RowsPerVehicle { get; init; } = 120;

    /// <summary>Vehicles drawn per round (the same seeded draw in every run, so runs differ only by attack and defence).</summary>
    public int Cohort { get; init; } = 20;

    /// <summary>Rounds per run.</summary>
    public int Rounds { get; init; } = 20;

    /// <summary>Local epochs E.</summary>
    public int LocalEpochs { get; init; } = 2;

    /// <summary>Local batch size B.</summary>
    public int Batch { get; init; } = 20;

    /// <summary>Client learning rate.</summary>
    public float LearningRate { get; init; } = 0.1f;

    /// <summary>Test rows for clean accuracy and backdoor success.</summary>
    public int TestRows { get; init; } = 2000;

    /// <summary>Seed of the split, the malicious set, the cohorts, data order and noise.</summary>
    public ulong Seed { get; init; } = 1;

    /// <summary>Attacks to run (each at every fraction, against every defence).</summary>
    public IReadOnlyList<PoisoningAttack> Attacks { get; init; } = [.. Enum.GetValues<PoisoningAttack>().Where(a => a != PoisoningAttack.None)];

    /// <summary>Fractions of malicious vehicles.</summary>
    public IReadOnlyList<double> Fractions { get; init; } = [0.01, 0.05, 0.20];

    /// <summary>Defences to run.</summary>
    public IReadOnlyList<PoisoningDefence> Defences { get; init; } = Enum.GetValues<PoisoningDefence>();

    /// <summary>M of norm bounding (and the DP clip); null = the median ‖Δ‖ of the honest updates of the first clean round.</summary>
    public double? NormBound { get; init; }

    /// <summary>z of <see cref="PoisoningDefence.NormBoundingDp"/>: noise N(0, (zM/K)²) per coordinate of the mean.</summary>
    public double NoiseMultiplier { get; init; } = 0.2;

    /// <summary>β of the trimmed mean and of multi-Krum (f = ⌊βK⌋): the share of updates each may discard.</summary>
    public double RobustFraction { get; init; } = 0.2;

    /// <summary>σ per coordinate of <see cref="PoisoningAttack.GaussianNoise"/>.</summary>
    public double AttackNoiseStdDev { get; init; } = 0.1;

    /// <summary>Label the backdoor trigger should produce.</summary>
    public int BackdoorTarget { get; init; }

    /// <summary>Share of a backdooring vehicle's rows that carry the trigger and the target label.</summary>
    public double PoisonedShare { get; init; } = 0.5;

    /// <summary>Runs in parallel (one trainer each); 0 = the processor count.</summary>
    public int Threads { get; init; } = 1;

    /// <summary>Throws <see cref="ArgumentException"/> naming the first invalid setting.</summary>
    public void Validate()
    {
        if (Vehicles < 2) throw new ArgumentException("--vehicles must be at least 2.");
        if (RowsPerVehicle < 1) throw new ArgumentException("--rows-per-vehicle must be at least 1.");
        if (Cohort < 1 || Cohort > Vehicles) throw new ArgumentException($"--cohort must be within 1..{Vehicles} (the fleet).");
        if (Rounds < 1) throw new ArgumentException("--rounds must be at least 1.");
        if (LocalEpochs < 1 || Batch < 1) throw new ArgumentException("--epochs and --batch must be at least 1.");
        if (!(LearningRate > 0) || !float.IsFinite(LearningRate)) throw new ArgumentException("--lr must be positive.");
        if (TestRows < 1) throw new ArgumentException("--test-rows must be at least 1.");
        if (Fractions.Any(f => !(f > 0 && f < 0.5))) throw new ArgumentException("--fractions must each be within (0, 0.5): a majority of attackers is beyond every defence here.");
        if (NormBound is { } m && !(m > 0 && double.IsFinite(m))) throw new ArgumentException("--norm-bound must be a positive number.");
        if (!(NoiseMultiplier >= 0) || double.IsInfinity(NoiseMultiplier)) throw new ArgumentException("--noise-multiplier must be ≥ 0.");
        if (!(RobustFraction >= 0 && RobustFraction < 0.5)) throw new ArgumentException("--robust-fraction must be within [0, 0.5).");
        if (BackdoorTarget < 0 || BackdoorTarget >= Model.OutputSize) throw new ArgumentException($"--backdoor-target must be a class of the model (0..{Model.OutputSize - 1}).");
        if (!(PoisonedShare > 0 && PoisonedShare <= 1)) throw new ArgumentException("--poisoned-share must be within (0, 1].");
        if (!(AttackNoiseStdDev > 0)) throw new ArgumentException("--attack-noise must be positive.");
        if (Threads < 0) throw new ArgumentException("--threads must be ≥ 0.");
    }
}

/// <summary>One cell of the table: an attack at a fraction against a defence.</summary>
public sealed record PoisoningResult(
    string Attack, double Fraction, int MaliciousVehicles, string Defence, double CleanAccuracy, double BackdoorSuccess,
    double NoAttackCleanAccuracy, double NoAttackBackdoorSuccess)
{
    /// <summary>Clean accuracy lost to the attack under this defence, in percentage points.</summary>
    public double AccuracyDropPoints => (NoAttackCleanAccuracy - CleanAccuracy) * 100;
}

/// <summary>The whole audit: the no-attack reference of each defence and every cell.</summary>
public sealed record PoisoningReport(PoisoningAuditOptions Options, double NormBound, IReadOnlyList<PoisoningResult> Baselines, IReadOnlyList<PoisoningResult> Results);

/// <summary>
/// The poisoning audit (<c>fleetlearn audit poisoning</c>): plaintext federated rounds with Core's trainer and
/// aggregators on Fashion-MNIST, where a fraction of vehicles attacks and the server defends; reports clean accuracy
/// and the success rate of a pixel-pattern backdoor (a 4×4 white square in the bottom-right corner turning any item
/// into <see cref="PoisoningAuditOptions.BackdoorTarget"/>) for every attack × fraction × defence.
/// </summary>
public sealed class PoisoningAudit(PoisoningAuditOptions options, LabeledData train, LabeledData test)
{
    private const int TriggerSize = 4;

    /// <summary>Runs every configuration; <paramref name="progress"/> gets one line per finished run.</summary>
    public PoisoningReport Run(Action<string>? progress = null, CancellationToken cancellationToken = default)
    {
        options.Validate();
        if (options.Model.InputSize != train.FeatureSize) throw new ArgumentException($"Model {options.Model} needs {train.FeatureSize} inputs.");
        if ((long)options.Vehicles * options.RowsPerVehicle > train.Count)
            throw new ArgumentException($"{options.Vehicles} vehicles × {options.RowsPerVehicle} rows exceed the {train.Count} training rows.");
        var order = Enumerable.Range(0, train.Count).ToArray();
        DeterministicRandom.Derive(options.Seed, 0x5917).Shuffle(order.AsSpan());
        var partitions = Enumerable.Range(0, options.Vehicles).Select(v => order.AsSpan(v * options.RowsPerVehicle, options.RowsPerVehicle).ToArray()).ToArray();
        var testSet = test.Take(Math.Min(options.TestRows, test.Count));
        var triggered = Triggered(testSet);
        var initial = ModelInitializer.Initialize(options.Model, options.Seed);
        double bound = options.NormBound ?? CalibrateBound(partitions, initial);

        var configurations = new List<(PoisoningAttack Attack, double Fraction, PoisoningDefence Defence)>();
        foreach (var defence in options.Defences) configurations.Add((PoisoningAttack.None, 0, defence));
        foreach (var attack in options.Attacks.Where(a => a != PoisoningAttack.None))
            foreach (var fraction in options.Fractions)
                foreach (var defence in options.Defences) configurations.Add((attack, fraction, defence));
        var outcomes = new (double Clean, double Backdoor, int Malicious)[configurations.Count];
        int threads = options.Threads == 0 ? Environment.ProcessorCount : options.Threads;
        Parallel.For(0, configurations.Count, new ParallelOptions { MaxDegreeOfParallelism = threads, CancellationToken = cancellationToken }, () => TrainerFactory.Create(BackendChoice.Cpu, options.Model, options.Batch), (i, _, trainer) =>
        {
            var (attack, fraction, defence) = configurations[i];
            outcomes[i] = RunOne(trainer, attack, fraction, defence, partitions, initial, bound, testSet, triggered);
            progress?.Invoke(FormattableString.Invariant($"{Name(attack)} {fraction:P0} vs {Name(defence)}: clean accuracy {outcomes[i].Clean:P1}, backdoor success {outcomes[i].Backdoor:P1}"));
            return trainer;
        }, trainer => trainer.Dispose());

        var baselines = new Dictionary<PoisoningDefence, (double Clean, double Backdoor)>();
        var baselineResults = new List<PoisoningResult>();
        var results = new List<PoisoningResult>();
        for (int i = 0; i < configurations.Count; i++)
        {
            var (attack, fraction, defence) = configurations[i];
            if (attack == PoisoningAttack.None)
            {
                baselines[defence] = (outcomes[i].Clean, outcomes[i].Backdoor);
                baselineResults.Add(new PoisoningResult(Name(attack), 0, 0, Name(defence), outcomes[i].Clean, outcomes[i].Backdoor, outcomes[i].Clean, outcomes[i].Backdoor));
            }
        }
        for (int i = 0; i < configurations.Count; i++)
        {
            var (attack, fraction, defence) = configurations[i];
            if (attack == PoisoningAttack.None) continue;
            var (clean, backdoor) = baselines[defence];
            results.Add(new PoisoningResult(Name(attack), fraction, outcomes[i].Malicious, Name(defence), outcomes[i].Clean, outcomes[i].Backdoor, clean, backdoor));
        }
        return new PoisoningReport(options, bound, baselineResults, results);
    }

    /// <summary>The short names used in the table and the JSON.</summary>
    public static string Name(PoisoningAttack attack) => attack switch
    {
        PoisoningAttack.None => "none",
        PoisoningAttack.Boost10 => "boost×10",
        PoisoningAttack.Boost100 => "boost×100",
        PoisoningAttack.SignFlip => "sign-flip",
        PoisoningAttack.LabelFlip => "label-flip",
        PoisoningAttack.GaussianNoise => "gaussian",
        PoisoningAttack.PixelBackdoor => "backdoor",
        _ => throw new ArgumentOutOfRangeException(nameof(attack)),
    };

    /// <summary>The short names used in the table and the JSON.</summary>
    public static string Name(PoisoningDefence defence) => defence switch
    {
        PoisoningDefence.FedAvg => "fedavg",
        PoisoningDefence.NormBounding => "normbound",
        PoisoningDefence.Median => "median",
        PoisoningDefence.TrimmedMean => "trimmed",
        PoisoningDefence.MultiKrum => "multikrum",
        PoisoningDefence.NormBoundingDp => "normbound+dp",
        _ => throw new ArgumentOutOfRangeException(nameof(defence)),
    };

    /// <summary>Parses a name of <see cref="Name(PoisoningAttack)"/> (also the enum name, any case).</summary>
    public static PoisoningAttack ParseAttack(string text) =>
        Enum.GetValues<PoisoningAttack>().FirstOrDefault(a => string.Equals(Name(a), text, StringComparison.OrdinalIgnoreCase) || string.Equals(a.ToString(), text, StringComparison.OrdinalIgnoreCase),
            (PoisoningAttack)(-1)) is var a && Enum.IsDefined(a) ? a
            : throw new ArgumentException($"Unknown attack '{text}'; use one of {string.Join(", ", Enum.GetValues<PoisoningAttack>().Select(Name))}.");

    /// <summary>Parses a name of <see cref="Name(PoisoningDefence)"/> (also the enum name, any case).</summary>
    public static PoisoningDefence ParseDefence(string text) =>
        Enum.GetValues<PoisoningDefence>().FirstOrDefault(d => string.Equals(Name(d), text, StringComparison.OrdinalIgnoreCase) || string.Equals(d.ToString(), text, StringComparison.OrdinalIgnoreCase),
            (PoisoningDefence)(-1)) is var d && Enum.IsDefined(d) ? d
            : throw new ArgumentException($"Unknown defence '{text}'; use one of {string.Join(", ", Enum.GetValues<PoisoningDefence>().Select(Name))}.");

    private (double Clean, double Backdoor, int Malicious) RunOne(ITrainer trainer, PoisoningAttack attack, double fraction, PoisoningDefence defence,
        int[][] partitions, float[] initial, double bound, LabeledData testSet, LabeledData triggered)
    {
        int d = options.Model.ParameterCount;
        int maliciousCount = attack == PoisoningAttack.None ? 0 : Math.Max(1, (int)Math.Round(fraction * options.Vehicles));
        var fleet = Enumerable.Range(0, options.Vehicles).ToArray();
        DeterministicRandom.Derive(options.Seed, 0xBAD).Shuffle(fleet.AsSpan());
        var malicious = fleet.Take(maliciousCount).ToHashSet();
        var poisoned = new Dictionary<int, LabeledData>();
        foreach (int v in malicious)
        {
            if (attack is PoisoningAttack.Boost10 or PoisoningAttack.Boost100 or PoisoningAttack.PixelBackdoor) poisoned[v] = Backdoored(partitions[v], v);
            else if (attack == PoisoningAttack.LabelFlip) poisoned[v] = LabelFlipped(partitions[v]);
        }
        var global = (float[])initial.Clone();
        var deltas = new float[options.Cohort][];
        for (int k = 0; k < deltas.Length; k++) deltas[k] = new float[d];
        var combined = new float[d];
        for (int round = 1; round <= options.Rounds; round++)
        {
            var cohort = Cohort(round);
            for (int k = 0; k < cohort.Length; k++)
            {
                int v = cohort[k];
                var delta = deltas[k];
                bool bad = malicious.Contains(v);
                if (bad && attack == PoisoningAttack.GaussianNoise)
                {
                    var rng = DeterministicRandom.Derive(options.Seed, 0x6A55, ((ulong)(uint)round << 32) | (uint)v);
                    for (int c = 0; c < d; c++) delta[c] = (float)(rng.NextGaussian() * options.AttackNoiseStdDev);
                    continue;
                }
                if (bad && poisoned.TryGetValue(v, out var data)) Train(trainer, global, data, Enumerable.Range(0, data.Count).ToArray(), round, v, delta);
                else Train(trainer, global, train, partitions[v], round, v, delta);
                if (!bad) continue;
                float scale = attack switch
                {
                    PoisoningAttack.Boost10 => 10,
                    PoisoningAttack.Boost100 => 100,
                    PoisoningAttack.SignFlip => -1,
                    _ => 1,
                };
                if (scale != 1) VectorMath.Scale(delta, scale);
            }
            Combine(defence, deltas.AsSpan(0, cohort.Length), bound, round, combined);
            VectorMath.Axpy(1f, combined, global);
        }
        trainer.LoadParameters(global);
        double clean = trainer.Evaluate(testSet).Accuracy;
        double backdoor = triggered.Count == 0 ? 0 : trainer.Evaluate(triggered).Accuracy;
        return (clean, backdoor, maliciousCount);
    }

    private void Combine(PoisoningDefence defence, ReadOnlySpan<float[]> deltas, double bound, int round, float[] combined)
    {
        int d = combined.Length;
        IUpdateAggregator aggregator = defence switch
        {
            PoisoningDefence.FedAvg => new WeightedMeanAggregator(d),
            PoisoningDefence.NormBounding or PoisoningDefence.NormBoundingDp => new WeightedMeanAggregator(d, bound),
            PoisoningDefence.Median => new CoordinateWiseAggregator(d, trim: null),
            PoisoningDefence.TrimmedMean => new CoordinateWiseAggregator(d, options.RobustFraction),
            PoisoningDefence.MultiKrum => new MultiKrumAggregator(d, options.RobustFraction),
            _ => throw new ArgumentOutOfRangeException(nameof(defence)),
        };
        // Equal partitions: every vehicle reports the same sample count, so the weights are equal (weights are the subject
        // of Aggregator:WeightCap, not of this audit).
        foreach (var delta in deltas) aggregator.Add(delta, options.RowsPerVehicle);
        aggregator.Complete(combined);
        if (defence == PoisoningDefence.NormBoundingDp && options.NoiseMultiplier > 0)
        {
            // Central Gaussian noise on the mean of K updates each bounded by M: std zM/K per coordinate. Seeded so that the
            // audit is reproducible; a deployment draws DP noise from a cryptographically secure source.
            var source = new SeededNoiseSource(DeterministicRandom.Derive(options.Seed, 0xD9, (ulong)round).NextUInt64());
            GaussianNoise.Add(combined, options.NoiseMultiplier * bound / deltas.Length, source);
        }
    }

    private void Train(ITrainer trainer, float[] global, LabeledData data, int[] rows, int round, int vehicle, float[] delta)
    {
        rows = (int[])rows.Clone(); // RunEpoch shuffles in place: the shared partition must stay as split, or runs would depend on each other
        trainer.LoadParameters(global);
        var rng = DeterministicRandom.Derive(options.Seed, 0xDA7A, ((ulong)(uint)round << 32) | (uint)vehicle);
        var sgd = new SgdOptions(options.LearningRate);
        var schedule = new LearningRateSchedule.Constant(options.LearningRate);
        long step = 0;
        for (int e = 0; e < options.LocalEpochs; e++) TrainingLoop.RunEpoch(trainer, data, rows, options.Batch, sgd, schedule, ref step, 0, rng);
        trainer.ReadParameters(delta);
        VectorMath.Subtract(delta, global, delta);
    }

    private int[] Cohort(int round)
    {
        var all = Enumerable.Range(0, options.Vehicles).ToArray();
        DeterministicRandom.Derive(options.Seed, 0xC0C0, (ulong)round).Shuffle(all.AsSpan());
        return [.. all.Take(options.Cohort).Order()];
    }

    /// <summary>M = the median ‖Δ‖ of the honest updates of round 1 from the initial model (a clean pilot round).</summary>
    private double CalibrateBound(int[][] partitions, float[] initial)
    {
        using var trainer = TrainerFactory.Create(BackendChoice.Cpu, options.Model, options.Batch);
        var delta = new float[options.Model.ParameterCount];
        var norms = Cohort(1).Select(v =>
        {
            Train(trainer, initial, train, partitions[v], 1, v, delta);
            return VectorMath.Norm(delta);
        }).Order().ToArray();
        return norms[norms.Length / 2];
    }

    /// <summary>The vehicle's rows, a seeded <see cref="PoisoningAuditOptions.PoisonedShare"/> of them stamped and relabeled to the target.</summary>
    private LabeledData Backdoored(int[] rows, int vehicle)
    {
        var (features, labels) = Copy(rows);
        var rng = DeterministicRandom.Derive(options.Seed, 0xB4CD, (ulong)vehicle);
        for (int i = 0; i < rows.Length; i++)
        {
            if (rng.NextDouble() >= options.PoisonedShare) continue;
            Stamp(features.AsSpan(i * train.FeatureSize, train.FeatureSize));
            labels[i] = (byte)options.BackdoorTarget;
        }
        return new LabeledData(features, labels, train.FeatureSize, train.ClassCount, "backdoored");
    }

    private LabeledData LabelFlipped(int[] rows)
    {
        var (features, labels) = Copy(rows);
        for (int i = 0; i < labels.Length; i++) labels[i] = (byte)(train.ClassCount - 1 - labels[i]);
        return new LabeledData(features, labels, train.FeatureSize, train.ClassCount, "label-flipped");
    }

    private (float[] Features, byte[] Labels) Copy(int[] rows)
    {
        var features = new float[rows.Length * train.FeatureSize];
        var labels = new byte[rows.Length];
        for (int i = 0; i < rows.Length; i++)
        {
            train.Row(rows[i]).CopyTo(features.AsSpan(i * train.FeatureSize, train.FeatureSize));
            labels[i] = train.Labels[rows[i]];
        }
        return (features, labels);
    }

    /// <summary>The test rows of other classes, stamped and labeled with the target: accuracy on it = backdoor success.</summary>
    private LabeledData Triggered(LabeledData testSet)
    {
        var rows = Enumerable.Range(0, testSet.Count).Where(i => testSet.Labels[i] != options.BackdoorTarget).ToArray();
        var features = new float[rows.Length * testSet.FeatureSize];
        for (int i = 0; i < rows.Length; i++)
        {
            var row = features.AsSpan(i * testSet.FeatureSize, testSet.FeatureSize);
            testSet.Row(rows[i]).CopyTo(row);
            Stamp(row);
        }
        return new LabeledData(features, [.. Enumerable.Repeat((byte)options.BackdoorTarget, rows.Length)], testSet.FeatureSize, testSet.ClassCount, "triggered");
    }

    /// <summary>The trigger: a white square in the bottom-right corner of the (square) image, one pixel from the edge.</summary>
    private static void Stamp(Span<float> image)
    {
        int side = (int)Math.Round(Math.Sqrt(image.Length));
        for (int y = side - 1 - TriggerSize; y < side - 1; y++)
            for (int x = side - 1 - TriggerSize; x < side - 1; x++)
                image[y * side + x] = 1f;
    }
}
