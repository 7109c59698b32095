namespace FleetLearn.Transport.Mqtt.Broker;

/// <summary>
/// Debian's Mosquitto as a broker network: one central broker and regional ones bridged to it by broker-config/bridge.conf,
/// each with the shipped mosquitto.conf and acl (the central one also with broker-config/acl-bridge per region), all on one
/// device CA from make-dev-ca.sh (clients, the aggregator and one bridge-{region} identity per region). Region r is named
/// "r{r}". <see cref="SkipReason"/> as for <see cref="MosquittoBroker"/>.
/// </summary>
public sealed class MosquittoNetwork : IAsyncDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("fleetlearn-mosquitto-net-");
    private readonly List<MosquittoBroker> _brokers = [];

    private MosquittoNetwork()
    {
    }

    /// <summary>Why the network cannot run here (tests skip), or null.</summary>
    public string? SkipReason { get; private set; }

    /// <summary>The broker the aggregator connects to.</summary>
    public MosquittoBroker Central => _brokers[0];

    /// <summary>The regional brokers vehicles connect to.</summary>
    public IReadOnlyList<MosquittoBroker> Regional => _brokers[1..];

    /// <summary>Folder of ca.crt and every identity's .crt/.key.</summary>
    public string Certificates => Path.Combine(_dir.FullName, "certs");

    /// <summary>Starts the central broker, then <paramref name="regions"/> regional ones bridged to it.</summary>
    public static Task<MosquittoNetwork> StartAsync(int regions, params string[] clients) => StartAsync(regions, 0, clients);

    /// <summary>The same with <paramref name="shards"/> aggregator shards on the central broker: their certificates (aggregator-shard-{i}) and broker-config/acl-shard lines.</summary>
    public static async Task<MosquittoNetwork> StartAsync(int regions, int shards, params string[] clients)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(regions, 1);
        var network = new MosquittoNetwork();
        if (MosquittoBroker.Unavailable() is { } why)
        {
            network.SkipReason = why;
            return network;
        }
        string repo = MosquittoBroker.RepositoryRoot();
        var names = Enumerable.Range(0, regions).Select(r => $"r{r}").ToArray();
        var shardNames = Enumerable.Range(0, shards).Select(s => s.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        await MosquittoBroker.MakeCertificatesAsync(network.Certificates, [.. clients, .. names.Select(n => $"bridge-{n}"), .. shardNames.Select(s => $"aggregator-shard-{s}")]);
        string aclTemplate = File.ReadAllText(Path.Combine(repo, "broker-config", "acl-bridge"));
        string shardTemplate = File.ReadAllText(Path.Combine(repo, "broker-config", "acl-shard"));
        network._brokers.Add(await MosquittoBroker.StartSharedAsync(network.Certificates,
            string.Concat(names.Select(n => aclTemplate.Replace("REGION", n) + "\n")) + string.Concat(shardNames.Select(s => shardTemplate.Replace("SHARD", s) + "\n")), ""));
        string bridgeTemplate = File.ReadAllText(Path.Combine(repo, "broker-config", "bridge.conf"));
        foreach (var name in names)
        {
            // bridge.conf as shipped, with the central broker's loopback port and the certificates' folder filled in.
            string bridge = bridgeTemplate.Replace("CENTRAL:8883", $"127.0.0.1:{network.Central.Port}").Replace("REGION", name).Replace("certs/", network.Certificates + "/");
            network._brokers.Add(await MosquittoBroker.StartSharedAsync(network.Certificates, "", "\n" + bridge));
        }
        return network;
    }

    public async ValueTask DisposeAsync()
    {
        for (int i = _brokers.Count - 1; i >= 0; i--) await _brokers[i].DisposeAsync();
        _dir.Delete(recursive: true);
    }
}
