namespace FleetLearn.Core.Rounds;

/// <summary>One plaintext update a round folded, as the runner keeps it durably so that a restarted aggregator can resume the round.</summary>
/// <param name="Vehicle">The sending vehicle.</param>
/// <param name="UpdateId">The update's id (the dedupe key with vehicle and round).</param>
/// <param name="Envelope">The codec envelope exactly as folded.</param>
/// <param name="TrainLoss">The local training loss the vehicle reported.</param>
/// <param name="LeaseVersion">FedBuff only: the model version the vehicle was handed and trained on (null for a synchronous round's update).</param>
/// <param name="Slot">FedBuff only: its slot among that version's check-ins (the codec's vehicle field).</param>
public sealed record JournaledUpdate(string Vehicle, Guid UpdateId, byte[] Envelope, double TrainLoss, long? LeaseVersion = null, ulong Slot = 0);

/// <summary>
/// Make an accepted plaintext update durable before it is acknowledged: the ack then means "committed", and a restart
/// resumes the round by replaying the journal (<see cref="RoundCoordinator.Resume"/>, <see cref="BufferedCoordinator.Resume"/>)
/// instead of losing what the vehicles already let go of. <paramref name="Round"/> is the round, or for FedBuff the version
/// the update's step will produce.
/// </summary>
public sealed record JournalEffect(long Round, JournaledUpdate Update) : RoundEffect;
