using System.Collections.Concurrent;
using System.Security.Cryptography;
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

    private static readonly ConcurrentDictionary<string, WeakReference<byte[]>> Bytes = new(StringComparer.Ordinal);

    /// <summary>
    /// A reassembled model's bytes as one array per content in this process: <paramref name="whole"/> itself, or an array another agent
    /// holds with the same SHA-256 (weakly held). Between a model's arrival and the plan that takes it, and after the last round,
    /// every agent kept its own 800 KB copy: 800 MB at 1,000 agents (docs/scale.md). The array is only ever read (hashed against the plan, decoded).
    /// </summary>
    public static byte[] Intern(byte[] whole)
    {
        ArgumentNullException.ThrowIfNull(whole);
        string sha256 = Convert.ToHexStringLower(SHA256.HashData(whole));
        if (Bytes.TryGetValue(sha256, out var weak) && weak.TryGetTarget(out var shared) && shared.Length == whole.Length) return shared;
        foreach (var (key, value) in Bytes)
            if (!value.TryGetTarget(out _)) Bytes.TryRemove(key, out _); // bytes no agent holds any more
        Bytes[sha256] = new WeakReference<byte[]>(whole);
        return whole;
    }
}
