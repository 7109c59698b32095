using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using FleetLearn.Compute;
using FleetLearn.Core.Compression;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Model;
using FleetLearn.Core.Privacy;
using FleetLearn.Perception.Datasets;
using FleetLearn.Simulation;

namespace FleetLearn.Cli.Commands;

/// <summary><c>fleetlearn simulate</c>: a virtual fleet on one machine with the real training and aggregation code.</summary>
internal static class SimulateCommand
{
    public static Command Create()
    {
        var vehicles = new Option<int>("--vehicles") { Description = "Vehicles in the fleet.", DefaultValueFactory = _ => 100 };
        var fraction = new Option<double>("--fraction") { Description = "Fraction of the fleet wanted per round (C).", DefaultValueFactory = _ => 0.1 };
        var cohort = new Option<int?>("--cohort") { Description = "Updates wanted per round (K); overrides --fraction." };
        var rounds = new Option<int>("--rounds") { Description = "Rounds.", DefaultValueFactory = _ => 20 };
        var epochs = new Option<int>("--local-epochs") { Description = "Local epochs per round (E).", DefaultValueFactory = _ => 5 };
        var batch = new Option<int>("--batch") { Description = "Local batch size (B).", DefaultValueFactory = _ => 10 };
        var lr = new Option<float>("--lr") { Description = "Client learning rate.", DefaultValueFactory = _ => 0.05f };
        var momentum = new Option<float>("--client-momentum") { Description = "Client SGD momentum.", DefaultValueFactory = _ => 0f };
        var serverLr = new Option<float?>("--server-lr") { Description = "Server learning rate (default: the strategy's)." };
        var strategy = new Option<string>("--strategy") { Description = "fedavg | fedavgm[:β] | fedprox:μ | fedadam | fedyogi | fedadagrad | median | trimmed:β | normbound:M | multikrum:β.", DefaultValueFactory = _ => "fedavg" };
        var weightCap = new Option<double?>("--weight-cap") { Description = "Cap on a vehicle's aggregation weight (its sample count)." };
        var partition = new Option<string>("--partition") { Description = "iid | shards | dirichlet:α.", DefaultValueFactory = _ => "iid" };
        var availability = new Option<double>("--availability") { Description = "Probability a vehicle is eligible in a round.", DefaultValueFactory = _ => 1.0 };
        var dropout = new Option<double>("--dropout") { Description = "Probability a selected vehicle drops out mid-round.", DefaultValueFactory = _ => 0.0 };
        var overSelect = new Option<double>("--over-select") { Description = "Extra fraction selected to absorb dropouts (0.3 = 130%).", DefaultValueFactory = _ => 0.0 };
        var minParticipants = new Option<int?>("--min-participants") { Description = "Fewer updates and the round fails (model unchanged)." };
        var deadline = new Option<double?>("--deadline") { Description = "Round deadline in simulated seconds (stragglers miss it)." };
        var model = new Option<string?>("--model") { Description = "Layer widths (default 784-200-200-10; with --backbone F-200-200-10, F = the backbone's feature width, which an explicit --model must start with)." };
        var init = new Option<string>("--init") { Description = "Initial weights: he (default) or uniform (PyTorch's nn.Linear default, for like-for-like comparisons).", DefaultValueFactory = _ => "he" };
        var seed = new Option<ulong>("--seed") { Description = "Seed of everything random.", DefaultValueFactory = _ => 1UL };
        var target = new Option<double>("--target") { Description = "Accuracy target for rounds_to_target.", DefaultValueFactory = _ => 0.85 };
        var workers = new Option<int>("--workers") { Description = "Vehicles trained in parallel (results do not depend on it).", DefaultValueFactory = _ => Environment.ProcessorCount };
        var backend = new Option<string>("--backend") { Description = "auto (a GPU when there is one, else cpu) | cpu | ilgpu (alias gpu: CUDA or OpenCL through ILGPU) | ilgpu-cpu.", DefaultValueFactory = _ => "auto" };
        var evalEvery = new Option<int>("--eval-every") { Description = "Evaluate on the test set every N rounds.", DefaultValueFactory = _ => 1 };
        var histograms = new Option<bool>("--histograms") { Description = "Print each vehicle's label histogram (first 20 vehicles)." };
        var dp = new Option<string>("--dp") { Description = "Differential privacy: off | central (aggregator adds noise) | distributed (vehicles add shares).", DefaultValueFactory = _ => "off" };
        var clip = new Option<string>("--clip") { Description = "L2 clip norm C, or 'adaptive' (tracks the median update norm, Andrew et al. 2021).", DefaultValueFactory = _ => "1.0" };
        var noise = new Option<double>("--noise-multiplier") { Description = "Noise multiplier σ (sum carries N(0, σ²C²)).", DefaultValueFactory = _ => 1.0 };
        var delta = new Option<double>("--delta") { Description = "δ of the reported (ε, δ).", DefaultValueFactory = _ => 1e-5 };
        var budget = new Option<double?>("--epsilon-budget") { Description = "Per-vehicle ε budget; a vehicle that would exceed it declines." };
        var telemetry = new Option<double?>("--telemetry-epsilon") { Description = "Each participant reports a seen class by k-ary randomized response with this ε." };
        var codec = new Option<string>("--codec") { Description = "Update codec: none | q{b} | rot+q{b} | sub{p}+rot+q{b} | topk{p}+ef+q{b} [+deflate|+brotli] [+shared] (docs/compression.md).", DefaultValueFactory = _ => "none" };
        var secagg = new Option<string>("--secagg") { Description = "Secure aggregation: off | full (SecAgg) | plus[:k] (SecAgg+, k neighbours). Needs a clip norm: --clip is the norm bound when --dp is off.", DefaultValueFactory = _ => "off" };
        var secaggMalicious = new Option<bool>("--secagg-malicious") { Description = "Run secure aggregation as against a malicious aggregator: device keys certified by a (simulated) device CA, ConsistencyCheck round, signed SecAgg downlink; with --transport mqtt the embedded broker runs mutual TLS with that CA and every agent requires the mode." };
        var secaggBits = new Option<int?>("--secagg-bits") { Description = "Modulus bits m of the secure sum (default: the smallest that holds the cohort's sum)." };
        var efMemory = new Option<int>("--ef-memory-mb") { Description = "Memory budget for top-k error-feedback residuals (4 bytes × parameters per vehicle holding one; least recently used dropped beyond it).", DefaultValueFactory = _ => 2048 };
        var data = new Option<string?>("--data") { Description = "Fashion-MNIST folder." };
        var output = new Option<string?>("--out") { Description = "Folder for rounds.csv, charts, report.html and the final model (checked before the run starts)." };
        var replaceOut = new Option<bool>("--replace-out") { Description = "Replace a previous run's results in --out (removed only once the options and data are accepted)." };
        var json = new Option<bool>("--json") { Description = "One JSON object per round on stdout, then a summary object." };
        var backbone = new BackboneCli("--backbone", "Train on features of the Fashion-MNIST frames from this backbone: 'generated' or an ONNX file (default: raw pixels).");
        var subset = new Option<string?>("--subset") { Description = "TRAIN[:TEST]: use the first TRAIN training and TEST test frames (default TEST = TRAIN/6), e.g. 6000:1000 where a large backbone on few cores would take too long for all 70,000." };
        var featureCache = new Option<string?>("--feature-cache") { Description = "Folder of the feature store (each frame extracted once across runs)." };
        var transport = new Option<string>("--transport") { Description = "inproc (default) | mqtt: every vehicle a real edge agent with its own MQTT connection, the real aggregator, a real broker.", DefaultValueFactory = _ => "inproc" };
        var broker = new Option<string>("--broker") { Description = "With --transport mqtt: auto (default: embedded, or mosquitto above 2,000 vehicles where Debian's Mosquitto is installed) | embedded (MQTTnet in this process) | mosquitto (Debian's Mosquitto on a loopback port, the shipped rules with passwords) | mosquitto-bridged (Debian's Mosquitto: 2 regional brokers bridged to a central one on loopback ports, mutual TLS; the vehicles split between the regions, aggregator and --shards on the central one) | mqtt://host:port (aggregator password in $FLEETLEARN_AGGREGATOR_PASSWORD) | mqtts://host:port (mutual TLS, --broker-certs).", DefaultValueFactory = _ => "auto" };
        var brokerCerts = new Option<string?>("--broker-certs") { Description = "With --broker mqtts://…: folder from broker-config/make-dev-ca.sh (ca.crt, aggregator.crt/.key, vehicle-{v}.crt/.key)." };
        var phaseTimeout = new Option<double>("--phase-timeout") { Description = "With --transport mqtt: seconds each secure-aggregation phase waits for the cohort.", DefaultValueFactory = _ => 120 };
        var agentRange = new Option<string?>(SimulateMqttCommand.AgentRangeOption) { Hidden = true, Description = "Internal: this process hosts vehicles FROM:TO:SCHEME://HOST:PORT of a --processes run." };
        var agentWork = new Option<string?>("--agent-work") { Hidden = true, Description = "Internal: the parent's work folder." };
        var shardProcess = new Option<string?>(SimulateMqttCommand.ShardProcessOption) { Hidden = true, Description = "Internal: this process is aggregator shard I:SCHEME://HOST:PORT of a --shards run over MQTT." };
        var shardKill = new Option<string[]>("--shard-kill") { Description = "ROUND:SHARD (repeatable), a fault test: that shard dies in that round — in process after ShareKeys; over MQTT its process kills itself once its vehicles' masked inputs are in, before it hands its partial sum on." };
        var verboseWorkers = new Option<bool>("--verbose-workers") { Description = "With --transport mqtt: log the agents', aggregator's and broker's events to stderr." };
        var shards = new Option<int>("--shards") { Description = "Aggregator shards, each owning a part of the cohort (its own plain or secure sum); a combiner adds their partial sums and releases (docs/scale.md).", DefaultValueFactory = _ => 1 };
        var processes = new Option<int>("--processes") { Description = "With --transport mqtt: OS processes the agents are spread over (this one included).", DefaultValueFactory = _ => 1 };

        var command = new Command("simulate", "Simulate a fleet training the perception head with federated learning. With no options: 100 vehicles, 10 per round, 20 rounds in process (about 10 s on 2 cores).")
        {
            vehicles, fraction, cohort, rounds, epochs, batch, lr, momentum, serverLr, strategy, weightCap, partition, availability, dropout,
            overSelect, minParticipants, deadline, model, init, seed, target, workers, backend, evalEvery, histograms, dp, clip, noise, delta, budget, telemetry,
            codec, secagg, secaggMalicious, secaggBits, efMemory, data, output, replaceOut, json, featureCache, subset, transport, broker, brokerCerts, processes, shards, shardKill, shardProcess, verboseWorkers, phaseTimeout, agentRange, agentWork,
        };
        foreach (var o in backbone.All) command.Options.Add(o);
        var traceRun = new TraceSimulateCommand();
        foreach (var o in traceRun.All) command.Options.Add(o);
        command.SetAction(async (parse, cancellationToken) =>
        {
            bool asJson = parse.GetValue(json);
            // Progress goes to stderr with --json so that stdout stays one JSON object per line.
            var progress = asJson ? parse.InvocationConfiguration.Error : parse.InvocationConfiguration.Output;
            using var backboneModel = backbone.IsSet(parse) ? backbone.Open(parse, progress.WriteLine) : null;
            var privacySettings = ParsePrivacy(parse.GetValue(dp)!, parse.GetValue(clip)!, parse.GetValue(noise), parse.GetValue(delta), parse.GetValue(budget));
            var codecSpec = CodecSpec.Parse(parse.GetValue(codec)!);
            var (secureMode, neighbors) = ParseSecAgg(parse.GetValue(secagg)!);
            var options = new SimulationOptions
            {
                Vehicles = parse.GetValue(vehicles),
                Fraction = parse.GetValue(fraction),
                Cohort = parse.GetValue(cohort),
                Rounds = parse.GetValue(rounds),
                LocalEpochs = parse.GetValue(epochs),
                Batch = parse.GetValue(batch),
                ClientLearningRate = parse.GetValue(lr),
                ClientMomentum = parse.GetValue(momentum),
                ServerLearningRate = parse.GetValue(serverLr),
                Strategy = parse.GetValue(strategy)!,
                WeightCap = parse.GetValue(weightCap),
                Partition = PartitionScheme.Parse(parse.GetValue(partition)!),
                Behavior = new FleetBehavior(parse.GetValue(availability), parse.GetValue(dropout)),
                OverSelection = parse.GetValue(overSelect),
                MinParticipants = parse.GetValue(minParticipants),
                DeadlineSeconds = parse.GetValue(deadline) ?? double.PositiveInfinity,
                Model = ResolveModel(parse.GetValue(model), backboneModel),
                Init = ModelInitializer.ParseScheme(parse.GetValue(init)!),
                Seed = parse.GetValue(seed),
                Target = parse.GetValue(target),
                Workers = parse.GetValue(workers),
                EvaluateEvery = parse.GetValue(evalEvery),
                Privacy = privacySettings,
                TelemetryEpsilon = parse.GetValue(telemetry),
                Codec = codecSpec,
                SecureAggregation = secureMode,
                SecAggNeighbors = neighbors,
                SecAggMaliciousServer = parse.GetValue(secaggMalicious),
                SecAggModulusBits = parse.GetValue(secaggBits),
                ErrorFeedbackMemoryBytes = (long)parse.GetValue(efMemory) << 20,
                Shards = parse.GetValue(shards),
                ShardKills = [.. (parse.GetValue(shardKill) ?? []).Select(SimulateMqttCommand.ParseShardKill)],
                NormBound = privacySettings is null && (secureMode != SecureAggregationMode.Off || codecSpec.SharedRange) ? ParseNormBound(parse.GetValue(clip)!) : null,
            };
            options.Validate();
            if (options.Shards > 1 && traceRun.IsSet(parse)) throw new ArgumentException("--shards runs in the synchronous simulator; the trace simulations (--trace) do not shard.");
            traceRun.CheckUnused(parse);
            var traced = traceRun.IsSet(parse) ? traceRun.Read(parse, options) : default;
            if (traced.Options is not null) options = traced.Options;
            var backendChoice = TrainerFactory.Parse(parse.GetValue(backend)!);
            string transportName = parse.GetValue(transport)!.Trim().ToLowerInvariant();
            if (transportName is not ("inproc" or "mqtt")) throw new ArgumentException($"--transport '{parse.GetValue(transport)}': expected inproc or mqtt.");
            if (transportName == "mqtt")
            {
                MqttFleetSimulation.CheckSupported(options);
                CheckCertificates(parse.GetValue(broker)!, parse.GetValue(brokerCerts), options.Vehicles);
            }
            bool childProcess = parse.GetValue(agentRange) is not null || parse.GetValue(shardProcess) is not null;
            if (!childProcess) CliOutput.CheckFolder(parse.GetValue(output));
            if (!childProcess && options.Privacy is { } dpSettings
                && DpSignalCheck.Warning(options.CohortSize, dpSettings.NoiseMultiplier, dpSettings.ClipNorm, options.Model.ParameterCount) is { } weak)
                parse.InvocationConfiguration.Error.WriteLine($"simulate: {weak}");

            var (train, test) = CliData.LoadBoth(parse.GetValue(data), parse.InvocationConfiguration.Error);
            if (parse.GetValue(subset) is { } subsetText) (train, test) = Subset(subsetText, train, test, progress);
            if (backboneModel is not null)
                (train, test) = ExtractFeatures(backboneModel, train, test, parse.GetValue(featureCache), progress);
            // Everything the run needs has been accepted: only now may a previous run's results make way.
            if (!childProcess && parse.GetValue(replaceOut) && parse.GetValue(output) is { } previous) CliOutput.ReplaceRun(previous);
            if (traced.Settings is not null)
                return transportName == "inproc" || parse.GetValue(broker) is { } tracedBroker && (tracedBroker.Equals("embedded", StringComparison.OrdinalIgnoreCase) || tracedBroker.Equals("auto", StringComparison.OrdinalIgnoreCase)) && parse.GetValue(processes) == 1
                    ? traceRun.Run(parse, options, traced.Settings, train, test, backendChoice, parse.GetValue(output), asJson, progress, mqtt: transportName == "mqtt")
                    : throw new ArgumentException("--transport mqtt --trace runs on the embedded broker with every agent in this process (the run drives their availability): drop --broker and --processes.");
            switch (transportName)
            {
                case "inproc":
                    break;
                case "mqtt" when parse.GetValue(shardProcess) is { } shard:
                    return await SimulateMqttCommand.RunShardAsync(options, train, shard, parse.GetValue(agentWork) ?? throw new ArgumentException("--agent-work is required with --shard-process."),
                        parse.GetValue(brokerCerts), parse.GetValue(verboseWorkers));
                case "mqtt" when parse.GetValue(agentRange) is { } range:
                    return await SimulateMqttCommand.RunAgentsAsync(options, train, range, parse.GetValue(agentWork) ?? throw new ArgumentException("--agent-work is required with --agent-range."),
                        parse.GetValue(brokerCerts), parse.GetValue(verboseWorkers));
                case "mqtt":
                    return await SimulateMqttCommand.RunAsync(parse, options, train, test, new MqttSimulationBroker(parse.GetValue(broker)!, parse.GetValue(brokerCerts), TimeSpan.FromSeconds(parse.GetValue(phaseTimeout))), parse.GetValue(processes), parse.GetValue(output), asJson, progress, parse.GetValue(verboseWorkers), cancellationToken);
                default:
                    throw new ArgumentException($"--transport '{parse.GetValue(transport)}': expected inproc or mqtt.");
            }
            string? backendLine = null;
            using var simulator = new FleetSimulator(options, train, test,
                (spec, maxBatch) => TrainerFactory.Create(backendChoice, spec, maxBatch, 1, line => backendLine ??= line));
            progress.WriteLine($"simulate: {options.Vehicles:N0} vehicles ({options.Partition}), cohort {options.CohortSize} per round, {options.Rounds} rounds, E={options.LocalEpochs} B={options.Batch} lr={options.ClientLearningRate.ToString(CultureInfo.InvariantCulture)}, strategy {simulator.Strategy.Name}, seed {options.Seed}");
            progress.WriteLine($"{backendLine} × {Math.Min(options.Workers, options.CohortSize)} workers; model {options.Model} ({options.Model.ParameterCount:N0} parameters)");
            var pipeline = simulator.Pipeline;
            progress.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"codec {pipeline.Codec}: {pipeline.KeptCount:N0} coordinates × {(pipeline.QuantizationBits is { } qb ? $"{qb} bits" : "float32")}{(pipeline.IsSecure ? $", secure aggregation {options.SecureAggregation.ToString().ToLowerInvariant()} (m = {pipeline.ModulusBits} bits, {pipeline.SecAggDimension:N0} summed coordinates)" : "")}"));
            if (parse.GetValue(histograms))
                PrintHistograms(progress, simulator.Partitions, train.Labels, train.ClassCount);

            var reports = new List<RoundReport>();
            int? roundsToTarget = null;
            var clock = Stopwatch.StartNew();
            foreach (var report in simulator.Run())
            {
                reports.Add(report);
                if (roundsToTarget is null && report.TestAccuracy >= options.Target) roundsToTarget = report.Round;
                // Two different ε (issue 13 item 7): the fleet figure assumes Poisson sampling at q = cohort/vehicles, which the
                // simulator's fixed-size cohorts from a public seed do not give; the per-vehicle ledger charges q = 1.
                string privacyText = options.Privacy is null ? "" : string.Create(CultureInfo.InvariantCulture, $"  ε {report.Epsilon:F2} (fleet, sampled: assumes secret Poisson sampling)  ε {report.MaxVehicleEpsilon:F2} (per vehicle, q = 1)  C {report.ClipNorm:G3}");
                progress.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"round {report.Round,4}/{options.Rounds}  accuracy {Metric(report.TestAccuracy)}  loss {Metric(report.TestLoss)}  participants {report.Participants,4}/{report.Selected}  dropped {report.Dropped,3}  up {Bytes(report.BytesUp),9} ({Bytes(report.BytesUpPerVehicle)}/vehicle){privacyText}{(report.AbortReason is { } why ? $"  aborted: {why}" : "")}  {report.Seconds:F2} s"));
                if (asJson)
                {
                    CliJson.Write(parse.InvocationConfiguration.Output, new
                    {
                        round = report.Round,
                        test_accuracy = report.TestAccuracy,
                        test_loss = report.TestLoss,
                        train_loss = report.TrainLoss,
                        available = report.Available,
                        selected = report.Selected,
                        participants = report.Participants,
                        dropped = report.Dropped,
                        stragglers = report.Stragglers,
                        applied = report.Applied,
                        bytes_up = report.BytesUp,
                        bytes_up_per_vehicle = report.BytesUpPerVehicle,
                        clamped = report.Clamped,
                        secagg_abort = report.AbortReason,
                        bytes_down = report.BytesDown,
                        seconds = report.Seconds,
                        simulated_seconds = report.SimulatedSeconds,
                        epsilon = Finite(report.Epsilon),
                        max_vehicle_epsilon = Finite(report.MaxVehicleEpsilon),
                        clip_norm = Finite(report.ClipNorm),
                        declined = report.Declined,
                        shards = report.Shards,
                        lost_shards = report.LostShards,
                    });
                }
            }
            double seconds = clock.Elapsed.TotalSeconds;
            var final = reports[^1];
            if (simulator.TelemetryEstimate is { } estimate)
            {
                progress.WriteLine($"label telemetry (k-ary randomized response, ε_LDP = {options.TelemetryEpsilon!.Value.ToString(CultureInfo.InvariantCulture)}), fleet's estimated vs true class distribution:");
                for (int c = 0; c < estimate.True.Length; c++)
                {
                    string name = c < FashionMnist.ClassNames.Count ? FashionMnist.ClassNames[c] : c.ToString(CultureInfo.InvariantCulture);
                    progress.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  {name,-12} estimated {estimate.Estimated[c],7:P1}  true {estimate.True[c],7:P1}"));
                }
            }
            if (parse.GetValue(output) is { } folder)
            {
                var written = SimulationArtifacts.Write(folder, options, simulator, reports, roundsToTarget, seconds);
                progress.WriteLine($"wrote {string.Join(", ", written)}");
            }
            progress.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"done: final accuracy {final.TestAccuracy:F4} after {reports.Count} rounds; {(roundsToTarget is { } r ? $"reached {options.Target:F2} at round {r}" : $"did not reach {options.Target:F2}")}; {Bytes(reports.Sum(x => x.BytesUp))} up, {Bytes(reports.Sum(x => x.BytesDown))} down; {seconds:F1} s"));
            if (asJson)
            {
                CliJson.Write(parse.InvocationConfiguration.Output, new
                {
                    summary = true,
                    final_accuracy = final.TestAccuracy,
                    model_sha256 = Core.Model.Checkpoint.ParameterHash(simulator.GlobalModel),
                    final_loss = final.TestLoss,
                    rounds = reports.Count,
                    seconds,
                    seconds_per_round = seconds / reports.Count,
                    rounds_to_target = roundsToTarget,
                    target = options.Target,
                    bytes_up = reports.Sum(x => x.BytesUp),
                    bytes_up_per_vehicle_per_round = reports.Sum(x => x.Participants) == 0 ? 0 : reports.Sum(x => x.BytesUpPerVehicle * x.Participants) / (double)reports.Sum(x => x.Participants),
                    codec = simulator.Pipeline.Codec.ToString(),
                    secagg = options.SecureAggregation.ToString().ToLowerInvariant(),
                    bytes_down = reports.Sum(x => x.BytesDown),
                    epsilon = Finite(final.Epsilon),
                    max_vehicle_epsilon = Finite(final.MaxVehicleEpsilon),
                    delta = options.Privacy?.Delta,
                    strategy = simulator.Strategy.Name,
                    partition = options.Partition.ToString(),
                    backend = simulator.Backend,
                });
            }
            return 0;
        });
        return command;
    }

    /// <summary>
    /// The head's layer widths: --model when given (with a backbone its input width must be the feature width),
    /// else the 2NN on pixels or F-200-200-10 on a backbone's F features.
    /// </summary>
    private static ModelSpec ResolveModel(string? text, Perception.Onnx.OnnxModel? backbone)
    {
        if (text is null) return backbone is null ? ModelSpec.TwoNN : new ModelSpec([backbone.OutputSize, 200, 200, 10]);
        var spec = ModelSpec.Parse(text);
        if (backbone is not null && spec.InputSize != backbone.OutputSize)
        {
            var suggestion = string.Join("-", new[] { backbone.OutputSize }.Concat(spec.Layers.Skip(1)));
            throw new ArgumentException($"--model {spec} takes {spec.InputSize} inputs but the backbone gives {backbone.OutputSize} features per frame; use --model {suggestion} (or omit --model).");
        }
        return spec;
    }

    /// <summary>Runs every train and test frame through the backbone (once per frame with a feature store).</summary>
    private static (Core.Training.LabeledData Train, Core.Training.LabeledData Test) ExtractFeatures(
        Perception.Onnx.OnnxModel backbone, Core.Training.LabeledData train, Core.Training.LabeledData test, string? cacheFolder, TextWriter progress)
    {
        using var cache = cacheFolder is null ? null
            : Perception.Features.FeatureCache.Open(cacheFolder, Perception.Features.FeatureExtractor.Identity(backbone), backbone.OutputSize, progress.WriteLine);
        using var extractor = new Perception.Features.FeatureExtractor(backbone, cache);
        long total = train.Count + test.Count;
        extractor.Progress = s => progress.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"features: {s.Frames:N0}/{total:N0} frames ({s.Extracted:N0} extracted, {s.FramesPerSecond:N0} frames/s; {s.CacheHits:N0} from the feature store)"));
        progress.WriteLine($"features: running {backbone.Name} over {train.Count + test.Count:N0} frames{(cache is null ? "" : " (the feature store answers those it holds)")} …");
        var clock = Stopwatch.StartNew();
        IReadOnlyList<int> frameShape = [1, 28, 28]; // Fashion-MNIST; converted when the backbone takes other frames (ResNet18: 3x224x224)
        var trainFeatures = extractor.ExtractDataset(train, frameShape);
        var testFeatures = extractor.ExtractDataset(test, frameShape);
        var stats = extractor.Stats;
        progress.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"features: {backbone.Name} [{string.Join("x", backbone.RowShape)}] → {backbone.OutputSize} on {backbone.ExecutionProvider}: {stats.Frames:N0} frames, {stats.Extracted:N0} extracted{(stats.Extracted > 0 ? $" ({stats.FramesPerSecond:N0} frames/s)" : "")}, {stats.CacheHits:N0} from the feature store; {clock.Elapsed.TotalSeconds:F1} s"));
        return (trainFeatures, testFeatures);
    }

    /// <summary>The first rows of each set (Fashion-MNIST's files are not sorted by class), for --subset TRAIN[:TEST].</summary>
    internal static (Core.Training.LabeledData Train, Core.Training.LabeledData Test) Subset(string text, Core.Training.LabeledData train, Core.Training.LabeledData test, TextWriter progress)
    {
        var parts = text.Split(':', StringSplitOptions.TrimEntries);
        if (parts.Length > 2 || !int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out int n) || n < 1
            || (parts.Length == 2 && (!int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out _) || int.Parse(parts[1], CultureInfo.InvariantCulture) < 1)))
            throw new ArgumentException($"--subset '{text}': expected TRAIN or TRAIN:TEST, positive frame counts (e.g. 6000:1000).");
        int m = parts.Length == 2 ? int.Parse(parts[1], CultureInfo.InvariantCulture) : Math.Max(1, n / 6);
        n = Math.Min(n, train.Count);
        m = Math.Min(m, test.Count);
        progress.WriteLine($"subset: the first {n:N0} of {train.Count:N0} training frames and {m:N0} of {test.Count:N0} test frames");
        return (Take(train, n), Take(test, m));

        static Core.Training.LabeledData Take(Core.Training.LabeledData data, int count) =>
            new(data.Features.AsSpan(0, count * data.FeatureSize).ToArray(), data.Labels.AsSpan(0, count).ToArray(), data.FeatureSize, data.ClassCount, $"{data.Name}[..{count}]");
    }

    /// <summary>
    /// With <c>--broker mqtts://…</c>: every certificate the run will present must be in --broker-certs (ca.crt, the
    /// aggregator's and one per vehicle); otherwise a vehicle would never connect and the run would wait for its check-in.
    /// </summary>
    internal static void CheckCertificates(string broker, string? folder, int vehicles)
    {
        if (!broker.Trim().StartsWith("mqtts://", StringComparison.OrdinalIgnoreCase)) return;
        if (string.IsNullOrWhiteSpace(folder))
            throw new ArgumentException("--broker mqtts://… needs --broker-certs DIR (made by: bash broker-config/make-dev-ca.sh DIR aggregator vehicle-0 vehicle-1 …).");
        if (!Directory.Exists(folder)) throw new CliConfigurationException($"--broker-certs '{folder}': no such folder.");
        var missing = new List<string>();
        if (!File.Exists(Path.Combine(folder, "ca.crt"))) missing.Add("ca.crt");
        var ids = new[] { "aggregator" }.Concat(Enumerable.Range(0, vehicles).Select(MqttFleetSimulation.VehicleName));
        var missingIds = new List<string>();
        foreach (var id in ids)
        {
            foreach (var file in new[] { $"{id}.crt", $"{id}.key" })
            {
                string path = Path.Combine(folder, file);
                if (!File.Exists(path))
                {
                    missing.Add(file);
                    if (!missingIds.Contains(id)) missingIds.Add(id);
                }
                else
                {
                    try
                    {
                        using var _ = File.OpenRead(path);
                    }
                    catch (UnauthorizedAccessException)
                    {
                        throw new CliConfigurationException($"--broker-certs '{folder}': {file} is not readable by this user.");
                    }
                }
            }
        }
        if (missing.Count == 0) return;
        string shown = string.Join(", ", missing.Take(6)) + (missing.Count > 6 ? $" and {missing.Count - 6} more" : "");
        throw new CliConfigurationException($"--broker-certs '{folder}' lacks {shown} (--vehicles {vehicles} needs vehicle-0 … vehicle-{vehicles - 1}); "
            + $"add them with: bash broker-config/make-dev-ca.sh {folder} {string.Join(' ', missingIds.Take(20))}{(missingIds.Count > 20 ? " …" : "")}");
    }

    private static (SecureAggregationMode Mode, int? Neighbors) ParseSecAgg(string text)
    {
        var t = text.Trim().ToLowerInvariant();
        if (t is "off" or "none") return (SecureAggregationMode.Off, null);
        if (t == "full") return (SecureAggregationMode.Full, null);
        if (t == "plus") return (SecureAggregationMode.Plus, null);
        if (t.StartsWith("plus:", StringComparison.Ordinal) && int.TryParse(t.AsSpan(5), NumberStyles.None, CultureInfo.InvariantCulture, out int k))
            return (SecureAggregationMode.Plus, k);
        throw new CodecConfigurationException($"--secagg '{text}': expected off, full, plus or plus:k (k even).");
    }

    private static double ParseNormBound(string clip)
    {
        if (!double.TryParse(clip, NumberStyles.Float, CultureInfo.InvariantCulture, out double c) || !(c > 0))
            throw new ArgumentException($"--clip '{clip}': secure aggregation without DP needs a numeric norm bound C (adaptive clipping needs --dp).");
        return c;
    }

    internal static double? Finite(double value) => double.IsFinite(value) ? value : null;

    /// <summary>A metric for the progress line; rounds that were not evaluated show a dash.</summary>
    private static string Metric(double value) => double.IsFinite(value) ? value.ToString("F4", CultureInfo.InvariantCulture) : "   –  ";

    private static PrivacySettings? ParsePrivacy(string mode, string clip, double noise, double delta, double? budget)
    {
        var m = mode.Trim().ToLowerInvariant();
        if (m is "off" or "none")
        {
            if (budget is not null) throw new ArgumentException("--epsilon-budget needs --dp central or distributed.");
            return null;
        }
        var noiseMode = m switch
        {
            "central" => NoiseMode.Central,
            "distributed" => NoiseMode.Distributed,
            _ => throw new ArgumentException($"--dp '{mode}': expected off, central or distributed."),
        };
        bool adaptive = clip.Trim().Equals("adaptive", StringComparison.OrdinalIgnoreCase);
        double clipNorm = 1.0;
        if (!adaptive && !double.TryParse(clip, NumberStyles.Float, CultureInfo.InvariantCulture, out clipNorm))
            throw new ArgumentException($"--clip '{clip}': expected a positive number or 'adaptive'.");
        var settings = new PrivacySettings(noiseMode, clipNorm, adaptive, noise, delta, budget);
        settings.Validate();
        return settings;
    }

    internal static string Bytes(long bytes) => bytes switch
    {
        >= 1L << 30 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 30):F2} GiB"),
        >= 1L << 20 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 20):F1} MiB"),
        >= 1L << 10 => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1024.0:F1} KiB"),
        _ => $"{bytes} B",
    };

    private static void PrintHistograms(TextWriter output, int[][] partitions, byte[] labels, int classes)
    {
        output.WriteLine($"label histograms (vehicle: count per class 0..{classes - 1}):");
        for (int v = 0; v < Math.Min(20, partitions.Length); v++)
        {
            var h = Partitioner.Histogram(labels, partitions[v], classes);
            output.WriteLine($"  vehicle {v,5}: {string.Join(' ', h.Select(c => c.ToString(CultureInfo.InvariantCulture).PadLeft(4)))}  (total {partitions[v].Length})");
        }
        if (partitions.Length > 20) output.WriteLine($"  … {partitions.Length - 20} more vehicles");
    }
}
