using FleetLearn.Core.Rounds;
using FleetLearn.Core.SecureAggregation;
using FleetLearn.Transport.Mqtt;

namespace FleetLearn.Aggregator;

/// <summary>The aggregator's downlink to vehicles: routed secure-aggregation messages and application-level acks.</summary>
internal sealed class VehicleLink(MqttConnection mqtt, AggregatorStatus status, AggregatorOptions options, FleetEpochs epochs)
{
    /// <summary>
    /// Subscribes to the vehicles' uplink, check-ins and the fleet's lease, starts the connection, acquires the lease (or
    /// throws: another instance holds the fleet), and clears a plan a previous run left retained (it announces a round this
    /// run has recorded as aborted or closed, or one it resumes and announces again; agents ignore the empty payload).
    /// </summary>
    public async Task StartAsync(FleetLeaseHolder lease, CancellationToken cancellationToken)
    {
        // Sharded rounds: the shards take the round traffic; the coordinator serves models, reads evaluations and partial sums.
        foreach (var filter in options.Shards > 1 ? [.. mqtt.Topics.CoordinatorUp, mqtt.Topics.AllShardPartials] : new[] { mqtt.Topics.AllUp })
            await mqtt.SubscribeAsync(filter, cancellationToken).ConfigureAwait(false);
        await mqtt.SubscribeAsync(mqtt.Topics.AllCheckins, cancellationToken).ConfigureAwait(false);
        await mqtt.SubscribeAsync(lease.Topic, cancellationToken).ConfigureAwait(false);
        mqtt.Start(cancellationToken);
        await lease.AcquireAsync(cancellationToken).ConfigureAwait(false);
        await mqtt.PublishReliablyAsync(mqtt.Topics.RoundCurrent, ReadOnlyMemory<byte>.Empty, retain: true, cancellationToken: cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Sends each routed message to its vehicle's inbox (chunked under the broker's packet limit, expiring after two phases).</summary>
    public Task RouteAsync(long round, IReadOnlyList<RouteEffect> routes, CancellationToken cancellationToken)
    {
        var expiry = TimeSpan.FromMilliseconds(2 * options.PhaseTimeout.TotalMilliseconds);
        return Task.WhenAll(routes.Select(async r =>
        {
            var envelope = new Envelope(EnvelopeKind.SecAgg, r.Vehicle, round, Guid.NewGuid(), SecAggCodec.Encode(r.Message)) { Epoch = epochs.Wire, PlanTag = epochs.Plan.Tag }.Encode(options.MaxUpdateBytes);
            foreach (var chunk in ChunkCodec.Split(envelope, mqtt.Options.MaxPacketSize))
            {
                await mqtt.PublishReliablyAsync(mqtt.Topics.Inbox(r.Vehicle, "secagg"), chunk, expiry: expiry, cancellationToken: cancellationToken).ConfigureAwait(false);
                status.Sent(chunk.Length);
            }
        }));
    }

    /// <summary>Most acknowledgements in flight at once; the next one waits for the oldest.</summary>
    public const int MaxPendingAcks = 256;

    private readonly System.Collections.Concurrent.ConcurrentQueue<Task> _acks = new();

    /// <summary>Acknowledgements sent and not yet confirmed by the broker.</summary>
    public int PendingAcks => _acks.Count;

    /// <summary>
    /// Acknowledges <paramref name="update"/> with the coordinator's verdict, so the vehicle can empty its outbox. The ack leaves
    /// now (after whatever the caller made durable); its PUBACK is not awaited here: awaited one at a time, each message the
    /// loop read cost a broker round trip, and with thousands of vehicles connected the key phases were read at a few dozen
    /// messages a second (docs/scale.md). At most <see cref="MaxPendingAcks"/> are in flight; a failed one surfaces at a later
    /// call, and an ack that never arrives is harmless: the vehicle resends and is answered Duplicate.
    /// </summary>
    public async Task AckAsync(Envelope update, Admission admission, CancellationToken cancellationToken)
    {
        var ack = new Envelope(EnvelopeKind.Ack, update.Vehicle, update.Round, update.UpdateId, new UpdateAck(admission.Status, admission.Why).Encode()) { Epoch = epochs.Wire }.Encode();
        while (_acks.TryPeek(out var oldest) && (oldest.IsCompleted || _acks.Count >= MaxPendingAcks))
        {
            if (_acks.TryDequeue(out var done)) await done.ConfigureAwait(false);
        }
        _acks.Enqueue(SendAckAsync(update.Vehicle, ack, cancellationToken));
    }

    /// <summary>Waits until every acknowledgement sent so far is confirmed by the broker (or failed: the first failure is thrown).</summary>
    public async Task FlushAcksAsync()
    {
        while (_acks.TryDequeue(out var pending)) await pending.ConfigureAwait(false);
    }

    private async Task SendAckAsync(string vehicle, byte[] ack, CancellationToken cancellationToken)
    {
        await mqtt.PublishReliablyAsync(mqtt.Topics.Inbox(vehicle, "ack"), ack, expiry: TimeSpan.FromDays(1), cancellationToken: cancellationToken).ConfigureAwait(false);
        status.Sent(ack.Length);
    }
}
