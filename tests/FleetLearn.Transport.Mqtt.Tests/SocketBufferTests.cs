using System.Net.Sockets;
using MQTTnet;

namespace FleetLearn.Transport.Mqtt.Tests;

/// <summary>
/// <c>Mqtt:SocketBufferBytes</c>: MQTTnet sets every client socket's receive and send buffers to its own 8 KiB unless told
/// otherwise, which pins the TCP window near 16 KB (docs/scale.md, "Ten thousand agents"). The connection hands MQTTnet the
/// setting, with and without TLS, and a connected socket really has the larger buffer.
/// </summary>
public sealed class SocketBufferTests
{
    [Theory]
    [InlineData(false, null)]
    [InlineData(true, null)]
    [InlineData(false, 65536)]
    public void ClientOptions_CarryTheSocketBuffer(bool tls, int? bytes)
    {
        var options = BrokerTestKit.LoopbackOptions(1883, "car-0");
        if (bytes is { } b) options.SocketBufferBytes = b;
        options.UseTls = tls;
        var tcp = Assert.IsType<MqttClientTcpOptions>(MqttConnection.BuildClientOptions(options, null).ChannelOptions);
        Assert.Equal(bytes ?? 256 * 1024, tcp.BufferSize);
        Assert.True(tcp.BufferSize > 8192);
    }

    [Fact]
    public void Socket_WithTheDefault_GetsMoreThanMqttnetsEightKiB()
    {
        // What MQTTnet does with the value (MqttTcpChannel): the kernel keeps at least what was asked, up to its cap.
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.ReceiveBufferSize = new MqttTransportOptions().SocketBufferBytes;
        Assert.True(socket.ReceiveBufferSize >= 128 * 1024, $"receive buffer {socket.ReceiveBufferSize} bytes");
        using var small = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        small.ReceiveBufferSize = 8192;
        Assert.True(small.ReceiveBufferSize < socket.ReceiveBufferSize);
    }
}
