using System.Diagnostics;
using System.Security.Cryptography;
using FleetLearn.Aggregator;
using FleetLearn.Compute;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Training;
using FleetLearn.EdgeAgent;
using FleetLearn.Storage;
using FleetLearn.Transport.Mqtt;
using FleetLearn.Transport.Mqtt.Broker;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace FleetLearn.Simulation;

/// <summary>
/// A virtual fleet over real MQTT: every vehicle is a real <see cref="EdgeAgentWorker"/> with its own connection,
/// outbox and LiteDB file, the aggregator is the real <see cref="AggregatorWorker"/>, and the broker is the embedded
/// one (or an external broker). Reports one <see cref="RoundReport"/> per round, evaluated on the test set.
/// </summary>
public sealed class MqttFleetSimulation
{
    /// <summary>Environment variable holding the aggregator's broker password for an external broker.</summary>
    public const string PasswordVariable = "FLEETLEARN_AGGREGATOR_PASSWORD";

    /// <summary>Runs the whole simulation; <paramref name="onRound"/> sees each round as it closes.</summary>
    /// <param name="options">The fleet (DP and dropout models are not wired over MQTT yet: rejected).</param>
    /// <param name="train">Training data, partitioned across the vehicles.</param>
    /// <param name="test">Test data for the per-round evaluation.</param>
    /// <param name="broker"><c>embedded</c> or <c>mqtt://host:port</c>.</param>
    /// <param name="workDirectory">Where the LiteDB files and signing key go.</param>
    /// <param name="onRound">Called once per round.</param>
    /// <param name="logger">Worker logs (null = none).</param>
    /// <param name="cancellationToken">Stops the run.</param>
    public static async Task<List<RoundReport>> RunAsync(SimulationOptions options, LabeledData train, LabeledData test, string broker, string workDirectory,
        Action<RoundReport> onRound, ILoggerFactory? logger = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (options.Privacy is not null) throw new ArgumentException("--transport mqtt does not carry differential privacy yet; use the in-process transport for --dp.");
        if (options.Behavior.Dropout > 0 || options.Behavior.Availability < 1)
            throw new ArgumentException("--transport mqtt: --dropout/--availability are simulated by the in-process transport only; over MQTT vehicles drop for real.");
        logger ??= NullLoggerFactory.Instance;
        Directory.CreateDirectory(workDirectory);
        string password = Convert.ToHexString(RandomNumberGenerator.GetBytes(16));
        EmbeddedBroker? embedded = null;
        string host;
        int port;
        if (broker.Equals("embedded", StringComparison.OrdinalIgnoreCase))
        {
            embedded = new EmbeddedBroker(new EmbeddedBrokerOptions { Port = 0, AggregatorPassword = password }, logger.CreateLogger<EmbeddedBroker>());
            await embedded.StartAsync().ConfigureAwait(false);
            host = "127.0.0.1";
            port = embedded.Port;
        }
        else
        {
            if (!Uri.TryCreate(broker, UriKind.Absolute, out var uri) || uri.Scheme != "mqtt")
                throw new ArgumentException($"--broker '{broker}': expected 'embedded' or mqtt://host:port.");
            host = uri.Host;
            port = uri.IsDefaultPort || uri.Port < 0 ? 1883 : uri.Port;
            password = Environment.GetEnvironmentVariable(PasswordVariable) ?? throw new ArgumentException($"An external broker needs the aggregator's password in ${PasswordVariable}.");
        }
        string fleet = "sim";
        MqttTransportOptions Mqtt(string clientId, string? secret = null) => new()
        {
            Host = host,
            Port = port,
            Fleet = fleet,
            ClientId = clientId,
            Password = secret,
            ReconnectDelay = TimeSpan.FromMilliseconds(200),
            MaxReconnectDelay = TimeSpan.FromSeconds(10),
            MaxInFlight = 64,
        };
        string keyPath = Path.Combine(workDirectory, "aggregator-signing.pem");
        string publicKey;
        using (var signingKey = SigningKeys.LoadOrCreate(keyPath)) publicKey = signingKey.ExportSubjectPublicKeyInfoPem();
        int cohort = options.CohortSize;
        var status = new AggregatorStatus();
        var aggregatorOptions = new AggregatorOptions
        {
            Model = options.Model.ToString(),
            Strategy = options.Strategy,
            ServerLearningRate = options.ServerLearningRate,
            Rounds = options.Rounds,
            CohortSize = cohort,
            MinParticipants = options.MinParticipants ?? cohort,
            RoundTimeout = double.IsFinite(options.DeadlineSeconds) ? TimeSpan.FromSeconds(options.DeadlineSeconds) : TimeSpan.FromMinutes(10),
            CohortWait = TimeSpan.FromSeconds(30),
            LocalEpochs = options.LocalEpochs,
            Batch = options.Batch,
            LearningRate = options.ClientLearningRate,
            Seed = options.Seed,
            DatabasePath = Path.Combine(workDirectory, "aggregator.db"),
            OnnxFolder = Path.Combine(workDirectory, "models-onnx"),
            SigningKeyPath = keyPath,
        };
        var partitions = Partitioner.Split(train.Labels, options.Vehicles, options.Partition, options.Seed);
        var workers = new List<Microsoft.Extensions.Hosting.BackgroundService>();
        var reports = new List<RoundReport>();
        using var evaluator = TrainerFactory.Create(BackendChoice.Cpu, options.Model, 1024);
        var aggregator = new AggregatorWorker(Options.Create(aggregatorOptions), Options.Create(Mqtt("aggregator", password)), status, TimeProvider.System, logger.CreateLogger<AggregatorWorker>());
        try
        {
            await aggregator.StartAsync(cancellationToken).ConfigureAwait(false);
            workers.Add(aggregator);
            for (int v = 0; v < options.Vehicles; v++)
            {
                if (partitions[v].Length == 0) continue; // nothing to contribute: never checks in
                string id = $"vehicle-{v}";
                var agentOptions = new EdgeAgentOptions
                {
                    VehicleId = id,
                    AggregatorPublicKey = publicKey,
                    PinnedModelSpec = options.Model.ToString(),
                    DatabasePath = Path.Combine(workDirectory, "agents", $"{id}.db"),
                    ResendInterval = TimeSpan.FromSeconds(5),
                    Seed = options.Seed,
                };
                var agent = new EdgeAgentWorker(Options.Create(agentOptions), Options.Create(Mqtt(id)), new VehicleDataset(train, partitions[v]), TimeProvider.System, logger.CreateLogger<EdgeAgentWorker>());
                await agent.StartAsync(cancellationToken).ConfigureAwait(false);
                workers.Add(agent);
            }
            long bytesPerModel = 4L * options.Model.ParameterCount;
            var clock = Stopwatch.StartNew();
            while (reports.Count < options.Rounds)
            {
                var closed = await status.Closed.ReadAsync(cancellationToken).ConfigureAwait(false);
                var r = closed.Record;
                double accuracy = double.NaN, loss = double.NaN;
                if (r.Round % options.EvaluateEvery == 0 || reports.Count + 1 == options.Rounds)
                {
                    evaluator.LoadParameters(closed.Model);
                    var eval = evaluator.Evaluate(test);
                    accuracy = eval.Accuracy;
                    loss = eval.Loss;
                }
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
                    BytesUp = r.Participants * bytesPerModel,
                    BytesDown = r.CohortSize * bytesPerModel,
                    Seconds = clock.Elapsed.TotalSeconds,
                    Epsilon = double.NaN,
                    MaxVehicleEpsilon = double.NaN,
                    ClipNorm = double.NaN,
                };
                clock.Restart();
                reports.Add(report);
                onRound(report);
            }
            return reports;
        }
        finally
        {
            foreach (var worker in workers)
            {
                await worker.StopAsync(CancellationToken.None).ConfigureAwait(false);
                worker.Dispose();
            }
            if (embedded is not null) await embedded.DisposeAsync().ConfigureAwait(false);
        }
    }
}
