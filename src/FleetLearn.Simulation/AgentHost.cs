using FleetLearn.Compute;
using FleetLearn.Core.Training;
using FleetLearn.EdgeAgent;
using FleetLearn.Transport.Mqtt;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace FleetLearn.Simulation;

/// <summary>Hosts a range of simulated vehicles as real agent workers (in this process).</summary>
public sealed class AgentHost : IAsyncDisposable
{
    private readonly List<EdgeAgentWorker> _agents = [];
    private readonly TrainerPool _trainers;
    private readonly HeapGovernor _heap = new(); // hundreds of agents' transient large arrays: collected, not piled up

    private AgentHost(TrainerPool trainers) => _trainers = trainers;

    /// <summary>
    /// Starts one agent per vehicle with data in <paramref name="range"/>; with <paramref name="link"/>, each follows the simulated
    /// fleet model; with <paramref name="shape"/>, each takes its state monitor, randomness, link and resend interval from it instead.
    /// </summary>
    public static async Task<AgentHost> StartAsync(SimulationOptions options, LabeledData train, int[][] partitions, AgentRange range, string workDirectory, ILoggerFactory logger, CancellationToken cancellationToken,
        SimulatedFleetLink? link = null, Func<int, AgentShape>? shape = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(range);
        var host = new AgentHost(new TrainerPool(spec => TrainerFactory.Create(BackendChoice.Cpu, spec, Math.Max(options.Batch, 256)), Math.Max(1, options.Workers)));
        try
        {
            await host.StartAgentsAsync(options, train, partitions, range, workDirectory, logger, link, shape, cancellationToken).ConfigureAwait(false);
            return host;
        }
        catch
        {
            await host.DisposeAsync().ConfigureAwait(false); // the agents started so far stop with their host
            throw;
        }
    }

    private async Task StartAgentsAsync(SimulationOptions options, LabeledData train, int[][] partitions, AgentRange range, string workDirectory, ILoggerFactory logger,
        SimulatedFleetLink? link, Func<int, AgentShape>? shape, CancellationToken cancellationToken)
    {
        string publicKey = await File.ReadAllTextAsync(range.Endpoint.AggregatorPublicKey, cancellationToken).ConfigureAwait(false);
        Directory.CreateDirectory(Path.Combine(workDirectory, "agents"));
        for (int v = range.From; v < range.To; v++)
        {
            if (partitions[v].Length == 0) continue; // nothing to contribute: never checks in
            string id = MqttFleetSimulation.VehicleName(v);
            int vehicle = v;
            var shaped = shape?.Invoke(vehicle);
            var agentOptions = new EdgeAgentOptions
            {
                VehicleId = id,
                AggregatorPublicKey = publicKey,
                PinnedModelSpec = options.Model.ToString(),
                DatabasePath = Path.Combine(workDirectory, "agents", $"{id}.db"),
                PrivacyLedgerPath = Path.Combine(workDirectory, "agents", $"{id}-privacy.db"),
                DeviceKeyPath = Path.Combine(workDirectory, "agents", $"{id}-device.pem"),
                EpsilonBudget = options.Privacy?.EpsilonBudget,
                PrivacyDelta = options.Privacy?.Delta ?? 1e-5,
                // A vehicle checks in on every resend pass; when the model silences vehicles the gate waits for their check-ins.
                ResendInterval = shaped?.ResendInterval ?? (link is not null && SimulatedFleetLink.SilencesVehicles(options) ? TimeSpan.FromSeconds(1) : TimeSpan.FromSeconds(5)),
                // Without the simulated link (agents in several processes) idle vehicles repeat their check-ins at about 300 a
                // second in all: every 5 s up to 1,500 vehicles, every 33 s at 10,000 (docs/scale.md).
                CheckInInterval = link is null && shaped is null ? TimeSpan.FromSeconds(Math.Max(5, options.Vehicles / 300.0)) : null,
                // … and receive only the models of rounds that select them (the broker copies a model to every subscriber).
                ModelsWhenSelected = link is null && shaped is null,
                RequireParked = link is not null || shape is not null, // unavailable = driving (SimulatedFleetLink.StateOf, AgentShape.Monitor)
                RequireMaliciousAggregator = options.SecAggMaliciousServer, // refuses any plan that is not hardened (certified keys, signed downlink)
                Seed = options.Seed,
            };
            var random = new AgentRandomness(
                round => SimulationRandomness.DataOrder(options.Seed, round, vehicle),
                round => SimulationRandomness.Noise(options.Seed, round, vehicle),
                round => SimulationRandomness.Rounding(options.Seed, round, vehicle),
                round => SimulationRandomness.SecAggHolders(options.Seed, round, vehicle));
            var agent = new EdgeAgentWorker(Options.Create(agentOptions), Options.Create(range.Endpoint.Mqtt(id)), new VehicleDataset(train, partitions[v]), TimeProvider.System,
                logger.CreateLogger<EdgeAgentWorker>(), shaped?.Monitor ?? link?.StateOf(v) ?? VehicleStateProviders.Idle, shaped?.Randomness ?? random, _trainers, monitor: shaped?.Monitor, link: (IAgentLink?)shaped?.Link ?? link);
            if (link is not null) agent.Progressed += link.Evaluate;
            cancellationToken.ThrowIfCancellationRequested();
            // Not the caller's token: BackgroundService links its stopping token to it, so a cancelled run would stop and dispose
            // every agent at once, before the host counts what is left in their outboxes. The host's DisposeAsync stops them.
            await agent.StartAsync(CancellationToken.None).ConfigureAwait(false);
            _agents.Add(agent);
            // Without the simulated link (agents in several processes, thousands of them) the agents start in waves: all at once, their
            // store files and connects queued behind each other, connects timed out and retried (docs/scale.md, "Ten thousand agents").
            if (link is null && shape is null && _agents.Count % StartWave == 0) await WaitForConnectedAsync(_agents.Count - StartWave, WaveTimeout, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Agents started before the host waits for them to connect (agents in several processes only).</summary>
    public const int StartWave = 100;

    /// <summary>How long the host waits for a wave to connect before it starts the next one anyway.</summary>
    public static readonly TimeSpan WaveTimeout = TimeSpan.FromSeconds(5);

    /// <summary>Waits until the agents from index <paramref name="from"/> on are connected, or <paramref name="timeout"/> passed.</summary>
    private async Task WaitForConnectedAsync(int from, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var until = DateTime.UtcNow + timeout;
        while (_agents.Skip(from).Any(a => !a.IsConnected) && DateTime.UtcNow < until) await Task.Delay(20, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The agents.</summary>
    public IReadOnlyList<EdgeAgentWorker> Agents => _agents;

    /// <summary>Messages still waiting for an acknowledgement, over all agents.</summary>
    public int PendingInOutboxes => _agents.Sum(a => a.PendingInOutbox);

    /// <summary>ε by vehicle, from each agent's own ledger.</summary>
    public IReadOnlyDictionary<string, double> EpsilonByVehicle => _agents.ToDictionary(a => a.VehicleId, a => a.EpsilonSpent, StringComparer.Ordinal);

    /// <summary>Waits (up to <paramref name="timeout"/>) until every agent's outbox is empty.</summary>
    public async Task WaitForEmptyOutboxesAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        var until = DateTime.UtcNow + timeout;
        while (PendingInOutboxes > 0 && DateTime.UtcNow < until) await Task.Delay(50, cancellationToken).ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var agent in _agents)
        {
            await agent.StopAsync(CancellationToken.None).ConfigureAwait(false);
            agent.Dispose();
        }
        _trainers.Dispose();
        await _heap.DisposeAsync().ConfigureAwait(false);
    }
}
