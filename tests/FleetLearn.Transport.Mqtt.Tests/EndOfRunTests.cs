using System.Collections.Concurrent;
using System.Net.Sockets;
using FleetLearn.Transport.Mqtt.Broker;
using Microsoft.Extensions.Logging;

namespace FleetLearn.Transport.Mqtt.Tests;

/// <summary>What a user sees at the edges of a run: a port already taken, and the end of a session.</summary>
public sealed class EndOfRunTests
{
    /// <summary>Collects every log event with its level.</summary>
    private sealed class CollectingLogger : ILogger
    {
        public ConcurrentQueue<(LogLevel Level, string Message)> Events { get; } = new();

        /// <summary>Completes with the level of the first "disconnected" event.</summary>
        public TaskCompletionSource<LogLevel> Disconnected { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            string message = formatter(state, exception);
            Events.Enqueue((logLevel, message));
            if (message.Contains("disconnected", StringComparison.Ordinal)) Disconnected.TrySetResult(logLevel);
        }
    }

    [Fact]
    public async Task StartAsync_PortHeldByAnotherBroker_ThrowsAddressInUse()
    {
        await using var kit = await BrokerTestKit.StartAsync();
        await using var second = new EmbeddedBroker(new EmbeddedBrokerOptions { Port = kit.Broker.Port, AggregatorPassword = BrokerTestKit.AggregatorSecret });
        var e = await Assert.ThrowsAnyAsync<Exception>(second.StartAsync);
        var socket = e as SocketException ?? e.InnerException as SocketException;
        Assert.NotNull(socket);
        Assert.Equal(SocketError.AddressAlreadyInUse, socket.SocketErrorCode);
    }

    [Fact]
    public async Task StopAsync_OwnEndOfSession_DisconnectIsInformationNotWarning()
    {
        await using var kit = await BrokerTestKit.StartAsync();
        var log = new CollectingLogger();
        await using var connection = new MqttConnection(kit.Options("car-1"), logger: log);
        connection.Start();
        using (var cts = new CancellationTokenSource(BrokerTestKit.Timeout)) await connection.WaitUntilConnectedAsync(cts.Token);
        await connection.StopAsync();
        Assert.Equal(LogLevel.Information, await log.Disconnected.Task.WaitAsync(BrokerTestKit.Timeout));
        Assert.DoesNotContain(log.Events, e => e.Level >= LogLevel.Warning);
    }

    [Fact]
    public async Task BrokerShutsDown_WhileConnected_StillAWarning()
    {
        var kit = await BrokerTestKit.StartAsync();
        var log = new CollectingLogger();
        await using var connection = new MqttConnection(kit.Options("car-1"), logger: log);
        connection.Start();
        using (var cts = new CancellationTokenSource(BrokerTestKit.Timeout)) await connection.WaitUntilConnectedAsync(cts.Token);
        await kit.DisposeAsync(); // a broker going away under a running vehicle is worth a warning
        Assert.Equal(LogLevel.Warning, await log.Disconnected.Task.WaitAsync(BrokerTestKit.Timeout));
        await connection.StopAsync();
    }
}
