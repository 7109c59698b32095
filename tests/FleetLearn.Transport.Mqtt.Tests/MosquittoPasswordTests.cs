using FleetLearn.Transport.Mqtt.Broker;

namespace FleetLearn.Transport.Mqtt.Tests;

/// <summary>
/// <c>MosquittoBroker.StartWithPasswordsAsync</c> (<c>simulate --broker mosquitto</c>): Debian's Mosquitto with the shipped rules and
/// a password file instead of certificates. The password file is Mosquitto's own format, a client with its password connects and
/// reaches the aggregator under the shipped ACL, and one with a wrong password is refused. Skipped where mosquitto is not
/// installed, except in CI.
/// </summary>
public sealed class MosquittoPasswordTests : IAsyncLifetime
{
    private readonly List<MqttConnection> _connections = [];
    private MosquittoBroker? _broker;

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        foreach (var c in _connections) await c.DisposeAsync();
        if (_broker is not null) await _broker.DisposeAsync();
    }

    [Fact]
    public void PasswordHash_IsWhatMosquittoPasswdWrites()
    {
        // `mosquitto_passwd -b pw alice secret` (Mosquitto 2.0.11) wrote this line; the salt is the one it drew.
        const string written = "alice:$7$101$W6d+e3BznU+qzgFJ$nbFUpNJW2nQXLDl0nlunIw/x6GIi2IZ0YbCc8LlZpRZpn9oYyad46A7EWkYSxBwDl9Xer7ZpCj9/j+klbeMhJg==";
        Assert.Equal(written, "alice:" + MosquittoBroker.PasswordHash("secret", Convert.FromBase64String("W6d+e3BznU+qzgFJ")));
        Assert.NotEqual(written, "alice:" + MosquittoBroker.PasswordHash("Secret", Convert.FromBase64String("W6d+e3BznU+qzgFJ")));
        Assert.NotEqual(MosquittoBroker.PasswordHash("secret"), MosquittoBroker.PasswordHash("secret")); // a fresh salt each time
    }

    [SkippableFact]
    public async Task Vehicle_WithItsPassword_ReachesTheAggregator_AWrongPasswordIsRefused()
    {
        string? why = MosquittoBroker.Unavailable();
        Skip.If(why is not null, why);
        _broker = await MosquittoBroker.StartWithPasswordsAsync([("aggregator", "aggregator-pw"), ("car-0", "car-pw")], "");
        var topics = new FleetTopics(BrokerTestKit.Fleet);
        var aggregator = await ConnectAsync("aggregator", "aggregator-pw");
        var received = BrokerTestKit.Collect(aggregator);
        using (var cts = new CancellationTokenSource(BrokerTestKit.Timeout))
            await aggregator.SubscribeAsync($"fleetlearn/v1/{BrokerTestKit.Fleet}/vehicles/+/up/#", cts.Token);
        var car = await ConnectAsync("car-0", "car-pw");
        using (var cts = new CancellationTokenSource(BrokerTestKit.Timeout))
            await car.PublishAsync(topics.Up("car-0", "update"), "own"u8.ToArray(), cancellationToken: cts.Token);
        var first = await BrokerTestKit.NextAsync(received);
        Assert.Equal(topics.Up("car-0", "update"), first.Topic);

        var impostor = new MqttConnection(Options("car-0", "guessed"));
        _connections.Add(impostor);
        impostor.Start();
        using (var cts = new CancellationTokenSource(TimeSpan.FromSeconds(3)))
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => impostor.WaitUntilConnectedAsync(cts.Token));
        Assert.Contains("not authorised", _broker.Log, StringComparison.Ordinal);
        Assert.Equal(1, car.Connects); // the refused impostor did not take over the vehicle's session
    }

    private MqttTransportOptions Options(string clientId, string password) => BrokerTestKit.LoopbackOptions(_broker!.Port, clientId, password);

    private async Task<MqttConnection> ConnectAsync(string clientId, string password)
    {
        var connection = new MqttConnection(Options(clientId, password));
        _connections.Add(connection);
        connection.Start();
        using var cts = new CancellationTokenSource(BrokerTestKit.Timeout);
        await connection.WaitUntilConnectedAsync(cts.Token);
        return connection;
    }
}
