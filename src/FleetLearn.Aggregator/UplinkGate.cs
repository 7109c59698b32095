using FleetLearn.Core.Rounds;
using FleetLearn.Transport.Mqtt;

namespace FleetLearn.Aggregator;

/// <summary>
/// The cohort check that comes before any chunk is held (issue 15, chunk bombs): a transfer of more than one chunk starts
/// only for a vehicle of the open round's cohort, or for one that a recently closed round still answers (a resend after a
/// lost ack gets its Duplicate, a straggler its Late). A single-chunk message holds nothing, so it is decoded and answered
/// as before: a vehicle outside the cohort still learns why it was refused. Behind the gate, <see cref="ChunkAssembler"/>
/// caps each vehicle at two transfers of one update's size.
/// </summary>
internal sealed class UplinkGate(ClosedRounds closed)
{
    /// <summary>The closed rounds the aggregator still answers for.</summary>
    public ClosedRounds Closed => closed;

    /// <summary>The round whose messages are handled now (null while no round is open).</summary>
    public RoundCoordinator? Open { get; set; }

    /// <summary>True when <paramref name="vehicle"/> may start the transfer <paramref name="header"/> describes.</summary>
    public bool Admits(string vehicle, ChunkHeader header) =>
        header.Count == 1 || Open?.InCohort(vehicle) == true || closed.Remembers(vehicle);
}
