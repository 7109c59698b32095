using FleetLearn.Core.Model;
using LiteDB;

namespace FleetLearn.Storage;

/// <summary>How a round ended.</summary>
public enum RoundStatus
{
    /// <summary>Plan published, updates being collected.</summary>
    Open,

    /// <summary>Enough updates: the strategy was applied and model N+1 saved.</summary>
    Applied,

    /// <summary>Too few updates by the deadline, or the aggregator restarted mid-round: the model is unchanged.</summary>
    Aborted,
}

/// <summary>One round as the aggregator recorded it.</summary>
public sealed record RoundRecord(long Round, long ModelVersionIn, long? ModelVersionOut, RoundStatus Status, int CohortSize, int Participants,
    double TrainLoss, DateTimeOffset StartedAt, DateTimeOffset? ClosedAt, string Note = "");

/// <summary>
/// The aggregator's checkpoints (LiteDB, <c>Connection=direct</c>): each global model version as a <see cref="Checkpoint"/>
/// in LiteDB file storage (hash-verified on load) and one record per round. Writes are checkpointed and fsynced. On
/// start-up <see cref="LatestModel"/> verifies the newest model; a round left <see cref="RoundStatus.Open"/> by a crash is
/// resumed from its signed plan and its journal of folded updates (plaintext), or closed as aborted by the caller (secure).
/// </summary>
public sealed partial class LiteDbRoundStore : IDisposable
{
    private readonly LiteDatabase _db;
    private readonly ILiteCollection<BsonDocument> _rounds;
    private readonly object _gate = new();
    private bool _disposed;

    private LiteDbRoundStore(string path, LiteDatabase db)
    {
        Path = path;
        _db = db;
        _rounds = db.GetCollection<BsonDocument>("rounds");
        _plans = db.GetCollection<BsonDocument>("plans");
        _cohorts = db.GetCollection<BsonDocument>("cohorts");
        _journal = db.GetCollection<BsonDocument>("journal", BsonAutoId.Int64);
        _journal.EnsureIndex("round");
    }

    /// <summary>Data file path.</summary>
    public string Path { get; }

    /// <summary>Opens or creates the store.</summary>
    public static LiteDbRoundStore Open(string path) => new(System.IO.Path.GetFullPath(path), LiteDbFiles.Open(path, "round store"));

    /// <summary>Saves a model version durably (replacing the same version).</summary>
    public void SaveModel(Checkpoint checkpoint)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        var bytes = checkpoint.ToBytes();
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            LiteDbFiles.EnsureSpace(Path, checkpoint.Spec.ParameterCount * 4L);
            using var stream = new MemoryStream(bytes, writable: false);
            _db.FileStorage.Upload(ModelId(checkpoint.Version), $"model-{checkpoint.Version}.ckpt", stream);
            LiteDbFiles.Durable(_db, Path);
        }
    }

    /// <summary>The newest model version stored, verified; null when none. A corrupt newest model falls back to the one before.</summary>
    public Checkpoint? LatestModel()
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var versions = _db.FileStorage.FindAll().Select(f => f.Id).Where(id => id.StartsWith("model/", StringComparison.Ordinal))
                .Select(id => long.Parse(id.AsSpan(6), System.Globalization.CultureInfo.InvariantCulture)).OrderDescending();
            foreach (var version in versions)
            {
                try
                {
                    using var stream = new MemoryStream();
                    _db.FileStorage.Download(ModelId(version), stream);
                    return Checkpoint.FromBytes(stream.ToArray());
                }
                catch (Exception e) when (e is CheckpointFormatException or LiteException)
                {
                    // A torn last write: the version before it is intact (models are append-only).
                }
            }
            return null;
        }
    }

    /// <summary>Writes (or replaces) a round's record durably.</summary>
    public void SaveRound(RoundRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            LiteDbFiles.EnsureSpace(Path, 0);
            _rounds.Upsert(ToDocument(record));
            LiteDbFiles.Durable(_db, Path);
        }
    }

    /// <summary>
    /// Saves the model a round produced and the round's record in one LiteDB transaction, then makes both durable: a crash
    /// leaves both or neither. Two separate writes leave a window in which model N+1 is stored while its round still reads
    /// <see cref="RoundStatus.Open"/>, so that a restart records the round as aborted and yet resumes from its model.
    /// </summary>
    public void SaveModelAndRound(Checkpoint checkpoint, RoundRecord record)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        ArgumentNullException.ThrowIfNull(record);
        if (record.ModelVersionOut != checkpoint.Version)
            throw new ArgumentException($"Round {record.Round} names model {record.ModelVersionOut?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "none"} as its result, not {checkpoint.Version}.", nameof(record));
        var bytes = checkpoint.ToBytes();
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            LiteDbFiles.EnsureSpace(Path, bytes.Length);
            if (!_db.BeginTrans()) throw new InvalidOperationException("A LiteDB transaction is already open on this thread.");
            try
            {
                using var stream = new MemoryStream(bytes, writable: false);
                _db.FileStorage.Upload(ModelId(checkpoint.Version), $"model-{checkpoint.Version}.ckpt", stream);
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

    /// <summary>
    /// Registers <paramref name="vehicle"/>'s device public key (SubjectPublicKeyInfo) on first sight and returns the key
    /// of record: the stored one when the vehicle is known (a different key is then refused by the caller). In production
    /// the registry is filled by provisioning; first-use registration is what a development fleet gets.
    /// </summary>
    public byte[] RegisterDeviceKey(string vehicle, byte[] subjectPublicKeyInfo)
    {
        ArgumentException.ThrowIfNullOrEmpty(vehicle);
        ArgumentNullException.ThrowIfNull(subjectPublicKeyInfo);
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var vehicles = _db.GetCollection<BsonDocument>("vehicles");
            if (vehicles.FindById(vehicle) is { } known) return known["key"].AsBinary;
            vehicles.Insert(new BsonDocument { ["_id"] = vehicle, ["key"] = subjectPublicKeyInfo, ["registered"] = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() });
            LiteDbFiles.Durable(_db, Path);
            return subjectPublicKeyInfo;
        }
    }

    /// <summary>Every round, in order.</summary>
    public IReadOnlyList<RoundRecord> Rounds()
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return [.. _rounds.FindAll().Select(d => new RoundRecord(
                d["_id"].AsInt64, d["in"].AsInt64, d["out"].IsNull ? null : d["out"].AsInt64, Enum.Parse<RoundStatus>(d["status"].AsString),
                d["cohort"].AsInt32, d["participants"].AsInt32, d["loss"].AsDouble,
                DateTimeOffset.FromUnixTimeMilliseconds(d["started"].AsInt64),
                d["closed"].IsNull ? null : DateTimeOffset.FromUnixTimeMilliseconds(d["closed"].AsInt64), d["note"].AsString)).OrderBy(r => r.Round)];
        }
    }

    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            _db.Checkpoint();
            _db.Dispose();
        }
    }

    private static BsonDocument ToDocument(RoundRecord record) => new()
    {
        ["_id"] = record.Round,
        ["in"] = record.ModelVersionIn,
        ["out"] = record.ModelVersionOut is { } o ? new BsonValue(o) : BsonValue.Null,
        ["status"] = record.Status.ToString(),
        ["cohort"] = record.CohortSize,
        ["participants"] = record.Participants,
        ["loss"] = record.TrainLoss,
        ["started"] = record.StartedAt.ToUnixTimeMilliseconds(),
        ["closed"] = record.ClosedAt is { } c ? new BsonValue(c.ToUnixTimeMilliseconds()) : BsonValue.Null,
        ["note"] = record.Note,
    };

    private static string ModelId(long version) => string.Create(System.Globalization.CultureInfo.InvariantCulture, $"model/{version}");
}
