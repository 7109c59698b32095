using FleetLearn.Transport.Mqtt;

namespace FleetLearn.Aggregator;

/// <summary>
/// The aggregator's small messages to vehicles (acks, routed secure-aggregation messages), published beside the message pump
/// with at most <see cref="MaxConcurrent"/> in flight; each is retried over reconnects until the broker takes it or the worker
/// stops. <see cref="DrainAsync"/> waits for what is on its way.
/// </summary>
internal sealed class OutgoingMessages(MqttConnection mqtt, AggregatorStatus status)
{
    /// <summary>Publishes in flight at once (the connection's own limit applies too).</summary>
    public const int MaxConcurrent = 64;

    private readonly SemaphoreSlim _slots = new(MaxConcurrent, MaxConcurrent);
    private readonly object _gate = new();
    private readonly HashSet<Task> _pending = [];

    /// <summary>Messages on their way now.</summary>
    public int Pending
    {
        get
        {
            lock (_gate) return _pending.Count;
        }
    }

    /// <summary>Queues one publish (QoS 1) to <paramref name="topic"/>, expiring after <paramref name="expiry"/>.</summary>
    public void Send(string topic, byte[] payload, TimeSpan expiry, CancellationToken cancellationToken)
    {
        var task = PublishAsync(topic, payload, expiry, cancellationToken);
        lock (_gate)
        {
            if (!task.IsCompleted) _pending.Add(task);
        }
        _ = task.ContinueWith(t =>
        {
            lock (_gate) _pending.Remove(t);
        }, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    /// <summary>Waits until every queued message was taken by the broker (or failed).</summary>
    public async Task DrainAsync()
    {
        Task[] pending;
        lock (_gate) pending = [.. _pending];
        await Task.WhenAll(pending).ConfigureAwait(false);
    }

    private async Task PublishAsync(string topic, byte[] payload, TimeSpan expiry, CancellationToken cancellationToken)
    {
        try
        {
            await _slots.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                await mqtt.PublishReliablyAsync(topic, payload, expiry: expiry, cancellationToken: cancellationToken).ConfigureAwait(false);
                status.Sent(payload.Length);
            }
            finally
            {
                _slots.Release();
            }
        }
        catch (Exception e) when (e is OperationCanceledException or MqttRefusedException || MqttConnection.IsTransient(e))
        {
            // The worker stops, or the broker refused: the vehicle resends (or asks again) and is answered again.
        }
    }
}
