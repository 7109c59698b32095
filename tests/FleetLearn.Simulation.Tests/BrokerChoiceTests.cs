using FleetLearn.Core.Compression;
using FleetLearn.Transport.Mqtt.Broker;

namespace FleetLearn.Simulation.Tests;

/// <summary>
/// <c>simulate --broker auto</c> (the default): the embedded broker up to <see cref="MqttSimulationBroker.EmbeddedLimit"/> vehicles,
/// Debian's Mosquitto above where it is installed (MQTTnet's server checks every session per message), the embedded broker
/// for <c>--secagg-malicious</c> (its device CA); any explicit choice is kept.
/// </summary>
public sealed class BrokerChoiceTests
{
    private static SimulationOptions Fleet(int vehicles, bool malicious = false) => new()
    {
        Vehicles = vehicles, Cohort = 10, SecureAggregation = malicious ? SecureAggregationMode.Plus : SecureAggregationMode.Off, SecAggMaliciousServer = malicious,
    };

    [Fact]
    public void Auto_EmbeddedUpToTheLimit_MosquittoAboveWhereInstalled()
    {
        var auto = new MqttSimulationBroker("auto");
        Assert.Equal("embedded", auto.Resolve(Fleet(MqttSimulationBroker.EmbeddedLimit)).Broker);
        Assert.Equal(MosquittoBroker.Unavailable() is null ? "mosquitto" : "embedded", auto.Resolve(Fleet(MqttSimulationBroker.EmbeddedLimit + 1)).Broker);
        Assert.Equal("embedded", auto.Resolve(Fleet(10_000, malicious: true)).Broker);
    }

    [Theory]
    [InlineData("embedded")]
    [InlineData("mosquitto")]
    [InlineData("mosquitto-bridged")]
    [InlineData("mqtt://127.0.0.1:1883")]
    public void ExplicitChoice_IsKept(string broker)
    {
        var settings = new MqttSimulationBroker(broker, PhaseTimeout: TimeSpan.FromSeconds(7));
        Assert.Same(settings, settings.Resolve(Fleet(10_000)));
        Assert.Same(settings, settings.Resolve(Fleet(10)));
    }
}
