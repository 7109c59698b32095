using System.Diagnostics;
using System.Security.Cryptography;
using FleetLearn.Aggregator;
using FleetLearn.Compute;
using FleetLearn.Core.Compression;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Rounds;
using FleetLearn.Core.Training;
using FleetLearn.EdgeAgent;
using FleetLearn.Storage;
using FleetLearn.Transport.Mqtt;
using FleetLearn.Transport.Mqtt.Broker;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace FleetLearn.Simulation;

/// <summary>Where the simulated fleet's MQTT traffic goes.</summary>
/// <param name="Broker">
/// <c>auto</c> (<see cref="Resolve"/>), <c>embedded</c>, <c>mosquitto</c>, <c>mosquitto-bridged</c>, <c>mqtt://host:port</c> or
/// <c>mqtts://host:port</c>.
/// </param>
/// <param name="CertificateFolder">For <c>mqtts://</c>: a folder from broker-config/make-dev-ca.sh with <c>ca.crt</c>, <c>aggregator.crt/.key</c> and <c>vehicle-{v}.crt/.key</c>.</param>
/// <param name="PhaseTimeout">How long each secure-aggregation phase waits for the cohort (default 2 minutes; large fleets on one machine need more).</param>
public sealed record MqttSimulationBroker(string Broker = "embedded", string? CertificateFolder = null, TimeSpan? PhaseTimeout = null)
{
    /// <summary>
    /// Most vehicles <c>auto</c> puts on the embedded broker. MQTTnet's server checks every subscribed session's subscriptions for
    /// each message it routes, and every vehicle subscribes (its inbox, the round): at 10,000 vehicles that check took most of
    /// the broker process's time and the key phases timed out (docs/scale.md, "Ten thousand agents"). Mosquitto routes through
    /// a subscription tree.
    /// </summary>
    public const int EmbeddedLimit = 2_000;

    /// <summary>
    /// <c>auto</c> made concrete for <paramref name="options"/>: Debian's Mosquitto (<c>mosquitto</c>) above
    /// <see cref="EmbeddedLimit"/> vehicles where it is installed, except with <c>--secagg-malicious</c> (certified device keys
    /// need the embedded broker's device CA); otherwise <c>embedded</c>. Any other choice is kept.
    /// </summary>
    public MqttSimulationBroker Resolve(SimulationOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (!Broker.Equals("auto", StringComparison.OrdinalIgnoreCase)) return this;
        bool large = options.Vehicles > EmbeddedLimit && !options.SecAggMaliciousServer && MosquittoBroker.Unavailable() is null;
        return this with { Broker = large ? "mosquitto" : "embedded" };
    }
}

/// <summary>
/// A virtual fleet over real MQTT: every vehicle is a real <see cref="EdgeAgentWorker"/> with its own connection, outbox,
/// device key and privacy ledger, the aggregator is the real <see cref="AggregatorWorker"/>, and the broker is the embedded
/// one or an external one (plain or mutual TLS). The round's protection — codec, clipping, DP, secure aggregation — runs
/// over the wire exactly as configured in-process, and agents and aggregator draw the simulator's seeded randomness
/// (<see cref="SimulationRandomness"/>), and follow the in-process fleet model as their link (<see cref="SimulatedFleetLink"/>:
/// availability, dropout mid-round, over-selection), so the final model equals the in-process <see cref="FleetSimulator"/>'s
/// bit for bit (with the agents in one process). Agents share one trainer per worker (<see cref="SimulationOptions.Workers"/>),
/// so memory grows with the cores, not with the fleet.
/// </summary>
public static class MqttFleetSimulation
{
    /// <summary>Environment variable holding the aggregator's broker password for an external broker without client certificates.</summary>
    public const string PasswordVariable = "FLEETLEARN_AGGREGATOR_PASSWORD";

    /// <summary>Fleet name used on the broker.</summary>
    public const string Fleet = "sim";

    /// <summary>Vehicle id of simulated vehicle <paramref name="v"/> (also its certificate CN).</summary>
    public static string VehicleName(int v) => FormattableString.Invariant($"vehicle-{v}");

    /// <summary>Runs the whole simulation; <paramref name="onRound"/> sees each round as it closes.</summary>
    /// <param name="options">The fleet (adaptive clipping, telemetry and top-k error feedback are in-process only: rejected).</param>
    /// <param name="train">Training data, partitioned across the vehicles.</param>
    /// <param name="test">Test data for the per-round evaluation.</param>
    /// <param name="broker">Which broker, and certificates for mutual TLS.</param>
    /// <param name="workDirectory">Where the LiteDB files and keys go.</param>
    /// <param name="onRound">Called once per round.</param>
    /// <param name="logger">Worker logs (null = none).</param>
    /// <param name="processes">
    /// OS processes the agents are spread over. 1: every agent in this process, beside the broker and the aggregator. More: this
    /// process keeps the broker and the aggregator only, and <paramref name="startAgentProcess"/> starts that many child processes
    /// for the agents, so a vehicle's blocking file writes never hold up the aggregator's loop and no process holds both the
    /// broker's sockets and a round's files.
    /// </param>
    /// <param name="startAgentProcess">Starts one child process hosting vehicles [from, to) against (host, port); required when <paramref name="processes"/> &gt; 1.</param>
    /// <param name="onProgress">Called every 10 s while a round runs, with what the aggregator is waiting for.</param>
    /// <param name="cancellationToken">Stops the run.</param>
    /// <param name="startShardProcess">With <c>--shards S</c>: starts shard i as an OS process against the central broker (endpoint, aggregator password); null = shard workers in this process.</param>
    public static async Task<MqttSimulationResult> RunAsync(SimulationOptions options, LabeledData train, LabeledData test, MqttSimulationBroker broker, string workDirectory,
        Action<RoundReport> onRound, ILoggerFactory? logger = null, int processes = 1, Func<AgentRange, AgentProcess>? startAgentProcess = null, Action<string>? onProgress = null, CancellationToken cancellationToken = default,
        Func<int, AgentEndpoint, string?, Process>? startShardProcess = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(broker);
        CheckSupported(options);
        if (processes < 1) throw new ArgumentException("--processes must be at least 1.");
        if (processes > 1 && (options.Behavior.Dropout > 0 || options.Behavior.Availability < 1))
            throw new ArgumentException("--transport mqtt: --dropout/--availability are the agents' simulated link, which lives in this process: use --processes 1.");
        if (processes > 1 && startAgentProcess is null) throw new ArgumentException("--processes > 1 needs a way to start agent processes.");
        logger ??= NullLoggerFactory.Instance;
        Directory.CreateDirectory(workDirectory);
        string password = Convert.ToHexString(RandomNumberGenerator.GetBytes(16));
        EmbeddedBroker? embedded = null;
        MosquittoNetwork? network = null;
        MosquittoBroker? mosquitto = null;
        string? vehiclePassword = null;
        broker = broker.Resolve(options);
        var (scheme, host, port) = ParseBroker(broker.Broker);
        string? certificates = broker.CertificateFolder;
        if (scheme == "embedded")
        {
            var brokerOptions = new EmbeddedBrokerOptions { Port = 0, AggregatorPassword = password, AggregatorIdentities = MqttShards.Identities(options.Shards) };
            if (options.SecAggMaliciousServer)
            {
                // Certified device keys: the simulation makes a device CA, and the embedded broker runs mutual TLS with it.
                certificates = Path.Combine(workDirectory, SimulationCertificates.FolderName);
                SimulationCertificates.Write(certificates, Enumerable.Range(0, options.Vehicles).Select(VehicleName));
                (brokerOptions.TlsCertificateFile, brokerOptions.TlsKeyFile, brokerOptions.ClientCaFile) = (Path.Combine(certificates, "broker.crt"), Path.Combine(certificates, "broker.key"), Path.Combine(certificates, "ca.crt"));
                scheme = "mqtts";
            }
            embedded = new EmbeddedBroker(brokerOptions, logger.CreateLogger<EmbeddedBroker>());
            await embedded.StartAsync().ConfigureAwait(false);
            port = embedded.Port;
        }
        else if (scheme == "mosquitto-bridged")
        {
            // Debian's Mosquitto: a central broker (aggregator, shards) and two regional ones bridged to it, mutual TLS throughout.
            network = await MosquittoNetwork.StartAsync(2, options.Shards > 1 ? options.Shards : 0, [.. Enumerable.Range(0, options.Vehicles).Select(VehicleName)]).ConfigureAwait(false);
            if (network.SkipReason is { } why) throw new ArgumentException($"--broker mosquitto-bridged: {why} (scripts/install-deps.sh installs them).");
            (scheme, port, certificates) = ("mqtts", network.Central.Port, network.Certificates);
        }
        else if (scheme == "mosquitto")
        {
            // Debian's Mosquitto, one broker with the shipped rules, passwords instead of certificates (MosquittoBroker.StartWithPasswordsAsync).
            if (MosquittoBroker.Unavailable() is { } why) throw new ArgumentException($"--broker mosquitto: {why} (scripts/install-deps.sh installs them).");
            if (options.SecAggMaliciousServer)
                throw new ArgumentException("--secagg-malicious needs certified device keys: --broker embedded (the simulation makes a device CA) or mosquitto-bridged.");
            vehiclePassword = Convert.ToHexString(RandomNumberGenerator.GetBytes(16));
            var shardAcl = File.ReadAllText(Path.Combine(MosquittoBroker.RepositoryRoot(), "broker-config", "acl-shard"));
            mosquitto = await MosquittoBroker.StartWithPasswordsAsync(
                [.. MqttShards.Identities(options.Shards).Select(id => (id, password)), .. Enumerable.Range(0, options.Vehicles).Select(v => (VehicleName(v), vehiclePassword))],
                string.Concat(Enumerable.Range(0, options.Shards > 1 ? options.Shards : 0).Select(i => shardAcl.Replace("SHARD", i.ToString(System.Globalization.CultureInfo.InvariantCulture)) + "\n"))).ConfigureAwait(false);
            (scheme, port) = ("mqtt", mosquitto.Port);
        }
        else if (scheme == "mqtt")
        {
            if (options.SecAggMaliciousServer)
                throw new ArgumentException("--secagg-malicious needs certified device keys: --broker embedded (the simulation makes a device CA) or mqtts://host:port with --broker-certs DIR (broker-config/make-dev-ca.sh).");
            password = Environment.GetEnvironmentVariable(PasswordVariable) ?? throw new ArgumentException($"An external broker needs the aggregator's password in ${PasswordVariable}.");
        }
        var endpoint = new AgentEndpoint(scheme == "mqtts" ? "mqtts" : "mqtt", host, port, certificates, Path.Combine(workDirectory, "aggregator-signing.pub.pem")) { VehiclePassword = vehiclePassword };
        using (SigningKeys.LoadOrCreate(Path.Combine(workDirectory, "aggregator-signing.pem"))) { }

        var partitions = Partitioner.Split(train.Labels, options.Vehicles, options.Partition, options.Seed);
        var status = new AggregatorStatus();
        var aggregatorOptions = AggregatorOptionsFor(options, partitions, workDirectory);
        if (broker.PhaseTimeout is { } phase) aggregatorOptions.PhaseTimeout = phase;
        // Vehicles with an mTLS identity check every key of a secure plan against the device CA, so the aggregator lists
        // their certificates (it checks them at check-in against the same CA).
        if (endpoint.Scheme == "mqtts") aggregatorOptions.DeviceCaFile = Path.Combine(certificates!, "ca.crt");
        var randomness = new AggregatorRandomness(round => SimulationRandomness.CentralNoise(options.Seed, round), round => SimulationRandomness.SecAggSeed(options.Seed, round))
        {
            ShardSecAggSeed = (round, shard) => SimulationRandomness.ShardSecAggSeed(options.Seed, round, shard),
        };
        // With every agent in this process, the fleet model of the in-process simulator is their link (SimulatedFleetLink): the
        // same vehicles are available, selected, silent and folded in the same order, and a phase nobody else will answer is
        // skipped to its deadline on the aggregator's clock. Agents in other processes run without it.
        var aggregatorClock = new SkippingClock();
        // Agents in other processes: round 1 opens once every agent process has started its agents (a fleet is up before its
        // rounds run; while thousands of agents still open their files and connect, they and round 1 share the same two cores).
        var fleetUp = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        if (processes > 1) aggregatorOptions.CohortWait = FleetStartTimeout;
        await using var link = processes == 1 ? new SimulatedFleetLink(options, partitions, status, aggregatorClock, aggregatorOptions.RoundTimeout, aggregatorOptions.PhaseTimeout) : null;
        // That clock runs ahead of the vehicles' by every skipped wait: not a vehicle's clock being off, so not reported as one.
        if (link is not null) aggregatorOptions.ClockSkewTolerance = TimeSpan.FromDays(365);
        var aggregator = new AggregatorWorker(Options.Create(aggregatorOptions), Options.Create(endpoint.Mqtt("aggregator", scheme == "mqtts" ? null : password)), status, aggregatorClock,
            logger.CreateLogger<AggregatorWorker>(), null, randomness, link?.Gate ?? (processes > 1 ? FleetUpGate(fleetUp.Task, aggregatorOptions) : null));
        var reports = new List<RoundReport>();
        var children = new List<AgentProcess>();
        using var evaluator = TrainerFactory.Create(BackendChoice.Cpu, options.Model, 1024);
        AgentHost? agents = null, secondRegion = null;
        // --shards S: S shard workers with their own connections take the round traffic; the aggregator above coordinates them.
        var shards = await MqttShards.StartAsync(options.Shards, () => MqttShards.ForEndpoint(AggregatorOptionsFor(options, partitions, workDirectory), endpoint),
            endpoint, scheme == "mqtts" ? null : password, workDirectory, logger, startShardProcess, cancellationToken).ConfigureAwait(false);
        try
        {
            await aggregator.StartAsync(cancellationToken).ConfigureAwait(false);
            if (processes > 1)
            {
                // Bridged: the agent processes take turns between the two regional brokers (each sees the central one through its bridge).
                int perProcess = (options.Vehicles + processes - 1) / processes;
                for (int p = 0; p < processes; p++)
                {
                    var range = new AgentRange(p * perProcess, Math.Min(options.Vehicles, (p + 1) * perProcess), network is null ? endpoint : endpoint with { Port = network.Regional[p % 2].Port });
                    if (range.From < range.To) children.Add(startAgentProcess!(range));
                }
                var fleetStart = Stopwatch.StartNew();
                var allStarted = Task.WhenAll(children.Select(c => c.Started));
                var anyExit = Task.WhenAny(children.Select(c => c.Process.WaitForExitAsync(cancellationToken)));
                while (!allStarted.IsCompleted && !anyExit.IsCompleted && fleetStart.Elapsed < FleetStartTimeout)
                {
                    await Task.WhenAny(allStarted, anyExit, Task.Delay(TimeSpan.FromSeconds(10), cancellationToken)).ConfigureAwait(false);
                    if (!allStarted.IsCompleted)
                        onProgress?.Invoke(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                            $"  … fleet starting: {children.Count(c => c.Started.IsCompleted)} of {children.Count} agent processes up, {status.CheckedIn:N0} vehicles checked in ({fleetStart.Elapsed.TotalSeconds:F0} s)"));
                }
                if (!allStarted.IsCompleted)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    throw new InvalidOperationException(children.FirstOrDefault(c => c.Process.HasExited) is { } dead
                        ? $"An agent process (pid {dead.Process.Id}) exited with code {dead.Process.ExitCode} before its agents started."
                        : $"The agent processes did not start their agents within {FleetStartTimeout.TotalMinutes:F0} minutes.");
                }
                int fleet = (await allStarted.ConfigureAwait(false)).Sum();
                onProgress?.Invoke(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                    $"fleet: {fleet:N0} agents started in {children.Count} processes in {fleetStart.Elapsed.TotalSeconds:F1} s; round 1 opens now"));
                fleetUp.TrySetResult();
            }
            else
            {
                // Bridged: the vehicles split between the two regional brokers.
                int split = network is null ? options.Vehicles : options.Vehicles / 2;
                agents = await AgentHost.StartAsync(options, train, partitions, new AgentRange(0, split, network is null ? endpoint : endpoint with { Port = network.Regional[0].Port }), workDirectory, logger, cancellationToken, link).ConfigureAwait(false);
                if (network is not null) secondRegion = await AgentHost.StartAsync(options, train, partitions, new AgentRange(split, options.Vehicles, endpoint with { Port = network.Regional[1].Port }), workDirectory, logger, cancellationToken, link).ConfigureAwait(false);
            }

            var clock = Stopwatch.StartNew();
            double chargedSigma = ChargedSigma(aggregatorOptions, options); // the same every round: computed once
            long bytesUp = 0, bytesDown = 0;
            int applied = 0;
            while (reports.Count < options.Rounds)
            {
                using var watch = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                var closedTask = status.Closed.ReadAsync(watch.Token).AsTask();
                var childExit = children.Count == 0 ? Task.Delay(Timeout.Infinite, watch.Token) : Task.WhenAny(children.Select(c => c.Process.WaitForExitAsync(watch.Token)));
                // Progress every 10 s while a round runs: what the aggregator is waiting for.
                while (!closedTask.IsCompleted && !childExit.IsCompleted)
                {
                    if (await Task.WhenAny(closedTask, childExit, Task.Delay(TimeSpan.FromSeconds(10), watch.Token)).ConfigureAwait(false) is var done && (done == closedTask || done == childExit)) break;
                    onProgress?.Invoke(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"  … {status.Activity} ({clock.Elapsed.TotalSeconds:F0} s; {ScaleProbe.Line(status)})"));
                }
                if (await Task.WhenAny(closedTask, childExit).ConfigureAwait(false) != closedTask)
                {
                    cancellationToken.ThrowIfCancellationRequested(); // stopped (a signal), not an agent process that died
                    var dead = children.First(c => c.Process.HasExited).Process;
                    throw new InvalidOperationException($"An agent process (pid {dead.Id}) exited with code {dead.ExitCode} during round {reports.Count + 1}.");
                }
                await watch.CancelAsync().ConfigureAwait(false);
                var closed = await closedTask.ConfigureAwait(false);
                var r = closed.Record;
                double accuracy = double.NaN, loss = double.NaN;
                if (r.Round % options.EvaluateEvery == 0 || reports.Count + 1 == options.Rounds)
                {
                    evaluator.LoadParameters(closed.Model);
                    var eval = evaluator.Evaluate(test);
                    accuracy = eval.Accuracy;
                    loss = eval.Loss;
                }
                if (r.Status == RoundStatus.Applied && options.Privacy is not null) applied++;
                long up = status.BytesUp - bytesUp, down = status.BytesDown - bytesDown;
                bytesUp = status.BytesUp;
                bytesDown = status.BytesDown;
                var report = new RoundReport
                {
                    Round = (int)r.Round,
                    TestAccuracy = accuracy,
                    TestLoss = loss,
                    TrainLoss = r.TrainLoss,
                    Available = status.CheckedIn,
                    Selected = r.CohortSize,
                    Participants = r.Participants,
                    Dropped = r.CohortSize - r.Participants,
                    Applied = r.Status == RoundStatus.Applied,
                    BytesUp = up,
                    BytesDown = down,
                    BytesUpPerVehicle = r.CohortSize == 0 ? 0 : up / r.CohortSize,
                    AbortReason = r.Status == RoundStatus.Aborted ? r.Note : null,
                    Seconds = clock.Elapsed.TotalSeconds,
                    Epsilon = options.Privacy is { } dp ? (applied == 0 ? 0 : RdpAccountant.GetEpsilon(Math.Min(1.0, (double)options.CohortSize / options.Vehicles), chargedSigma, applied, dp.Delta).Epsilon) : double.NaN,
                    MaxVehicleEpsilon = status.MaxVehicleEpsilon,
                    ClipNorm = options.Privacy?.ClipNorm ?? double.NaN,
                };
                clock.Restart();
                reports.Add(report);
                onRound(report);
            }
            // The aggregator answers late messages of the last round before it reports done; then every outbox should be empty.
            await status.Done.Task.WaitAsync(TimeSpan.FromSeconds(30), cancellationToken).ConfigureAwait(false);
            // Each process's own peak, read while the agent processes still run.
            long?[] childPeaks = [.. children.Select(c => ProcessMemory.PeakResidentBytes(c.Process.Id))];
            // The agents' outboxes empty while the aggregator still answers: the child processes wait for theirs and report what is left.
            foreach (var region in new[] { agents, secondRegion }.OfType<AgentHost>()) await region.WaitForEmptyOutboxesAsync(TimeSpan.FromSeconds(10), cancellationToken).ConfigureAwait(false);
            await Task.WhenAll(children.Select(c => c.StopAsync(TimeSpan.FromSeconds(30)))).ConfigureAwait(false);
            foreach (var silent in children.Where(c => c.PendingInOutboxes is null))
                onProgress?.Invoke($"agent process {silent.Process.Id} did not report its outboxes; what they hold is not counted below.");
            await aggregator.StopAsync(CancellationToken.None).ConfigureAwait(false);
            int pending = (agents?.PendingInOutboxes ?? 0) + (secondRegion?.PendingInOutboxes ?? 0) + children.Sum(c => c.PendingInOutboxes ?? 0);
            return new MqttSimulationResult(reports, LatestModel(aggregatorOptions.DatabasePath), pending,
                new[] { agents, secondRegion }.OfType<AgentHost>().SelectMany(h => h.EpsilonByVehicle).ToDictionary(), link?.SecAggMessagesSent)
            {
                PeakResidentBytes = ProcessMemory.PeakResidentBytes(Environment.ProcessId),
                AgentProcessPeakResidentBytes = childPeaks.All(p => p is not null) ? [.. childPeaks.Select(p => p!.Value)] : null,
                BrokerPeakResidentBytes = mosquitto?.ProcessId is { } brokerPid ? ProcessMemory.PeakResidentBytes(brokerPid) : null,
            };
        }
        finally
        {
            await aggregator.StopAsync(CancellationToken.None).ConfigureAwait(false);
            aggregator.Dispose();
            if (agents is not null) await agents.DisposeAsync().ConfigureAwait(false);
            if (secondRegion is not null) await secondRegion.DisposeAsync().ConfigureAwait(false);
            foreach (var child in children) child.Dispose(); // killed if still running
            await shards.DisposeAsync().ConfigureAwait(false); // before the brokers go
            if (embedded is not null) await embedded.DisposeAsync().ConfigureAwait(false);
            if (network is not null) await network.DisposeAsync().ConfigureAwait(false);
            if (mosquitto is not null) await mosquitto.DisposeAsync().ConfigureAwait(false);
        }
    }

    private static float[] LatestModel(string databasePath)
    {
        using var store = LiteDbRoundStore.Open(databasePath);
        return store.LatestModel()?.Parameters ?? [];
    }

    /// <summary>Rejects what only the in-process simulator models.</summary>
    public static void CheckSupported(SimulationOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (options.Privacy is { AdaptiveClip: true })
            throw new ArgumentException("--transport mqtt does not carry adaptive clipping yet (the clipped-count round trip); use a fixed --clip or the in-process transport.");
        if (options.TelemetryEpsilon is not null)
            throw new ArgumentException("--transport mqtt does not carry the randomized-response telemetry yet; use the in-process transport for --telemetry-epsilon.");
        if (options.Codec.ErrorFeedback)
            throw new ArgumentException("--transport mqtt does not keep top-k error-feedback residuals on the agents yet; use a dense codec (rot, sub, q) or the in-process transport.");
        if (options.Shards > 1 && options.Privacy?.Mode == NoiseMode.Distributed)
            throw new ArgumentException("--transport mqtt --shards runs plain secure aggregation and central DP; distributed DP sized per shard runs in process only (docs/scale.md, \"Sharded aggregation\").");
    }

    /// <summary>Longest the agent processes may take to start their agents.</summary>
    public static readonly TimeSpan FleetStartTimeout = TimeSpan.FromMinutes(10);

    /// <summary>Round 1 waits for the whole fleet to be up, then for the selection as usual.</summary>
    private static CohortGate FleetUpGate(Task fleetUp, AggregatorOptions options)
    {
        int selection = CohortSelection.SelectionSize(options.CohortSize, options.OverSelection);
        return (_, candidates) => fleetUp.IsCompleted && candidates.Count >= selection;
    }

    private static (string Scheme, string Host, int Port) ParseBroker(string broker)
    {
        if (broker.Equals("embedded", StringComparison.OrdinalIgnoreCase)) return ("embedded", "127.0.0.1", 0);
        if (broker.Equals("mosquitto-bridged", StringComparison.OrdinalIgnoreCase)) return ("mosquitto-bridged", "127.0.0.1", 0);
        if (broker.Equals("mosquitto", StringComparison.OrdinalIgnoreCase)) return ("mosquitto", "127.0.0.1", 0);
        if (!Uri.TryCreate(broker, UriKind.Absolute, out var uri) || uri.Scheme is not ("mqtt" or "mqtts"))
            throw new ArgumentException($"--broker '{broker}': expected 'auto', 'embedded', 'mosquitto', 'mosquitto-bridged', mqtt://host:port or mqtts://host:port.");
        return (uri.Scheme, uri.Host, uri.IsDefaultPort || uri.Port < 0 ? (uri.Scheme == "mqtts" ? 8883 : 1883) : uri.Port);
    }

    /// <summary>
    /// The σ the aggregator's and the vehicles' ledgers charge per release under these settings: the discrete Gaussian's σ
    /// equivalent where the codec adds one (<see cref="RoundRules.ChargeFor"/>), else σ. The fleet's sampled ε uses the same.
    /// </summary>
    private static double ChargedSigma(AggregatorOptions aggregator, SimulationOptions options)
    {
        var protection = AggregatorProtection.Describe(aggregator, options.CohortSize, 1);
        var codec = protection.ForRound(protection.CreatePipeline(options.Model.ParameterCount, options.CohortSize), 1);
        return RoundRules.ChargeFor(codec, protection.MinNoiseShares, protection.NoiseMultiplier, protection.NoiseMultiplier) ?? protection.NoiseMultiplier;
    }

    /// <summary>The aggregator settings that reproduce <paramref name="options"/>'s rounds.</summary>
    public static AggregatorOptions AggregatorOptionsFor(SimulationOptions options, int[][] partitions, string workDirectory)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(partitions);
        int cohort = options.CohortSize;
        return new AggregatorOptions
        {
            Model = options.Model.ToString(),
            Strategy = options.Strategy,
            ServerLearningRate = options.ServerLearningRate,
            Rounds = options.Rounds,
            CohortSize = cohort,
            OverSelection = options.OverSelection,
            MinParticipants = options.EffectiveMinParticipants,
            RoundTimeout = double.IsFinite(options.DeadlineSeconds) ? TimeSpan.FromSeconds(options.DeadlineSeconds) : TimeSpan.FromMinutes(10),
            CohortWait = TimeSpan.FromSeconds(60),
            PhaseTimeout = TimeSpan.FromMinutes(2),
            LocalEpochs = options.LocalEpochs,
            Batch = options.Batch,
            LearningRate = options.ClientLearningRate,
            Seed = options.Seed,
            Init = options.Init.ToString().ToLowerInvariant(),
            Codec = options.Codec.ToString(),
            SecureAggregation = RoundProtection.Text(options.SecureAggregation),
            SecAggNeighbors = options.SecAggNeighbors,
            SecAggModulusBits = options.SecAggModulusBits,
            ClipNorm = options.Privacy?.ClipNorm ?? options.NormBound,
            Privacy = RoundProtection.Text(options.Privacy?.Mode) ?? "off",
            NoiseMultiplier = options.Privacy?.NoiseMultiplier ?? 1,
            Delta = options.Privacy?.Delta ?? 1e-5,
            EpsilonBudget = options.Privacy?.EpsilonBudget,
            MaxWeight = options.MaxWeight(partitions.Max(p => p.Length)),
            WeightCap = options.WeightCap,
            DatabasePath = Path.Combine(workDirectory, "aggregator.db"),
            PrivacyLedgerPath = Path.Combine(workDirectory, "aggregator-privacy.db"),
            OnnxFolder = Path.Combine(workDirectory, "models-onnx"),
            SigningKeyPath = Path.Combine(workDirectory, "aggregator-signing.pem"),
            SecAggMaliciousServer = options.SecAggMaliciousServer,
            Shards = options.Shards,
        };
    }
}

/// <summary>What an MQTT simulation produced.</summary>
/// <param name="Rounds">One report per round.</param>
/// <param name="FinalModel">The aggregator's newest model (from its LiteDB store).</param>
/// <param name="PendingInOutboxes">Messages still unacknowledged in the agents' outboxes at the end (0 when every ack landed), those of agent processes as they reported them.</param>
/// <param name="EpsilonByVehicle">ε each of this process's vehicles recorded in its own ledger.</param>
/// <param name="SecAggMessagesSent">Secure-aggregation messages this process's agents sent, by type name (null with agents in several processes).</param>
public sealed record MqttSimulationResult(List<RoundReport> Rounds, float[] FinalModel, int PendingInOutboxes, IReadOnlyDictionary<string, double> EpsilonByVehicle,
    IReadOnlyDictionary<string, int>? SecAggMessagesSent = null)
{
    /// <summary>This process's peak resident memory (broker, aggregator and its own agents), bytes; null where unknown.</summary>
    public long? PeakResidentBytes { get; init; }

    /// <summary>Each agent process's (<c>--processes</c>) own peak resident memory, bytes; null where unknown.</summary>
    public IReadOnlyList<long>? AgentProcessPeakResidentBytes { get; init; }

    /// <summary>The Mosquitto process's peak resident memory (<c>--broker mosquitto</c>), bytes; null for a broker in this process or elsewhere.</summary>
    public long? BrokerPeakResidentBytes { get; init; }

    /// <summary>
    /// The sum of every process's own peak: an upper bound of their total resident memory at any one moment (each peak may
    /// fall at another time); null where a peak is unknown.
    /// </summary>
    public long? PeakResidentBytesAllProcesses => PeakResidentBytes is { } own && AgentProcessPeakResidentBytes is { } children ? own + children.Sum() + (BrokerPeakResidentBytes ?? 0) : null;
}

/// <summary>How agents reach the broker and the aggregator's public key.</summary>
/// <param name="Scheme"><c>mqtt</c> or <c>mqtts</c>.</param>
/// <param name="Host">Broker host.</param>
/// <param name="Port">Broker port.</param>
/// <param name="CertificateFolder">Client certificates (mqtts).</param>
/// <param name="AggregatorPublicKey">PEM file of the plan-signing key.</param>
public sealed record AgentEndpoint(string Scheme, string Host, int Port, string? CertificateFolder, string AggregatorPublicKey)
{
    /// <summary>The environment variable that hands <see cref="VehiclePassword"/> to agent processes (never a command-line argument).</summary>
    public const string VehiclePasswordVariable = "FLEETLEARN_SIM_VEHICLE_PASSWORD";

    /// <summary>The password vehicles log in with on a broker with a password file (<c>--broker mosquitto</c>); null: none.</summary>
    public string? VehiclePassword { get; init; }

    /// <summary>MQTT settings of client <paramref name="clientId"/>.</summary>
    public MqttTransportOptions Mqtt(string clientId, string? password = null)
    {
        bool tls = Scheme == "mqtts";
        if (tls && CertificateFolder is null) throw new ArgumentException("mqtts:// needs a certificate folder (broker-config/make-dev-ca.sh output).");
        return new MqttTransportOptions
        {
            Host = Host,
            Port = Port,
            Fleet = MqttFleetSimulation.Fleet,
            ClientId = clientId,
            Password = tls ? null : password ?? VehiclePassword,
            ReconnectDelay = TimeSpan.FromMilliseconds(200),
            MaxReconnectDelay = TimeSpan.FromSeconds(10),
            MaxInFlight = 64,
            UseTls = tls,
            CaFile = tls ? Path.Combine(CertificateFolder!, "ca.crt") : null,
            CertFile = tls ? Path.Combine(CertificateFolder!, $"{clientId}.crt") : null,
            KeyFile = tls ? Path.Combine(CertificateFolder!, $"{clientId}.key") : null,
        };
    }
}

/// <summary>How a driven simulation shapes one agent instead of <see cref="AgentHost"/>'s defaults (the FedBuff trace run: <c>Traces/FedBuffMqttSimulation</c>).</summary>
/// <param name="Monitor">The vehicle's state, set by the simulation (the agent checks in when it changes).</param>
/// <param name="Randomness">The agent's randomness.</param>
/// <param name="Link">The agent's simulated link.</param>
/// <param name="ResendInterval">The agent's resend and check-in interval.</param>
public sealed record AgentShape(VehicleStateMonitor Monitor, AgentRandomness Randomness, IAgentLink Link, TimeSpan ResendInterval);

/// <summary>Vehicles [<paramref name="From"/>, <paramref name="To"/>) of a simulated fleet and where they connect.</summary>
public sealed record AgentRange(int From, int To, AgentEndpoint Endpoint);
