using System.Security.Cryptography;
using FleetLearn.Core.Rounds;
using FleetLearn.Storage;
using FleetLearn.Transport.Mqtt;
using Microsoft.Extensions.Logging;

namespace FleetLearn.EdgeAgent;

/// <summary>
/// The vehicle's side of pace steering (docs/async.md): keeps the latest signed check-in window the aggregator suggested (in the
/// outbox's durable state, so it survives a restart) and holds back check-ins before the window opens. A vehicle that never
/// received one, or whose window has passed, checks in at its next eligible moment; a withdrawal is never held back.
/// </summary>
public sealed class AgentPace
{
    private const string IssuedKey = "pace-issued", FromKey = "pace-from", UntilKey = "pace-until";
    private readonly LiteDbOutbox _outbox;
    private readonly ECDsa _aggregatorKey;
    private readonly string _fleet, _vehicle;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private int _held;

    /// <summary>Reads the suggestion a previous run stored, if any.</summary>
    public AgentPace(LiteDbOutbox outbox, ECDsa aggregatorKey, string fleet, string vehicle, TimeProvider time, ILogger logger)
    {
        (_outbox, _aggregatorKey, _fleet, _vehicle, _time, _logger) = (outbox, aggregatorKey, fleet, vehicle, time, logger);
        if (outbox.GetState(IssuedKey) is { } issued && outbox.GetState(FromKey) is { } from && outbox.GetState(UntilKey) is { } until && from < until)
            Current = new PaceAdvice(fleet, vehicle, DateTimeOffset.FromUnixTimeMilliseconds(issued), DateTimeOffset.FromUnixTimeMilliseconds(from), DateTimeOffset.FromUnixTimeMilliseconds(until));
    }

    /// <summary>The latest valid suggestion received (null: none yet).</summary>
    public PaceAdvice? Current { get; private set; }

    /// <summary>Check-ins held back because the suggested window had not opened.</summary>
    public int Held => Volatile.Read(ref _held);

    /// <summary>
    /// A suggestion from the inbox: verified against the pinned aggregator key, this fleet and this vehicle (a forged one throws
    /// a <see cref="WireFormatException"/> and changes nothing), and kept when it is newer than the one held and not yet over.
    /// </summary>
    /// <returns>Whether it replaced the one held.</returns>
    public bool Accept(ReadOnlySpan<byte> payload)
    {
        var advice = PaceAdvice.Verify(payload, _aggregatorKey, _fleet, _vehicle);
        if (Current is { } held && advice.Issued <= held.Issued)
        {
            _logger.LogDebug("agent {Vehicle}: pace suggestion issued {Issued:O} is not newer than the one held ({Held:O}); ignored.", _vehicle, advice.Issued, held.Issued);
            return false;
        }
        if (advice.Until <= _time.GetUtcNow())
        {
            _logger.LogDebug("agent {Vehicle}: pace suggestion {From:O} – {Until:O} arrived after its window; ignored.", _vehicle, advice.From, advice.Until);
            return false;
        }
        _outbox.SetState(IssuedKey, advice.Issued.ToUnixTimeMilliseconds());
        _outbox.SetState(FromKey, advice.From.ToUnixTimeMilliseconds());
        _outbox.SetState(UntilKey, advice.Until.ToUnixTimeMilliseconds());
        Current = advice;
        _logger.LogInformation("agent {Vehicle}: the aggregator asks it to check in next between {From:O} and {Until:O}.", _vehicle, advice.From, advice.Until);
        return true;
    }

    /// <summary>Whether an eligible vehicle may check in now: no suggestion, its window has opened, or it has passed (counted when not).</summary>
    public bool MayCheckIn()
    {
        if (Current is not { } advice) return true;
        var now = _time.GetUtcNow();
        if (now >= advice.From) return true; // in its window, or the window passed unused: the next eligible moment
        Interlocked.Increment(ref _held);
        return false;
    }
}
