using System.Collections.Concurrent;
using FleetLearn.Core.Model;

namespace FleetLearn.EdgeAgent;

/// <summary>
/// Verified global models by SHA-256, shared by the agents of one process (weakly held: a model no agent holds is collected).
/// A vehicle runs one agent and gains nothing; a simulation hosting 1,000 agents decodes each 800 KB model once instead of
/// 1,000 times (docs/scale.md). Safe to share: a checkpoint is only ever read (training copies it into the trainer), and an
/// entry is found only by the SHA-256 a signed plan names after the agent's own copy matched it.
/// </summary>
internal static class SharedModels
{
    private static readonly ConcurrentDictionary<string, WeakReference<Checkpoint>> Models = new(StringComparer.Ordinal);

    /// <summary>The checkpoint with <paramref name="sha256"/>, decoded by <paramref name="decode"/> only when no agent of this process holds it.</summary>
    public static Checkpoint GetOrDecode(string sha256, Func<Checkpoint> decode)
    {
        if (Models.TryGetValue(sha256, out var weak) && weak.TryGetTarget(out var shared)) return shared;
        var model = decode();
        foreach (var (key, value) in Models)
            if (!value.TryGetTarget(out _)) Models.TryRemove(key, out _); // models no agent holds any more
        Models[sha256] = new WeakReference<Checkpoint>(model);
        return model;
    }
}
