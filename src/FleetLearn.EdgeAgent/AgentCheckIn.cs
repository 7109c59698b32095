using FleetLearn.Core.Privacy;
using FleetLearn.Core.Rounds;
using FleetLearn.Storage;
using FleetLearn.Transport.Mqtt;
using Microsoft.Extensions.Logging;

namespace FleetLearn.EdgeAgent;

/// <summary>
/// The vehicle's check-in: whether it may train now (the gateway's eligibility policy, parked/charging/unmetered, enough new
/// samples, budget left) and the check-in message (samples offered — 0 withdraws — the device public key and, with a device CA,
/// the vehicle's certificate that certifies it; how long it expects to stay eligible when the platform knows). With
/// <paramref name="pace"/>, an eligible vehicle does not check in before the window the aggregator suggested.
/// </summary>
internal sealed class AgentCheckIn(EdgeAgentOptions options, IVehicleStateProvider state, VehicleStateMonitor? monitor, LiteDbOutbox outbox,
    LiteDbPrivacyLedgerStore ledger, MqttConnection mqtt, byte[] devicePublicKey, byte[]? deviceCertificate, ILogger logger, TimeProvider? time = null, AgentPace? pace = null)
{
    /// <summary>The outbox state key of the last round the vehicle decided (joined or declined).</summary>
    public const string LastRoundKey = "last-round";

    /// <summary>The outbox state key of the sample count when the vehicle last joined a round.</summary>
    public const string SamplesAtLastRoundKey = "samples-at-last-round";

    /// <summary>Why the vehicle may not train now with <paramref name="data"/>, or null.</summary>
    public string? Ineligibility(VehicleDataset data)
    {
        if (monitor?.Ineligibility() is { } why) return why; // temperature, state unknown, … (the gateway's policy)
        var current = state.Current();
        if (options.RequireParked && !current.Parked) return "not parked";
        if (options.RequireCharging && !current.Charging) return "not charging";
        if (options.RequireUnmetered && !current.Unmetered) return "on a metered link";
        long newSamples = data.Rows.Length - (outbox.GetState(SamplesAtLastRoundKey) ?? 0);
        if (options.MinNewSamples > 0 && newSamples < options.MinNewSamples) return $"{newSamples} new samples < {options.MinNewSamples}";
        if (data.Rows.Length == 0) return "no local samples";
        if (options.EpsilonBudget is not null && VehicleBudget.Spent(ledger.EpsilonOf(options.VehicleId), options.EpsilonBudget)) return "privacy budget spent";
        return null;
    }

    /// <summary>
    /// Publishes the check-in for <paramref name="data"/> (expires after two check-in intervals: a silent vehicle leaves the
    /// roster), stamped with the vehicle's clock; an eligible vehicle skips a pass when its last check-in says the same and
    /// stays valid past the next one (<see cref="EdgeAgentOptions.CheckInInterval"/>).
    /// </summary>
    public Task PublishAsync(VehicleDataset data, CancellationToken cancellationToken)
    {
        var why = Ineligibility(data);
        if (why is not null) logger.LogDebug("agent {Vehicle}: not eligible ({Reason}); withdraws its check-in.", options.VehicleId, why);
        else if (pace?.MayCheckIn() == false)
        {
            logger.LogDebug("agent {Vehicle}: eligible, but the aggregator asked it to check in from {From:O}; not yet.", options.VehicleId, pace.Current!.From);
            return Task.CompletedTask;
        }
        var now = (time ?? TimeProvider.System).GetUtcNow();
        if (why is null && _last is { } last && last.Samples == data.Rows.Length && last.Round == (outbox.GetState(LastRoundKey) ?? 0)
            && now - last.At < options.EffectiveCheckInInterval - options.ResendInterval)
            return Task.CompletedTask; // the last check-in says the same and stays valid past the next pass (Agent:CheckInInterval)
        return SendAsync(why is null ? data.Rows.Length : 0, why is null ? EligibleFor(state.Current().EligibleUntil, now) : null, now, cancellationToken);
    }

    /// <summary>The last check-in sent: what it said and when.</summary>
    private sealed record Sent(int Samples, long Round, DateTimeOffset At);

    private volatile Sent? _last;

    /// <summary>
    /// Withdraws the vehicle's check-in at once (a check-in of 0 samples): it declined the work it was handed, so under FedBuff
    /// its slot goes to another vehicle now rather than when the lease ends. It checks in again at its next pass.
    /// </summary>
    public Task WithdrawAsync(CancellationToken cancellationToken) => SendAsync(0, null, (time ?? TimeProvider.System).GetUtcNow(), cancellationToken);

    private async Task SendAsync(int samples, TimeSpan? eligibleFor, DateTimeOffset now, CancellationToken cancellationToken)
    {
        long round = outbox.GetState(LastRoundKey) ?? 0;
        var checkin = new Checkin(samples, devicePublicKey, deviceCertificate, eligibleFor);
        var envelope = new Envelope(EnvelopeKind.Checkin, options.VehicleId, round, Guid.NewGuid(), checkin.Encode());
        // The vehicle's wall-clock time rides along, so that the aggregator can report a vehicle whose clock is off (docs/reliability.md).
        var sentAt = now.ToUnixTimeMilliseconds().ToString(System.Globalization.CultureInfo.InvariantCulture);
        await mqtt.PublishAsync(mqtt.Topics.Checkin(options.VehicleId), envelope.Encode(), expiry: options.EffectiveCheckInInterval * 2, properties: [(Checkin.SentAtProperty, sentAt)], cancellationToken: cancellationToken).ConfigureAwait(false);
        _last = samples > 0 ? new Sent(samples, round, now) : null;
    }

    /// <summary>How long from <paramref name="now"/> the vehicle stays eligible, as a check-in carries it: null when unknown or over, at most <see cref="Checkin.MaxEligibleFor"/>.</summary>
    internal static TimeSpan? EligibleFor(DateTimeOffset? until, DateTimeOffset now) =>
        until is not { } u || u - now < TimeSpan.FromSeconds(1) ? null : u - now > Checkin.MaxEligibleFor ? Checkin.MaxEligibleFor : u - now;

    /// <summary>
    /// Checks in at once whenever the vehicle's state changes (it became eligible, or stopped being eligible — then the check-in
    /// of 0 samples withdraws it, and under FedBuff frees its slot), instead of at the next resend pass.
    /// </summary>
    /// <returns>The subscription: disposing it stops the immediate check-ins (the monitor may outlive the worker).</returns>
    public IDisposable CheckInOnChange(Func<VehicleDataset> data, CancellationToken cancellationToken)
    {
        if (monitor is null) return new Subscription(() => { });
        Action<VehicleState> onChange = state => _ = Task.Run(async () =>
        {
            try
            {
                await mqtt.WaitUntilConnectedAsync(cancellationToken).ConfigureAwait(false);
                await PublishAsync(data(), cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException || MqttConnection.IsTransient(e))
            {
                logger.LogDebug("agent {Vehicle}: check-in on a state change not sent ({Error}); the resend pass checks in.", options.VehicleId, e.Message);
            }
        }, CancellationToken.None);
        monitor.Changed += onChange;
        return new Subscription(() => monitor.Changed -= onChange);
    }

    private sealed class Subscription(Action end) : IDisposable
    {
        public void Dispose() => end();
    }

    /// <summary>The vehicle's LiteDB ledger as its rounds see it.</summary>
    public IVehicleLedger Ledger { get; } = new AgentLedger(ledger, options.VehicleId);

    private sealed class AgentLedger(LiteDbPrivacyLedgerStore store, string vehicle) : IVehicleLedger
    {
        public double Epsilon => store.EpsilonOf(vehicle);

        public bool CanParticipate(PrivacyCharge charge) => store.CanParticipate(vehicle, charge);

        public bool TryRecord(long round, PrivacyCharge charge) => store.TryRecord(vehicle, round, charge, out _);

        public bool HasRecorded(long round) => store.Get(vehicle).Rounds.Contains(round);
    }
}
