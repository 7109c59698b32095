using FleetLearn.Core.Rounds;
using LiteDB;

namespace FleetLearn.Storage;

/// <summary>The open round's signed plan and the journal of the updates it folded (issue 14: a restarted aggregator resumes the round).</summary>
public sealed partial class LiteDbRoundStore
{
    private readonly ILiteCollection<BsonDocument> _plans;
    private readonly ILiteCollection<BsonDocument> _journal;
    private readonly ILiteCollection<BsonDocument> _cohorts;

    /// <summary>
    /// Records a round as open together with the signed plan that announced it and its <paramref name="cohort"/> (kept as
    /// long as the round's update ids, so that a restarted aggregator still answers the cohort's resends), in one
    /// transaction, durably.
    /// </summary>
    public void SaveOpenRound(RoundRecord record, byte[] signedPlan, IReadOnlyList<string>? cohort = null)
    {
        ArgumentNullException.ThrowIfNull(record);
        ArgumentNullException.ThrowIfNull(signedPlan);
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            LiteDbFiles.EnsureSpace(Path, signedPlan.Length);
            if (!_db.BeginTrans()) throw new InvalidOperationException("A LiteDB transaction is already open on this thread.");
            try
            {
                _plans.Upsert(new BsonDocument { ["_id"] = record.Round, ["plan"] = signedPlan });
                if (cohort is not null) _cohorts.Upsert(new BsonDocument { ["_id"] = record.Round, ["vehicles"] = new BsonArray(cohort.Select(v => new BsonValue(v))) });
                _rounds.Upsert(ToDocument(record));
                _db.Commit();
            }
            catch
            {
                _db.Rollback();
                throw;
            }
            LiteDbFiles.Durable(_db, Path);
        }
    }

    /// <summary>The signed plan of round <paramref name="round"/> while it is open (null once it closed, or for a round an older version opened).</summary>
    public byte[]? SignedPlan(long round)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _plans.FindById(round)?["plan"].AsBinary;
        }
    }

    /// <summary>
    /// Appends an update round <paramref name="round"/> folded, durably (checkpointed and fsynced), before the aggregator
    /// acknowledges it: a crash after the ack can no longer lose it.
    /// </summary>
    public void Journal(long round, JournaledUpdate update)
    {
        ArgumentNullException.ThrowIfNull(update);
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            LiteDbFiles.EnsureSpace(Path, update.Body.Length);
            var envelope = update.Envelope; // joined here, once: the round folded it from the segments it arrived in
            var entry = new BsonDocument
            {
                ["round"] = round, ["id"] = update.UpdateId, ["vehicle"] = update.Vehicle, ["envelope"] = envelope, ["loss"] = update.TrainLoss,
            };
            if (update.LeaseVersion is { } version) (entry["lease"], entry["slot"]) = (version, unchecked((long)update.Slot));
            _journal.Insert(entry);
            LiteDbFiles.Durable(_db, Path);
        }
    }

    /// <summary>The updates round <paramref name="round"/> folded, in the order it folded them (for <see cref="RoundCoordinator.Resume"/>).</summary>
    public IReadOnlyList<JournaledUpdate> JournalOf(long round)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return [.. _journal.Find(Query.EQ("round", round)).OrderBy(d => d["_id"].AsInt64).Where(d => d["envelope"].IsBinary)
                .Select(d => new JournaledUpdate(d["vehicle"].AsString, d["id"].AsGuid, d["envelope"].AsBinary, d["loss"].AsDouble,
                    d.TryGetValue("lease", out var lease) && lease.IsInt64 ? lease.AsInt64 : null, d.TryGetValue("slot", out var slot) && slot.IsInt64 ? unchecked((ulong)slot.AsInt64) : 0))];
        }
    }

    /// <summary>Ids of the updates round <paramref name="round"/> folded (kept after its close: a resend is then answered duplicate, not late).</summary>
    public IReadOnlySet<Guid> UpdateIdsOf(long round)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _journal.Find(Query.EQ("round", round)).Select(d => d["id"].AsGuid).ToHashSet();
        }
    }

    /// <summary>Round <paramref name="round"/>'s cohort and the vehicles whose updates it folded (kept as long as the ids).</summary>
    public IReadOnlySet<string> VehiclesOf(long round)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var vehicles = _journal.Find(Query.EQ("round", round)).Select(d => d["vehicle"].AsString).ToHashSet(StringComparer.Ordinal);
            if (_cohorts.FindById(round)?["vehicles"] is { IsArray: true } cohort) vehicles.UnionWith(cohort.AsArray.Select(v => v.AsString));
            return vehicles;
        }
    }

    /// <summary>
    /// After round <paramref name="closed"/> was stored as closed: drops its plan and its updates' bytes (their ids stay),
    /// and forgets the ids of rounds older than <paramref name="keep"/> rounds, whose resends no longer matter.
    /// </summary>
    public void CompactJournal(long closed, int keep = 3)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            LiteDbFiles.EnsureSpace(Path, 0);
            _plans.DeleteMany(Query.LTE("_id", closed));
            _journal.DeleteMany(Query.LTE("round", closed - keep));
            _cohorts.DeleteMany(Query.LTE("_id", closed - keep));
            foreach (var d in _journal.Find(Query.And(Query.LTE("round", closed), Query.Not("envelope", BsonValue.Null))).ToList())
            {
                d["envelope"] = BsonValue.Null;
                _journal.Update(d);
            }
            LiteDbFiles.Durable(_db, Path);
        }
    }
}

/// <summary>Small named facts about the fleet the round store keeps (signing key id, instance id, epoch).</summary>
public sealed partial class LiteDbRoundStore
{
    /// <summary>The stored value of <paramref name="key"/>, or null.</summary>
    public string? GetMeta(string key)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _db.GetCollection<BsonDocument>("meta").FindById(key)?["value"].AsString;
        }
    }

    /// <summary>Stores <paramref name="value"/> under <paramref name="key"/> durably.</summary>
    public void SetMeta(string key, string value)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            LiteDbFiles.EnsureSpace(Path, 0);
            _db.GetCollection<BsonDocument>("meta").Upsert(new BsonDocument { ["_id"] = key, ["value"] = value });
            LiteDbFiles.Durable(_db, Path);
        }
    }
}
