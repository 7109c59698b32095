using System.Globalization;
using FleetLearn.Core.Rounds;
using FleetLearn.Core.SecureAggregation;
using FleetLearn.Storage;
using FleetLearn.Transport.Mqtt;
using Microsoft.Extensions.Logging;

namespace FleetLearn.EdgeAgent;

/// <summary>
/// Everything the vehicle sends and how it survives: each message is written to the durable LiteDB outbox before its first
/// chunk leaves, resent with exponential backoff until the aggregator acknowledges it or the round's deadline passes, and
/// the check-in is published on every pass with nothing pending. The agent's message loop owns it; the resend loop runs beside.
/// </summary>
internal sealed class AgentUplink(string vehicleId, MqttConnection mqtt, LiteDbOutbox outbox, TimeSpan resendInterval, TimeProvider time, ILogger logger)
{
    private readonly ResendSchedule _schedule = new(resendInterval, Jitter(vehicleId));
    private readonly object _replayGate = new();
    // Pending plaintext updates (logged at Information when acknowledged): this run's, and those an earlier run left in the
    // outbox, read once here because their acks may arrive right after the reconnect, before the first resend pass.
    private readonly System.Collections.Concurrent.ConcurrentDictionary<Guid, byte> _updates = new(
        outbox.Entries().Where(i => i.Topic.EndsWith("/update", StringComparison.Ordinal)).Select(i => KeyValuePair.Create(i.UpdateId, (byte)0)));
    // The vehicle's last secure-aggregation message, resent to ask the aggregator again. A large one (a masked input, hundreds of
    // KB) is not held here: its payload stays in the outbox's file (KeepAfterAcknowledgement) and is read back only to be resent.
    private OutboxItem? _lastSecAgg;
    private int _lastSecAggLength;
    private long _lastHeard = time.GetTimestamp();
    private const int LargeMessageBytes = 64 << 10;
    private int _askedAgain;

    /// <summary>Whether the joined round waits for the aggregator's next secure-aggregation message (<see cref="VehicleRound.AwaitsServer"/>).</summary>
    public Func<bool> AwaitsServer { get; init; } = () => false;

    /// <summary>Times the vehicle asked the aggregator again for a secure-aggregation message it waited for.</summary>
    public int AskedAgain { get; private set; }

    /// <summary>The model version the joined round has waited for since at least a resend interval, or null (set by the agent).</summary>
    public Func<long?> MissingModel { get; init; } = () => null;

    /// <summary>Times the vehicle asked the aggregator for a model it lacked.</summary>
    public int ModelRequests { get; private set; }

    private DateTimeOffset _nextModelRequest;

    /// <summary>Called with the round when a plaintext update of this vehicle is acknowledged (once per update; a simulated fleet's link orders uploads by it).</summary>
    public Action<long>? UpdateAcknowledged { get; init; }

    /// <summary>Messages the aggregator acknowledged (updates and secure-aggregation messages).</summary>
    public int Acknowledged { get; private set; }

    /// <summary>Messages still waiting for an acknowledgement.</summary>
    public int Pending => outbox.Count;

    /// <summary>
    /// Writes one message to the outbox (durable before the first send: a crash after this resends it) and sends it. It names the
    /// fleet <paramref name="epoch"/> and the plan it answers (<paramref name="planTag"/>), so that an aggregator restored from an
    /// older database, or a second one, does not fold it under another plan.
    /// </summary>
    public async Task EnqueueAsync(EnvelopeKind kind, string channel, long round, ushort epoch, ulong planTag, Guid updateId, byte[] payload, DateTimeOffset expires,
        CancellationToken cancellationToken)
    {
        var envelope = new Envelope(kind, vehicleId, round, updateId, payload) { Epoch = epoch, PlanTag = planTag };
        var item = new OutboxItem(envelope.UpdateId, vehicleId, round, mqtt.Topics.Up(vehicleId, channel), envelope.Encode(), expires);
        outbox.Enqueue(item);
        if (kind == EnvelopeKind.Update) _updates[item.UpdateId] = 0;
        _schedule.Track(item.UpdateId, item.ExpiresAt);
        if (kind == EnvelopeKind.SecAgg)
        {
            outbox.KeepAfterAcknowledgement(item.UpdateId);
            lock (_replayGate) (_lastSecAgg, _lastSecAggLength) = (item.Payload.Length > LiteDbOutbox.InlinePayloadBytes ? item with { Payload = [] } : item, item.Payload.Length);
            Heard(item);
        }
        await SendAsync(item, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The round moved (a secure-aggregation message arrived, or the vehicle sent one): the quiet time starts again. Returns <paramref name="message"/>.</summary>
    public T Heard<T>(T message)
    {
        lock (_replayGate) (_lastHeard, _askedAgain) = (time.GetTimestamp(), 0);
        return message;
    }

    /// <summary>
    /// Downlink replay, the vehicle's half (issue 14 item 3). A secure round that waits for the aggregator and has heard
    /// nothing for a resend interval (doubling up to 16×) resends its last message, which the aggregator acknowledged
    /// already, with the same update id. The aggregator answers Duplicate and sends its last message to this vehicle again.
    /// So a key directory, forwarded shares or unmask request lost in a broker restart does not make the vehicle drop out.
    /// </summary>
    private async Task AskAgainIfQuietAsync(CancellationToken cancellationToken)
    {
        OutboxItem? last;
        lock (_replayGate)
        {
            last = _lastSecAgg;
            // After a masked input (hundreds of KB) the vehicle asks again only after 16 intervals: the aggregator stays quiet until the
            // whole cohort's inputs are in, and at 200 agents copies sent after 1, 2, 4 … intervals doubled the bytes received.
            int doublings = _lastSecAggLength > LargeMessageBytes ? 4 : Math.Min(_askedAgain, 4);
            if (last is null || time.GetElapsedTime(_lastHeard) < resendInterval * Math.Pow(2, doublings)) return;
        }
        if (!AwaitsServer() || _schedule.IsPending(last.UpdateId)) return; // not waiting, or the message itself is still being resent
        if (_schedule.IsHeld(time.GetUtcNow()))
        {
            HeldBack++; // the aggregator asked vehicles to slow down: it has not read what waits for it yet
            UplinkMetrics.HeldBack();
            return;
        }
        if (last.Payload.Length == 0 && outbox.ReadKept(last.UpdateId) is { } kept) last = last with { Payload = kept };
        if (last.Payload.Length == 0) return; // its file failed its check (the outbox logged it): nothing to ask with
        lock (_replayGate) _askedAgain++;
        AskedAgain++;
        logger.LogInformation("agent {Vehicle}: round {Round}: no secure-aggregation message from the aggregator for {Quiet:F0} s; asking again (resending the last one).",
            vehicleId, last.Round, time.GetElapsedTime(_lastHeard).TotalSeconds);
        await SendAsync(last, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Opens the vehicle's outbox and ledger; a file that no longer opens (a power cut mid-checkpoint) is moved aside and a fresh
    /// one started — the ledger's last ε comes back from its mirror, so spend is never under-counted (issue 14 item 4).
    /// </summary>
    public static (LiteDbOutbox Outbox, LiteDbPrivacyLedgerStore Ledger) OpenStores(EdgeAgentOptions options, ILogger logger)
    {
        var outbox = LiteDbOutbox.OpenOrQuarantine(options.DatabasePath, problem => logger.LogWarning("agent {Vehicle}: {Problem}", options.VehicleId, problem));
        var ledger = LiteDbPrivacyLedgerStore.OpenOrQuarantine(options.EffectivePrivacyLedgerPath,
            new Core.Privacy.PrivacyLedgerOptions(options.EpsilonBudget ?? double.MaxValue, options.PrivacyDelta));
        foreach (var moved in new[] { outbox.Quarantined, ledger.Quarantined }.OfType<string>())
            logger.LogError("agent {Vehicle}: {File} could not be opened; moved aside, a fresh one started.", options.VehicleId, moved);
        return (outbox, ledger);
    }

    /// <summary>This vehicle's share of a pace hold added on top, in [0, 0.5): a stable FNV-1a hash of its id (the same on every start).</summary>
    private static double Jitter(string vehicleId)
    {
        uint hash = 2166136261;
        foreach (char c in vehicleId) hash = (hash ^ c) * 16777619;
        return hash % 1000 / 2000.0;
    }

    /// <summary>The aggregator's pace signal (<c>round/slowdown</c>, <see cref="UplinkPace"/>): resends wait for the hold it asks for.</summary>
    public void Pace(ReadOnlySpan<byte> payload)
    {
        var hold = UplinkPace.Decode(payload);
        _schedule.Hold(hold, time.GetUtcNow());
        if (hold > TimeSpan.Zero) logger.LogDebug("agent {Vehicle}: the aggregator asks vehicles to hold resends for {Hold:F0} s.", vehicleId, hold.TotalSeconds);
    }

    /// <summary>Until when resends are held by the aggregator's pace (<see cref="DateTimeOffset.MinValue"/>: not held).</summary>
    public DateTimeOffset HeldUntil => _schedule.HeldUntil;

    /// <summary>A message in the vehicle's ack inbox: an acknowledgement addressed to this vehicle is taken (<see cref="Acknowledge(Envelope)"/>), anything else ignored.</summary>
    public void Acknowledge(ReadOnlyMemory<byte> payload)
    {
        var envelope = Envelope.Decode(payload.Span, maxPayload: 4096);
        if (envelope.Kind == EnvelopeKind.Ack && envelope.Vehicle == vehicleId) Acknowledge(envelope);
    }

    /// <summary>An acknowledgement from the aggregator: the message leaves the outbox; logged once.</summary>
    public void Acknowledge(Envelope envelope)
    {
        var ack = UpdateAck.Decode(envelope.Payload.Span);
        bool update = _updates.TryRemove(envelope.UpdateId, out _);
        _schedule.Forget(envelope.UpdateId);
        if (!outbox.Acknowledge(envelope.UpdateId)) return;
        Acknowledged++;
        if (update) UpdateAcknowledged?.Invoke(envelope.Round);
        var level = ack.Status == AckStatus.Rejected ? LogLevel.Warning : update ? LogLevel.Information : LogLevel.Debug;
        logger.Log(level, "agent {Vehicle}: round {Round} {What} {Status}{Reason}", vehicleId, envelope.Round, update ? "update" : "secure-aggregation message",
            ack.Status, ack.Reason.Length > 0 ? $" ({ack.Reason})" : "");
    }

    /// <summary>Resends what is pending (after its backoff) and checks in when nothing is, every resend interval, until cancelled.</summary>
    public async Task RunAsync(Func<CancellationToken, Task> checkIn, CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(resendInterval, time);
        bool first = true;
        do
        {
            try
            {
                await mqtt.WaitUntilConnectedAsync(cancellationToken).ConfigureAwait(false);
                await PassAsync(first, checkIn, cancellationToken).ConfigureAwait(false);
                first = false;
            }
            catch (Exception e) when (MqttConnection.IsTransient(e))
            {
                logger.LogDebug("agent {Vehicle}: resend pass failed ({Error}).", vehicleId, e.Message);
            }
        }
        while (await timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false));
    }

    /// <summary>Resends held back so far because the aggregator asked vehicles to slow down.</summary>
    public int HeldBack { get; private set; }

    /// <summary>Messages sent again so far (no acknowledgement after their backoff).</summary>
    public int Resent { get; private set; }

    /// <summary>
    /// One pass of <see cref="RunAsync"/>: the <paramref name="first"/> one tracks what an earlier run left in the outbox and
    /// checks in; later ones drop what expired, check in with nothing pending, resend what is due unless the aggregator's
    /// pace holds resends, ask again when a secure round has heard nothing, and ask for a missing model.
    /// </summary>
    internal async Task PassAsync(bool first, Func<CancellationToken, Task> checkIn, CancellationToken cancellationToken)
    {
        if (first)
            foreach (var entry in outbox.Entries()) _schedule.Track(entry.UpdateId, entry.ExpiresAt, entry.Attempts); // what an earlier run left: read once
        if (_schedule.Expired(time.GetUtcNow()).Count > 0) outbox.DropExpired(time.GetUtcNow());
        if (first || _schedule.Count == 0) await checkIn(cancellationToken).ConfigureAwait(false);
        if (first) return;
        var due = _schedule.Due(time.GetUtcNow(), out int held);
        foreach (var id in due)
        {
            if (outbox.Find(id) is not { } item) // the payload is read back only to be sent
            {
                _schedule.Forget(id);
                continue;
            }
            UplinkMetrics.PayloadRead();
            Resent++;
            await SendAsync(item, cancellationToken).ConfigureAwait(false);
        }
        HeldBack += held;
        for (int i = 0; i < held; i++) UplinkMetrics.HeldBack();
        await AskAgainIfQuietAsync(cancellationToken).ConfigureAwait(false);
        await AskForMissingModelAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Asks the aggregator for the model the joined round waits for when the retained copy did not come (it expired, a chunk
    /// was lost, the broker lost it): an 8-byte version on <c>vehicles/{id}/up/model</c>, answered in the vehicle's inbox.
    /// Not durable (a lost request is asked again) and at most every 2 resend intervals.
    /// </summary>
    private async Task AskForMissingModelAsync(CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        if (MissingModel() is not { } version || now < _nextModelRequest) return;
        _nextModelRequest = now + resendInterval * 2;
        ModelRequests++;
        logger.LogInformation("agent {Vehicle}: model {Version} of the joined round has not arrived; asking the aggregator for it.", vehicleId, version);
        var request = new byte[8];
        System.Buffers.Binary.BinaryPrimitives.WriteInt64LittleEndian(request, version);
        await mqtt.PublishAsync(mqtt.Topics.Up(vehicleId, "model"), request, expiry: resendInterval * 2, cancellationToken: cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// A whole SecAgg message from the vehicle's inbox for the joined <paramref name="round"/>; null when it belongs to another
    /// round (stale: nothing to answer). Throws <see cref="WireFormatException"/> on a malformed message or one for another vehicle.
    /// </summary>
    public static SecAggMessage? ReadSecAgg(byte[] whole, string vehicleId, int maxBytes, long? round)
    {
        var envelope = Envelope.Decode(whole, maxBytes);
        if (envelope.Kind != EnvelopeKind.SecAgg || envelope.Vehicle != vehicleId) throw new WireFormatException("A secure-aggregation message in this inbox names another vehicle or kind.");
        if (round != envelope.Round) return null;
        try
        {
            return SecAggCodec.Decode(envelope.Payload.Span, (ulong)envelope.Round);
        }
        catch (SecAggFormatException e)
        {
            throw new WireFormatException($"Secure-aggregation message: {e.Message}", e);
        }
    }

    private async Task SendAsync(OutboxItem item, CancellationToken cancellationToken)
    {
        var remaining = item.ExpiresAt - time.GetUtcNow();
        if (remaining <= TimeSpan.Zero) return;
        // The transfer id is the update id: a resend's chunks complete the same transfer at the aggregator.
        var chunks = ChunkCodec.Split(item.Payload, mqtt.Options.MaxPacketSize, item.UpdateId);
        // Exponential backoff between resends (1, 2, 4, 8, 16 × the interval, ResendSchedule): an aggregator that is slow to
        // answer under load is not flooded with copies. After a restart the first pass resends everything at once. The count
        // lives in memory only: rewriting the stored message to count a send cost a 650 KB LiteDB write per resend.
        UplinkMetrics.Sent(_schedule.Sent(item.UpdateId, time.GetUtcNow()), item.Payload.Length);
        try
        {
            // The envelope's (vehicle, round, update id) also travel as MQTT 5 user properties, so that brokers, bridges and
            // monitoring can route and trace updates without decoding them. Message expiry = the round's deadline.
            IReadOnlyList<(string, string)> properties =
                [("fl-vehicle", item.Vehicle), ("fl-round", item.Round.ToString(CultureInfo.InvariantCulture)), ("fl-update-id", item.UpdateId.ToString())];
            await Task.WhenAll(chunks.Select(c => mqtt.PublishAsync(item.Topic, c, expiry: remaining, properties: properties, cancellationToken: cancellationToken))).ConfigureAwait(false);
        }
        catch (Exception e) when (MqttConnection.IsTransient(e))
        {
            logger.LogInformation("agent {Vehicle}: send of round {Round} interrupted ({Error}); the outbox resends it.", vehicleId, item.Round, e.Message);
        }
    }
}
