using FleetLearn.Core.Model;
using FleetLearn.Storage;
using FleetLearn.Transport.Mqtt;
using FleetLearn.Transport.Mqtt.Broker;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace FleetLearn.Aggregator.Tests;

/// <summary>
/// One fleet, one writer (issue 15 item 5): a second aggregator instance refuses to start while another holds the fleet
/// (through the broker's lease, or the database's lock), and the plan-signing key is never silently re-created.
/// </summary>
// Every AggregatorStatus creates the meter "FleetLearn.Aggregator" (see AggregatorHttpServiceTests).
[Collection("Aggregator meter")]
public sealed class SingleWriterTests : IAsyncLifetime
{
    private const string Secret = "agg-secret";
    private const string Fleet = "single";
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);
    private readonly string _dir = Directory.CreateTempSubdirectory("fl-single-").FullName;
    private readonly List<AggregatorWorker> _started = [];
    private EmbeddedBroker _broker = null!;

    public async Task InitializeAsync()
    {
        _broker = new EmbeddedBroker(new EmbeddedBrokerOptions { Port = 0, AggregatorPassword = Secret, AggregatorIdentities = ["aggregator", "aggregator-b"] });
        await _broker.StartAsync();
    }

    public async Task DisposeAsync()
    {
        foreach (var worker in _started)
        {
            await worker.StopAsync(CancellationToken.None);
            worker.Dispose();
        }
        await _broker.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    private (AggregatorWorker Worker, AggregatorStatus Status) Start(string name, string clientId = "aggregator", string? keyName = null, string acceptKeyId = "")
    {
        var status = new AggregatorStatus();
        var options = new AggregatorOptions
        {
            Model = "8-6-3", CohortSize = 2, Rounds = 1, RoundTimeout = Timeout, CohortWait = TimeSpan.FromMinutes(5), OnnxFolder = null,
            DatabasePath = Path.Combine(_dir, name, "agg.db"), SigningKeyPath = Path.Combine(_dir, keyName ?? name, "signing.pem"),
            AcceptSigningKeyId = acceptKeyId,
        };
        var mqtt = new MqttTransportOptions
        {
            Host = "127.0.0.1", Port = _broker.Port, Fleet = Fleet, ClientId = clientId, Password = Secret,
            ReconnectDelay = TimeSpan.FromMilliseconds(50), MaxReconnectDelay = TimeSpan.FromMilliseconds(500),
        };
        var worker = new AggregatorWorker(Options.Create(options), Options.Create(mqtt), status, TimeProvider.System, NullLogger<AggregatorWorker>.Instance);
        worker.StartAsync(CancellationToken.None).GetAwaiter().GetResult();
        _started.Add(worker);
        return (worker, status);
    }

    private static async Task WaitRunningAsync(AggregatorStatus status)
    {
        using var cts = new CancellationTokenSource(Timeout);
        while (!status.Running || !status.Activity.Contains("waiting for check-ins", StringComparison.Ordinal)) await Task.Delay(20, cts.Token);
    }

    private static async Task<Exception> RefusalAsync(AggregatorWorker worker)
    {
        var e = await Record.ExceptionAsync(() => worker.ExecuteTask!.WaitAsync(Timeout));
        Assert.NotNull(e);
        Assert.IsNotType<TimeoutException>(e);
        return e;
    }

    [Fact]
    public async Task SecondAggregator_OtherDatabaseSameFleet_RefusesNamingTheLeaseHolder()
    {
        var (_, first) = Start("a");
        await WaitRunningAsync(first);
        var (second, secondStatus) = Start("b", clientId: "aggregator-b", keyName: "a");
        var e = await RefusalAsync(second);
        Assert.Contains($"fleet '{Fleet}' is held by another aggregator", e.Message, StringComparison.Ordinal);
        Assert.Empty(secondStatus.Rounds);  // it never opened a round
        Assert.True(first.Running);         // and the first one was not disturbed
    }

    [Fact]
    public async Task FirstAggregatorStopsCleanly_LeaseReleased_SecondInstanceStartsAtOnce()
    {
        var (first, firstStatus) = Start("a");
        await WaitRunningAsync(firstStatus);
        await first.StopAsync(CancellationToken.None);
        var (_, second) = Start("b", clientId: "aggregator-b", keyName: "a");
        await WaitRunningAsync(second);
    }

    [Fact]
    public async Task SameInstanceRestartsAfterACrash_ItsOwnUnexpiredClaim_DoesNotBlockIt()
    {
        string db = Path.Combine(_dir, "a", "agg.db");
        Directory.CreateDirectory(Path.GetDirectoryName(db)!);
        using (var store = LiteDbRoundStore.Open(db)) store.SetMeta("instance", "crashed-instance");
        // The claim a killed run left retained (valid for another minute).
        await using (var ghost = new MqttConnection(new MqttTransportOptions { Host = "127.0.0.1", Port = _broker.Port, Fleet = Fleet, ClientId = "aggregator-b", Password = Secret }))
        {
            ghost.Start();
            var claim = new FleetLearn.Core.Rounds.LeaseClaim("claim", "crashed-instance", "old pid", 1, DateTimeOffset.UtcNow.AddMinutes(1).ToUnixTimeMilliseconds(), 0);
            await ghost.PublishAsync(ghost.Topics.AggregatorLease, System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(claim), retain: true);
        }
        var (_, status) = Start("a");
        await WaitRunningAsync(status);
        // Another database (another instance) is refused by that same claim, now renewed by the restarted instance.
        var (other, _) = Start("b", clientId: "aggregator-b", keyName: "a");
        Assert.Contains("instance crashed-instance", (await RefusalAsync(other)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task SecondAggregator_SameDatabase_RefusesNamingTheDatabase()
    {
        var (_, first) = Start("a");
        await WaitRunningAsync(first);
        var (second, _) = Start("a");
        var e = await RefusalAsync(second);
        Assert.Contains("another aggregator process has the database", e.Message, StringComparison.Ordinal);
        Assert.Contains(Path.Combine(_dir, "a", "agg.db"), e.Message, StringComparison.Ordinal);
        Assert.True(first.Running);
    }

    [Fact]
    public async Task SigningKeyMissing_ForAFleetThatHasAModel_RefusesAndCreatesNoKey()
    {
        string db = Path.Combine(_dir, "a", "agg.db");
        Directory.CreateDirectory(Path.GetDirectoryName(db)!);
        using (var store = LiteDbRoundStore.Open(db))
            store.SaveModel(new Checkpoint(ModelSpec.Parse("8-6-3"), 3, new float[ModelSpec.Parse("8-6-3").ParameterCount]));
        var (worker, status) = Start("a");
        var e = await RefusalAsync(worker);
        Assert.Contains("signing key", e.Message, StringComparison.Ordinal);
        Assert.Contains("is missing", e.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(_dir, "a", "signing.pem"))); // vehicles pin the old key: a new one would strand them
        Assert.Empty(status.Rounds);
    }

    [Fact]
    public async Task SigningKeyReplaced_RefusedUntilTheRotationNamesItsId_ThenRecorded()
    {
        var (first, firstStatus) = Start("a");
        await WaitRunningAsync(firstStatus);
        await first.StopAsync(CancellationToken.None);
        string keyPath = Path.Combine(_dir, "a", "signing.pem");
        string oldId;
        using (var old = SigningKeys.Load(keyPath)) oldId = SigningKeys.KeyId(old);
        File.Delete(keyPath);
        string newId;
        using (var fresh = SigningKeys.LoadOrCreate(keyPath)) newId = SigningKeys.KeyId(fresh); // an operator's new key

        var (refused, _) = Start("a");
        var e = await RefusalAsync(refused);
        Assert.Contains($"has id {newId}, but this fleet's plans are signed with key {oldId}", e.Message, StringComparison.Ordinal);
        Assert.Contains($"--Aggregator:AcceptSigningKeyId={newId}", e.Message, StringComparison.Ordinal);

        var (rotated, rotatedStatus) = Start("a", acceptKeyId: newId);
        await WaitRunningAsync(rotatedStatus);
        await rotated.StopAsync(CancellationToken.None);
        using (var store = LiteDbRoundStore.Open(Path.Combine(_dir, "a", "agg.db"))) Assert.Equal(newId, store.GetMeta("signing-key-id"));
        var (later, laterStatus) = Start("a"); // the rotation is recorded: no option needed any more
        await WaitRunningAsync(laterStatus);
    }
}
