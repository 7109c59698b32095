using System.Buffers;
using System.Globalization;
using FleetLearn.Core.Model;
using FleetLearn.Core.Rounds;
using FleetLearn.Transport.Mqtt;

namespace FleetLearn.EdgeAgent;

/// <summary>
/// Global models as they arrive in chunks on <c>model/{version}</c>: reassembled (at most a few transfers at a time), the two
/// newest kept until a round takes one, and handed to a round only after their length and SHA-256 match its signed plan; the
/// decoded model taken last is kept for a later plan on the same version (its bytes are not).
/// </summary>
internal sealed class AgentModels(int maxModelBytes, TimeProvider time)
{
    private long? _lastChunk;

    /// <summary>
    /// True when no model chunk arrived in the last <paramref name="interval"/> (or none ever did): a vehicle that waits for a
    /// model asks the aggregator for it only then. While the broker still fans the retained copy out (1,000 subscribers of
    /// 800 KB each at once), the chunks keep coming, and asking would only add a copy per vehicle to the same broker.
    /// </summary>
    public bool QuietFor(TimeSpan interval) => _lastChunk is not { } last || time.GetElapsedTime(last) >= interval;

    private readonly ChunkAssembler _chunks = new(maxModelBytes, maxPendingTransfers: 4);
    private readonly Dictionary<long, byte[]> _models = [];
    private (string Sha256, Checkpoint Model)? _taken; // the last verified model: its bytes are dropped (800 KB an agent), a later plan on it still finds it

    /// <summary>One chunk of model <paramref name="version"/>; its memory is kept until the model is complete (an MQTT payload: never written again).</summary>
    public void Add(long version, ReadOnlyMemory<byte> chunk)
    {
        _lastChunk = time.GetTimestamp();
        string key = version.ToString(CultureInfo.InvariantCulture);
        if (!_chunks.TryAdd(key, key, chunk, out var whole)) return;
        _models[version] = SharedModels.Intern(whole.ToArray()); // joined once; the agents of one process hold one copy of the same bytes
        foreach (var old in _models.Keys.Where(v => v < version - 1).ToList()) _models.Remove(old);
    }

    /// <summary>Models held now: reassembled versions and the decoded one taken last (for tests and status).</summary>
    public int Held => _models.Count + (_taken is null ? 0 : 1);

    /// <summary>
    /// A plan that does not select this vehicle: the models up to its version are dropped (bytes and the decoded model taken last).
    /// An idle vehicle otherwise holds each new model from its arrival until a plan selects it. Should a later plan select it on the
    /// same version (the round aborted), the round asks the aggregator for the model (<c>up/model</c>), as for any model that did not come.
    /// </summary>
    public void NotSelected(RoundPlan plan)
    {
        foreach (var old in _models.Keys.Where(v => v <= plan.ModelVersion).ToList()) _models.Remove(old);
        if (_taken is { } taken && taken.Model.Version <= plan.ModelVersion) _taken = null;
    }

    /// <summary>The verified model <paramref name="plan"/> trains from, or null while it has not arrived; a copy that fails verification is dropped and reported.</summary>
    public Checkpoint? TryTake(RoundPlan plan)
    {
        if (_taken is { } taken && taken.Model.Version == plan.ModelVersion && taken.Sha256 == plan.ModelSha256) return taken.Model;
        if (!_models.TryGetValue(plan.ModelVersion, out var bytes)) return null;
        try
        {
            var model = VehicleRound.VerifyModel(plan, bytes, SharedModels.GetOrDecode);
            foreach (var old in _models.Keys.Where(v => v <= plan.ModelVersion).ToList()) _models.Remove(old);
            _taken = (plan.ModelSha256, model);
            return model;
        }
        catch (WireFormatException)
        {
            _models.Remove(plan.ModelVersion); // a forged or torn model: wait for a good copy
            throw;
        }
    }
}
