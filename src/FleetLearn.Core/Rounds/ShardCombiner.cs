using System.Globalization;
using FleetLearn.Core.Privacy;

namespace FleetLearn.Core.Rounds;

/// <summary>
/// The coordinator's side of a sharded round (Bonawitz et al. 2019): collects the shards' <see cref="PartialSum"/>s until all
/// have arrived or the deadline passes, adds them (ring sums mod 2^m; plaintext means by weight), and releases the combined
/// sum through the same close as <see cref="RoundCoordinator"/> (<see cref="RoundRelease"/>). A shard that is missing at the
/// deadline, or whose part failed, loses its part for the round; the round applies if the minimum holds. Pure, time injected.
/// </summary>
public sealed class ShardCombiner
{
    private readonly RoundSetup _setup;
    private readonly TimeProvider _time;
    private readonly IReadOnlyDictionary<int, IReadOnlyList<string>> _parts;
    private readonly Dictionary<string, int> _owner = new(StringComparer.Ordinal);
    private readonly SortedDictionary<int, PartialSum> _received = [];

    /// <summary>
    /// Opens the combination of round <see cref="RoundSetup.Round"/>: <paramref name="parts"/> maps each shard to the vehicles it
    /// owns (together: <see cref="RoundSetup.Cohort"/>); <see cref="RoundSetup.Deadline"/> is when it closes with what arrived.
    /// </summary>
    public ShardCombiner(RoundSetup setup, IReadOnlyDictionary<int, IReadOnlyList<string>> parts, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(setup);
        ArgumentNullException.ThrowIfNull(parts);
        ArgumentNullException.ThrowIfNull(time);
        if (setup.Rules.Privacy == NoiseMode.Central && setup.CentralNoise is null)
            throw new ArgumentException("Central DP needs a noise source for the round.", nameof(setup));
        if (setup.Secure is not null) throw new ArgumentException("The combiner runs no secure aggregation of its own: each shard runs its own.", nameof(setup));
        if (parts.Count == 0) throw new ArgumentException("A sharded round needs at least one shard.", nameof(parts));
        if (!setup.Codec.Pipeline.IsSecure && !setup.Strategy.CreateAggregator(1).IsStreaming)
            throw new ArgumentException($"Strategy {setup.Strategy.Name} does not combine by weighted mean, so shards' partial means cannot be added: shard only FedAvg-style strategies or use secure aggregation.", nameof(setup));
        foreach (var (shard, vehicles) in parts)
            foreach (var v in vehicles)
                if (!_owner.TryAdd(v, shard)) throw new ArgumentException($"Vehicle {v} is assigned to shards {_owner[v]} and {shard}.", nameof(parts));
        if (_owner.Count != setup.Cohort.Count || setup.Cohort.Any(v => !_owner.ContainsKey(v)))
            throw new ArgumentException("The shards' parts must together be the round's cohort.", nameof(parts));
        _setup = setup;
        _parts = parts;
        _time = time;
        Phase = new CombiningShards(0, parts.Count);
    }

    /// <summary>The round number.</summary>
    public long Round => _setup.Round;

    /// <summary>Where the combination is: <see cref="CombiningShards"/> or <see cref="Closed"/>.</summary>
    public RoundPhase Phase { get; private set; }

    /// <summary>The outcome once closed.</summary>
    public RoundOutcome? Outcome => (Phase as Closed)?.Outcome;

    /// <summary>The round's deadline.</summary>
    public DateTimeOffset Deadline => _setup.Deadline;

    /// <summary>Shards whose part is not in the combined sum (missing at the deadline, or failed), once closed: the next round reassigns their vehicles.</summary>
    public IReadOnlyList<int> LostShards { get; private set; } = [];

    /// <summary>Admits one shard's partial sum; the last expected one closes the round.</summary>
    public RoundStep Receive(PartialSum partial)
    {
        ArgumentNullException.ThrowIfNull(partial);
        if (Phase is Closed) return Verdict(Admission.Rejected(RejectReasons.Late, $"round {Round} has closed"));
        if (partial.Round != Round) return Verdict(Admission.Rejected(RejectReasons.Protocol, $"partial sum of round {partial.Round}; this is round {Round}"));
        if (!_parts.TryGetValue(partial.Shard, out var part)) return Verdict(Admission.Rejected(RejectReasons.NotInCohort, $"shard {partial.Shard} owns no part of round {Round}"));
        if (_received.ContainsKey(partial.Shard)) return Verdict(Admission.Duplicate($"shard {partial.Shard} has handed on its partial sum"));
        if (Refusal(partial, part) is { } why) return Verdict(Admission.Rejected(partial is FailedPartialSum ? RejectReasons.Protocol : RejectReasons.Malformed, why));
        _received.Add(partial.Shard, partial);
        Phase = new CombiningShards(_received.Count, _parts.Count);
        var effects = new List<RoundEffect>();
        if (_received.Count == _parts.Count) Close(effects);
        return new RoundStep(Admission.Accepted, effects);
    }

    /// <summary>Closes the round once its deadline has passed, with the partial sums that arrived.</summary>
    public RoundStep Tick()
    {
        if (Phase is Closed || _time.GetUtcNow() < _setup.Deadline) return RoundStep.Empty;
        var effects = new List<RoundEffect>();
        Close(effects);
        return new RoundStep(Admission.Accepted, effects);
    }

    private static RoundStep Verdict(Admission admission) => new(admission, []);

    private string? Refusal(PartialSum partial, IReadOnlyList<string> part)
    {
        var members = new HashSet<string>(part, StringComparer.Ordinal);
        if (partial.Contributors.Concat(partial.Silent).FirstOrDefault(v => !members.Contains(v)) is { } stranger)
            return $"shard {partial.Shard} names {stranger}, who is not in its part of round {Round}";
        if (partial.Contributors.Distinct(StringComparer.Ordinal).Count() != partial.Contributors.Count)
            return $"shard {partial.Shard} names a contributor twice";
        bool secure = _setup.Codec.Pipeline.IsSecure;
        return partial switch
        {
            FailedPartialSum => null,
            SecurePartialSum s when !secure => $"shard {partial.Shard} sent a secure sum for a plaintext round",
            SecurePartialSum s when s.Sum.Length != _setup.Codec.Pipeline.SecAggDimension =>
                string.Create(CultureInfo.InvariantCulture, $"shard {partial.Shard}'s sum has {s.Sum.Length} coordinates; the round's has {_setup.Codec.Pipeline.SecAggDimension}"),
            SecurePartialSum s when s.Contributors.Count == 0 => $"shard {partial.Shard} sent a sum of nobody",
            PlainPartialSum when secure => $"shard {partial.Shard} sent a plaintext sum for a secure round",
            PlainPartialSum p when p.Mean is { } m && m.Length != _setup.Global.Length =>
                string.Create(CultureInfo.InvariantCulture, $"shard {partial.Shard}'s mean has {m.Length} parameters; the model has {_setup.Global.Length}"),
            PlainPartialSum p when !(p.Weight >= 0) || double.IsInfinity(p.Weight) || p.Mean is null != (p.Contributors.Count == 0) =>
                $"shard {partial.Shard}'s weight {p.Weight} does not fit its {p.Contributors.Count} contributors",
            _ => null,
        };
    }

    private void Close(List<RoundEffect> effects)
    {
        var lost = _parts.Keys.Where(s => _received.GetValueOrDefault(s) is null or FailedPartialSum).Order().ToArray();
        LostShards = lost;
        var counted = _received.Values.Where(p => p is not FailedPartialSum).ToArray();
        var contributors = counted.SelectMany(p => p.Contributors).ToArray();
        // Silent: members that never answered their shard. The vehicles of a lost shard are not silent: their shard failed
        // them, and they stay available for the next round's reassignment.
        var silent = _received.Values.SelectMany(p => p.Silent).ToArray();
        int unclipped = counted.Sum(p => p.UnclippedCount);
        double lossSum = counted.Sum(p => p.LossSum);
        int lossCount = counted.Sum(p => p.LossCount);
        PartialSum combined;
        if (counted.Length == 0)
        {
            string why = _received.Count == 0
                ? $"no shard handed on a partial sum by the deadline (shards {string.Join(", ", lost)})"
                : $"every shard's part was lost: {string.Join("; ", _received.Values.OfType<FailedPartialSum>().Select(f => $"shard {f.Shard}: {f.Reason}"))}";
            combined = new FailedPartialSum { Round = Round, Shard = -1, Contributors = [], Silent = silent, Reason = why };
        }
        else if (_setup.Codec.Pipeline.IsSecure)
        {
            combined = new SecurePartialSum
            {
                Round = Round, Shard = -1, Contributors = contributors, Silent = silent, UnclippedCount = unclipped, LossSum = lossSum, LossCount = lossCount,
                Sum = AddRing(counted.Cast<SecurePartialSum>(), _setup.Codec.Pipeline.SecAggDimension, _setup.Codec.Pipeline.ModulusBits),
            };
        }
        else
        {
            var plain = counted.Cast<PlainPartialSum>().Where(p => p.Mean is not null && p.Weight > 0).ToArray();
            double weight = plain.Sum(p => p.Weight);
            combined = new PlainPartialSum
            {
                Round = Round, Shard = -1, Contributors = contributors, Silent = silent, UnclippedCount = unclipped, LossSum = lossSum, LossCount = lossCount,
                Mean = plain.Length == 0 ? null : plain.Length == 1 ? plain[0].Mean : WeightedMean(plain, weight, _setup.Global.Length), Weight = weight,
            };
        }
        Phase = new Closed(RoundRelease.Close(_setup, combined, silent, _time.GetUtcNow(), effects));
    }

    /// <summary>Σ over shards of their ring sums, mod 2^m: exactly the sum one server would have unmasked over all their survivors.</summary>
    private static uint[] AddRing(IEnumerable<SecurePartialSum> partials, int dimension, int modulusBits)
    {
        uint mask = modulusBits == 32 ? uint.MaxValue : (1u << modulusBits) - 1;
        var sum = new uint[dimension];
        foreach (var p in partials)
        {
            var s = p.Sum.Span;
            for (int i = 0; i < sum.Length; i++) sum[i] = (sum[i] + s[i]) & mask; // uint addition wraps mod 2^32, then mod 2^m
        }
        return sum;
    }

    /// <summary>Σ_s w_s·mean_s / Σ_s w_s in double (plain float sums are not associative: a sharded plaintext round differs in the last bits).</summary>
    private static float[] WeightedMean(PlainPartialSum[] partials, double weight, int dimension)
    {
        var acc = new double[dimension];
        foreach (var p in partials)
            for (int i = 0; i < dimension; i++) acc[i] += p.Weight * p.Mean![i];
        var mean = new float[dimension];
        for (int i = 0; i < dimension; i++) mean[i] = (float)(acc[i] / weight);
        return mean;
    }
}
