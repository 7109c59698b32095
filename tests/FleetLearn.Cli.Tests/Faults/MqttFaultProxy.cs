using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Threading.Channels;

namespace FleetLearn.Cli.Tests.Faults;

/// <summary>
/// A TCP proxy between one MQTT client process and the broker that understands MQTT framing (fixed header + remaining
/// length), so a test can stop a direction at an exact packet: after the 5th chunk of an update has reached the broker,
/// or just before the broker's acknowledgement reaches the vehicle. Held packets are dropped when either end goes away,
/// as they would be on a lost link. Flows are per proxy and apply to every connection through it (a restarted client
/// connects again through the same proxy).
/// </summary>
internal sealed class MqttFaultProxy : IAsyncDisposable
{
    private readonly TcpListener _listener;
    private readonly int _brokerPort;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _links = [];
    private readonly Task _accepting;

    public MqttFaultProxy(int brokerPort, IPAddress? listen = null)
    {
        _brokerPort = brokerPort;
        _listener = new TcpListener(listen ?? IPAddress.Loopback, 0);
        _listener.Start();
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        _accepting = AcceptAsync();
    }

    /// <summary>The port clients connect to.</summary>
    public int Port { get; }

    /// <summary>Client → broker.</summary>
    public Flow Up { get; } = new("up");

    /// <summary>Broker → client.</summary>
    public Flow Down { get; } = new("down");

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        Task[] links;
        lock (_links) links = [.. _links, _accepting];
        try
        {
            await Task.WhenAll(links).WaitAsync(TimeSpan.FromSeconds(10));
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or IOException or TimeoutException)
        {
        }
        _stop.Dispose();
    }

    private async Task AcceptAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await _listener.AcceptTcpClientAsync(_stop.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                return;
            }
            lock (_links) _links.Add(LinkAsync(client));
        }
    }

    private async Task LinkAsync(TcpClient client)
    {
        using var link = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
        using var broker = new TcpClient();
        try
        {
            using (client)
            {
                client.NoDelay = true;
                broker.NoDelay = true;
                try
                {
                    await broker.ConnectAsync(IPAddress.Loopback, _brokerPort, link.Token);
                }
                catch (SocketException)
                {
                    return; // broker down: the client sees its connection closed and retries, as it would against the broker itself
                }
                var clientStream = client.GetStream();
                var brokerStream = broker.GetStream();
                await Task.WhenAll(
                    Up.PumpAsync(clientStream, brokerStream, link),
                    Down.PumpAsync(brokerStream, clientStream, link));
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>One direction: counts what it forwards and can be paused at a packet boundary.</summary>
    internal sealed class Flow(string name)
    {
        private readonly object _gate = new();
        private readonly Dictionary<string, int> _forwardedPublishes = new(StringComparer.Ordinal);
        private readonly List<(Func<bool> Condition, TaskCompletionSource Done)> _waiters = [];
        private TaskCompletionSource _open = Opened();
        private (string Topic, int Count)? _pauseAfter;
        private string? _pauseBefore;
        private (string Topic, int MinBytes, bool AfterLarge, bool SeenLarge)? _pauseBySize;
        private string? _dropNext;

        /// <summary>True while packets are held.</summary>
        public bool Paused
        {
            get
            {
                lock (_gate) return !_open.Task.IsCompleted;
            }
        }

        /// <summary>PUBLISH packets to <paramref name="topic"/> forwarded so far.</summary>
        public int ForwardedPublishes(string topic)
        {
            lock (_gate) return _forwardedPublishes.GetValueOrDefault(topic);
        }

        /// <summary>Holds every packet from now on.</summary>
        public void Pause()
        {
            lock (_gate) PauseLocked();
        }

        /// <summary>Lets held and later packets through.</summary>
        public void Resume()
        {
            lock (_gate)
            {
                _pauseAfter = null;
                _pauseBefore = null;
                _pauseBySize = null;
                _open.TrySetResult();
            }
        }

        /// <summary>Pauses right after the <paramref name="count"/>-th PUBLISH to <paramref name="topic"/> (counted from now) was forwarded.</summary>
        public void PauseAfterPublishes(string topic, int count)
        {
            lock (_gate) _pauseAfter = (topic, _forwardedPublishes.GetValueOrDefault(topic) + count);
        }

        /// <summary>
        /// Pauses just before the first PUBLISH to <paramref name="topic"/> under <paramref name="minBytes"/> bytes that follows
        /// one of at least that size: e.g. the unmask answer after the chunks of a masked input, where counting messages would
        /// also count the vehicle's resends of its small key messages.
        /// </summary>
        public void PauseBeforeSmallPublishAfterLarge(string topic, int minBytes)
        {
            lock (_gate) _pauseBySize = (topic, minBytes, true, false);
        }

        /// <summary>Pauses just before the first PUBLISH to <paramref name="topic"/> of at least <paramref name="minBytes"/> bytes (e.g. a masked input's first chunk): it is held.</summary>
        public void PauseBeforeLargePublish(string topic, int minBytes)
        {
            lock (_gate) _pauseBySize = (topic, minBytes, false, false);
        }

        /// <summary>Pauses just before the next PUBLISH to <paramref name="topic"/> would be forwarded: it is held.</summary>
        public void PauseBeforePublish(string topic)
        {
            lock (_gate) _pauseBefore = topic;
        }

        /// <summary>Swallows the next PUBLISH to <paramref name="topic"/>: a message lost on the way (the sender still waits for its PUBACK).</summary>
        public void DropNextPublish(string topic)
        {
            lock (_gate) _dropNext = topic;
        }

        /// <summary>Completes once the flow holds packets.</summary>
        public Task WaitUntilPausedAsync(TimeSpan timeout) => WaitAsync(() => !_open.Task.IsCompleted, $"{name} paused", timeout);

        internal async Task PumpAsync(NetworkStream from, NetworkStream to, CancellationTokenSource link)
        {
            var packets = Channel.CreateUnbounded<(byte[] Bytes, string? Topic)>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
            var reading = ReadPacketsAsync(from, packets.Writer, link);
            try
            {
                await foreach (var (bytes, topic) in packets.Reader.ReadAllAsync(link.Token))
                {
                    Task open;
                    lock (_gate)
                    {
                        if (topic is not null && topic == _dropNext)
                        {
                            _dropNext = null;
                            continue;
                        }
                        if (topic is not null && _pauseBySize is { } watch && watch.Topic == topic)
                        {
                            bool large = bytes.Length >= watch.MinBytes;
                            if (large && watch.AfterLarge) _pauseBySize = watch with { SeenLarge = true };
                            else if (large || watch.SeenLarge)
                            {
                                _pauseBySize = null;
                                PauseLocked();
                            }
                        }
                        if (topic is not null && topic == _pauseBefore)
                        {
                            _pauseBefore = null;
                            PauseLocked();
                        }
                        open = _open.Task;
                    }
                    await open.WaitAsync(link.Token);
                    await to.WriteAsync(bytes, link.Token);
                    lock (_gate)
                    {
                        if (topic is not null)
                        {
                            int n = _forwardedPublishes[topic] = _forwardedPublishes.GetValueOrDefault(topic) + 1;
                            if (_pauseAfter is { } p && p.Topic == topic && n >= p.Count)
                            {
                                _pauseAfter = null;
                                PauseLocked();
                            }
                        }
                        CheckWaitersLocked();
                    }
                }
            }
            catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException or OperationCanceledException)
            {
            }
            finally
            {
                await link.CancelAsync(); // either end gone: drop the other, and whatever is held
                try
                {
                    await reading;
                }
                catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException or OperationCanceledException)
                {
                }
            }
        }

        private static async Task ReadPacketsAsync(NetworkStream from, ChannelWriter<(byte[], string?)> packets, CancellationTokenSource link)
        {
            var buffer = new byte[64 * 1024];
            var pending = new byte[256 * 1024];
            int length = 0;
            try
            {
                while (true)
                {
                    int n = await from.ReadAsync(buffer, link.Token);
                    if (n == 0) break;
                    if (length + n > pending.Length) Array.Resize(ref pending, Math.Max(pending.Length * 2, length + n));
                    buffer.AsSpan(0, n).CopyTo(pending.AsSpan(length));
                    length += n;
                    int start = 0;
                    while (TryFrame(pending.AsSpan(start, length - start), out int size, out string? topic))
                    {
                        packets.TryWrite((pending.AsSpan(start, size).ToArray(), topic));
                        start += size;
                    }
                    pending.AsSpan(start, length - start).CopyTo(pending);
                    length -= start;
                }
            }
            finally
            {
                packets.TryComplete();
                await link.CancelAsync();
            }
        }

        /// <summary>One whole MQTT control packet at the start of <paramref name="data"/>: its size, and its topic when it is a PUBLISH.</summary>
        private static bool TryFrame(ReadOnlySpan<byte> data, out int size, out string? topic)
        {
            size = 0;
            topic = null;
            if (data.Length < 2) return false;
            int remaining = 0, shift = 0, i = 1;
            while (true)
            {
                if (i >= data.Length) return false;
                if (i > 4) throw new IOException("malformed MQTT remaining length");
                byte b = data[i++];
                remaining |= (b & 0x7F) << shift;
                shift += 7;
                if ((b & 0x80) == 0) break;
            }
            size = i + remaining;
            if (data.Length < size) return false;
            if (data[0] >> 4 == 3 && remaining >= 2)
            {
                int topicLength = (data[i] << 8) | data[i + 1];
                topic = Encoding.UTF8.GetString(data.Slice(i + 2, topicLength));
            }
            return true;
        }

        private async Task WaitAsync(Func<bool> condition, string what, TimeSpan timeout)
        {
            var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            lock (_gate)
            {
                if (condition()) return;
                _waiters.Add((condition, done));
            }
            try
            {
                await done.Task.WaitAsync(timeout);
            }
            catch (TimeoutException)
            {
                throw new TimeoutException($"proxy: not {what} within {timeout.TotalSeconds:F0} s.");
            }
        }

        private void PauseLocked()
        {
            if (_open.Task.IsCompleted) _open = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            CheckWaitersLocked();
        }

        private void CheckWaitersLocked()
        {
            for (int i = _waiters.Count - 1; i >= 0; i--)
            {
                if (_waiters[i].Condition())
                {
                    _waiters[i].Done.TrySetResult();
                    _waiters.RemoveAt(i);
                }
            }
        }

        private static TaskCompletionSource Opened()
        {
            var open = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            open.SetResult();
            return open;
        }
    }
}
