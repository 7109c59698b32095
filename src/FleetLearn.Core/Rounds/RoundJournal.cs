namespace FleetLearn.Core.Rounds;

/// <summary>One plaintext update a round folded, as the runner keeps it durably so that a restarted aggregator can resume the round.</summary>
/// <param name="Vehicle">The sending vehicle.</param>
/// <param name="UpdateId">The update's id (the dedupe key with vehicle and round).</param>
/// <param name="Envelope">The codec envelope exactly as folded.</param>
/// <param name="TrainLoss">The local training loss the vehicle reported.</param>
public sealed record JournaledUpdate(string Vehicle, Guid UpdateId, byte[] Envelope, double TrainLoss);

/// <summary>
/// Make an accepted plaintext update durable before it is acknowledged: the ack then means "committed", and a restart
/// resumes the round by replaying the journal (<see cref="RoundCoordinator.Resume"/>) instead of losing what the vehicles
/// already let go of.
/// </summary>
public sealed record JournalEffect(long Round, JournaledUpdate Update) : RoundEffect;
