using FleetLearn.Aggregator;
using FleetLearn.Transport.Mqtt;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace FleetLearn.Simulation;

/// <summary>The aggregator shards of an MQTT simulation with <c>--shards S</c>: each a real <see cref="AggregatorWorker"/> with Aggregator:ShardIndex, its own connection and store.</summary>
public sealed class MqttShards : IAsyncDisposable
{
    private readonly List<AggregatorWorker> _workers = [];
    private readonly List<System.Diagnostics.Process> _processes = [];

    /// <summary>The broker identities of the coordinator and its <paramref name="shards"/> shards (all aggregator identities).</summary>
    public static List<string> Identities(int shards) => ["aggregator", .. Enumerable.Range(0, shards > 1 ? shards : 0).Select(FleetTopics.ShardIdentity)];

    /// <summary>Shard <paramref name="shard"/>'s settings: <paramref name="options"/> (a fresh copy of the coordinator's) with its index, its own store, and the coordinator's public plan key.</summary>
    public static AggregatorOptions ShardOptions(AggregatorOptions options, int shard, string workDirectory)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Shards = 1;
        options.ShardIndex = shard;
        options.DatabasePath = Path.Combine(workDirectory, FormattableString.Invariant($"shard-{shard}.db"));
        options.CoordinatorKeyPath = Path.ChangeExtension(options.SigningKeyPath, ".pub.pem");
        return options;
    }

    /// <summary>The aggregator settings for <paramref name="endpoint"/>: with mutual TLS, vehicles' keys are checked against the device CA (their certificates' issuer).</summary>
    public static AggregatorOptions ForEndpoint(AggregatorOptions options, AgentEndpoint endpoint)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(endpoint);
        if (endpoint.Scheme == "mqtts") options.DeviceCaFile = Path.Combine(endpoint.CertificateFolder!, "ca.crt");
        return options;
    }

    /// <summary>
    /// Starts <paramref name="shards"/> shard workers (none for 1) against the broker <paramref name="endpoint"/> names: as OS
    /// processes through <paramref name="startProcess"/> when given (shard, endpoint, password), else in this process.
    /// </summary>
    public static async Task<MqttShards> StartAsync(int shards, Func<AggregatorOptions> coordinator, AgentEndpoint endpoint, string? password, string workDirectory, ILoggerFactory logger,
        Func<int, AgentEndpoint, string?, System.Diagnostics.Process>? startProcess, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        var started = new MqttShards();
        for (int s = 0; s < (shards > 1 ? shards : 0); s++)
        {
            if (startProcess is not null)
            {
                started._processes.Add(startProcess(s, endpoint, password));
                continue;
            }
            var worker = new AggregatorWorker(Options.Create(ShardOptions(coordinator(), s, workDirectory)), Options.Create(endpoint.Mqtt(FleetTopics.ShardIdentity(s), password)),
                new AggregatorStatus(), TimeProvider.System, logger.CreateLogger<AggregatorWorker>());
            started._workers.Add(worker);
            await worker.StartAsync(cancellationToken).ConfigureAwait(false);
        }
        return started;
    }

    /// <inheritdoc/>
    public async ValueTask DisposeAsync()
    {
        foreach (var process in _processes)
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync().ConfigureAwait(false);
            process.Dispose();
        }
        foreach (var worker in _workers)
        {
            await worker.StopAsync(CancellationToken.None).ConfigureAwait(false);
            worker.Dispose();
        }
    }
}
