using System.Buffers;
using System.Runtime.InteropServices;

namespace FleetLearn.Core.Rounds;

/// <summary>One plaintext update a round folded, as the runner keeps it durably so that a restarted aggregator can resume the round.</summary>
/// <param name="Vehicle">The sending vehicle.</param>
/// <param name="UpdateId">The update's id (the dedupe key with vehicle and round).</param>
/// <param name="Body">The codec envelope exactly as folded: the received segments (the runner never writes to them), or one array read back from the journal.</param>
/// <param name="TrainLoss">The local training loss the vehicle reported.</param>
/// <param name="LeaseVersion">FedBuff only: the model version the vehicle was handed and trained on (null for a synchronous round's update).</param>
/// <param name="Slot">FedBuff only: its slot among that version's check-ins (the codec's vehicle field).</param>
public sealed record JournaledUpdate(string Vehicle, Guid UpdateId, ReadOnlySequence<byte> Body, double TrainLoss, long? LeaseVersion = null, ulong Slot = 0)
{
    /// <summary>An update whose envelope is one array (as read back from the journal).</summary>
    public JournaledUpdate(string Vehicle, Guid UpdateId, byte[] Envelope, double TrainLoss, long? LeaseVersion = null, ulong Slot = 0)
        : this(Vehicle, UpdateId, new ReadOnlySequence<byte>(Envelope), TrainLoss, LeaseVersion, Slot)
    {
    }

    /// <summary>The envelope as one array: the array itself when it is one, else a copy (the store's, when it writes the journal).</summary>
    public byte[] Envelope => Body.IsSingleSegment && MemoryMarshal.TryGetArray(Body.First, out var array) && array.Offset == 0 && array.Count == array.Array!.Length
        ? array.Array
        : Body.ToArray();
}

/// <summary>
/// Make an accepted plaintext update durable before it is acknowledged: the ack then means "committed", and a restart
/// resumes the round by replaying the journal (<see cref="RoundCoordinator.Resume"/>, <see cref="BufferedCoordinator.Resume"/>)
/// instead of losing what the vehicles already let go of. <paramref name="Round"/> is the round, or for FedBuff the version
/// the update's step will produce.
/// </summary>
public sealed record JournalEffect(long Round, JournaledUpdate Update) : RoundEffect;
