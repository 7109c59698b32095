using FleetLearn.Core.Rounds;
using FleetLearn.Transport.Mqtt;
using Microsoft.Extensions.Logging;

namespace FleetLearn.Aggregator;

/// <summary>How <see cref="AggregatorInbox"/> answered an offered message.</summary>
public enum InboxOffer
{
    /// <summary>Queued; the worker will handle it.</summary>
    Queued,

    /// <summary>Larger than the whole inbox: refused at once (dropped, counted).</summary>
    TooLarge,

    /// <summary>Its sender already holds its share of the inbox: refused (dropped, counted); the sender's outbox resends.</summary>
    SenderOverShare,
}

/// <summary>The aggregator worker's inbox: a FIFO bounded by the bytes it holds, in total and per sender, not by a message count.</summary>
/// <remarks>
/// A count bound (16,384 messages before) lets a peer grow memory by 16,384 × the broker's packet limit (16 GiB at 1 MiB).
/// Two rules bound it by bytes (docs/reliability.md, "Bounded inbox"):
/// - <b>Total: back-pressure.</b> When the inbox holds <see cref="CapacityBytes"/>, the offer waits. The MQTT handler awaits
///   it and the PUBACK goes out only after it returns, so the broker stops delivering once the client's Receive Maximum is
///   reached (MQTT 5 §4.9 flow control). Nothing is dropped for this reason.
/// - <b>Per sender: refusal.</b> A vehicle that already holds <see cref="PerSenderBytes"/> in the inbox has its next message
///   dropped and counted (<see cref="RejectReasons.InboxFull"/>): waiting for it would let one peer stall everyone's
///   messages behind its own. A refused message was never accepted (no ack went out), so the vehicle's outbox resends it.
/// Messages already queued are never dropped: they leave only through <see cref="ReadAsync"/>.
/// Check-ins come last, one per vehicle (docs/scale.md): a check-in is state, so a newer one replaces the one still queued,
/// and round traffic (keys, shares, updates) is read first. At 1,000 vehicles checking in every 5 s, a FIFO held thousands
/// of check-ins ahead of the round's keys, and the key phase timed out with none read.
/// </remarks>
internal sealed class AggregatorInbox
{
    private readonly object _gate = new();
    private readonly Queue<(MqttIncoming Message, string Sender, long Size, long Arrived)> _queue = new();
    private readonly Dictionary<string, long> _bySender = new(StringComparer.Ordinal);
    private readonly Dictionary<string, (MqttIncoming Message, long Size)> _checkins = new(StringComparer.Ordinal); // the latest queued check-in per sender
    private readonly Queue<string> _checkinOrder = new();
    private readonly FleetTopics? _topics;
    private readonly AggregatorStatus? _status;
    private readonly ILogger? _logger;
    private readonly TimeProvider _time;
    private TaskCompletionSource _space = NewSignal();
    private TaskCompletionSource _items = NewSignal();
    private long _bytes, _refused;

    /// <summary>An inbox holding at most <paramref name="capacityBytes"/>, of which one sender holds at most <paramref name="perSenderBytes"/>.</summary>
    public AggregatorInbox(long capacityBytes, long perSenderBytes, FleetTopics? topics = null, AggregatorStatus? status = null, ILogger? logger = null, TimeProvider? time = null)
    {
        _time = time ?? TimeProvider.System;
        ArgumentOutOfRangeException.ThrowIfLessThan(capacityBytes, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(perSenderBytes, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(perSenderBytes, capacityBytes);
        (CapacityBytes, PerSenderBytes, _topics, _status, _logger) = (capacityBytes, perSenderBytes, topics, status, logger);
    }

    /// <summary>Most bytes the inbox holds.</summary>
    public long CapacityBytes { get; }

    /// <summary>Most bytes one sender's messages hold in the inbox.</summary>
    public long PerSenderBytes { get; }

    /// <summary>Bytes held now.</summary>
    public long Bytes
    {
        get
        {
            lock (_gate) return _bytes;
        }
    }

    /// <summary>Messages held now.</summary>
    public int Count
    {
        get
        {
            lock (_gate) return _queue.Count + _checkins.Count;
        }
    }

    /// <summary>How long the message <see cref="ReadAsync"/> returned last had waited in the inbox (what <see cref="PaceSignal"/> turns into a request to slow down).</summary>
    public TimeSpan LastWait { get; private set; }

    /// <summary>Messages refused so far (too large, or their sender over its share).</summary>
    public long Refused => Interlocked.Read(ref _refused);

    /// <summary>What a message costs the inbox: its payload and its topic.</summary>
    public static long SizeOf(MqttIncoming message) => message.Payload.Length + 2L * message.Topic.Length;

    /// <summary>The MQTT handler's entry: offers the message under the vehicle its topic names; a refusal is counted and logged.</summary>
    public async Task AcceptAsync(MqttIncoming message, CancellationToken cancellationToken)
    {
        string sender = _topics is not null && _topics.TryParseVehicleTopic(message.Topic, out var vehicle, out _, out _) ? vehicle : "";
        var offer = await OfferAsync(message, sender, cancellationToken).ConfigureAwait(false);
        if (offer == InboxOffer.Queued) return;
        _status?.Rejected(RejectReasons.InboxFull);
        if (sender.Length > 0) _status?.VehicleRejected(sender, RejectReasons.InboxFull);
        _logger?.LogWarning("aggregator: dropped a {Size}-byte message on {Topic}: {Why}; its sender resends what was not acknowledged.", SizeOf(message), message.Topic,
            offer == InboxOffer.TooLarge ? $"larger than the inbox ({CapacityBytes} bytes, Aggregator:InboxBytes)" : $"'{sender}' already holds its share of the inbox ({PerSenderBytes} bytes, Aggregator:InboxBytesPerVehicle)");
    }

    /// <summary>Queues <paramref name="message"/> from <paramref name="sender"/>, waiting while the inbox as a whole is full (back-pressure).</summary>
    public async ValueTask<InboxOffer> OfferAsync(MqttIncoming message, string sender, CancellationToken cancellationToken)
    {
        long size = SizeOf(message);
        if (size > CapacityBytes) return Refuse(InboxOffer.TooLarge);
        bool checkin = sender.Length > 0 && message.Topic.EndsWith("/checkin", StringComparison.Ordinal);
        while (true)
        {
            Task space;
            lock (_gate)
            {
                long held = _bySender.GetValueOrDefault(sender);
                if (checkin && _checkins.TryGetValue(sender, out var queued))
                {
                    // A check-in is state ("eligible now, with n samples"): a newer one replaces the one still queued.
                    _checkins[sender] = (message, size);
                    _bytes += size - queued.Size;
                    _bySender[sender] = held + size - queued.Size;
                    return InboxOffer.Queued;
                }
                if (held + size > PerSenderBytes) return Refuse(InboxOffer.SenderOverShare);
                if (_bytes + size <= CapacityBytes)
                {
                    if (checkin)
                    {
                        _checkins[sender] = (message, size);
                        _checkinOrder.Enqueue(sender);
                    }
                    else _queue.Enqueue((message, sender, size, _time.GetTimestamp()));
                    _bytes += size;
                    _bySender[sender] = held + size;
                    _items.TrySetResult();
                    return InboxOffer.Queued;
                }
                if (_space.Task.IsCompleted) _space = NewSignal();
                space = _space.Task;
            }
            await space.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Takes the oldest message, waiting for one; frees its bytes (and wakes a waiting offer).</summary>
    public async ValueTask<MqttIncoming> ReadAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            Task items;
            lock (_gate)
            {
                if (_queue.TryDequeue(out var item))
                {
                    Release(item.Sender, item.Size);
                    LastWait = _time.GetElapsedTime(item.Arrived);
                    return item.Message;
                }
                if (_checkinOrder.TryDequeue(out var sender) && _checkins.Remove(sender, out var checkin))
                {
                    Release(sender, checkin.Size);
                    return checkin.Message; // waits behind round traffic: not what the pace measures
                }
                if (_items.Task.IsCompleted) _items = NewSignal();
                items = _items.Task;
            }
            await items.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Takes the oldest message, waiting for one until <paramref name="until"/> on <paramref name="time"/>; null when that passes first.</summary>
    public async ValueTask<MqttIncoming?> ReadUntilAsync(DateTimeOffset until, TimeProvider time, CancellationToken cancellationToken)
    {
        var wait = until - time.GetUtcNow();
        if (wait <= TimeSpan.Zero) return null;
        using var timeout = new CancellationTokenSource(wait, time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        try
        {
            return await ReadAsync(linked.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return null;
        }
    }

    private void Release(string sender, long size)
    {
        _bytes -= size;
        long left = _bySender[sender] - size;
        if (left == 0) _bySender.Remove(sender);
        else _bySender[sender] = left;
        _space.TrySetResult();
    }

    private InboxOffer Refuse(InboxOffer why)
    {
        Interlocked.Increment(ref _refused);
        return why;
    }

    private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);
}
