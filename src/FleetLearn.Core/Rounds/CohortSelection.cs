using FleetLearn.Core.Random;

namespace FleetLearn.Core.Rounds;

/// <summary>The one cohort selection of the code base: a seeded uniform sample without replacement, per round.</summary>
public static class CohortSelection
{
    /// <summary>Seed purpose of the selection draw (a round's selection never shares randomness with anything else).</summary>
    private const ulong Purpose = 0x5E1E;

    /// <summary>How many vehicles are asked to cover <paramref name="cohortSize"/> updates with over-selection o: ⌈K·(1+o)⌉.</summary>
    public static int SelectionSize(int cohortSize, double overSelection) => (int)Math.Ceiling(cohortSize * (1 + overSelection) - 1e-9);

    /// <summary>
    /// Selects min(<paramref name="count"/>, |candidates|) of <paramref name="candidates"/> uniformly without replacement (partial
    /// Fisher–Yates from (seed, round)), returned in the candidates' own order. Runners pass candidates in the canonical order
    /// (vehicle index; <see cref="VehicleId.Order"/> of ids) so that the same fleet and seed select the same vehicles wherever the round runs.
    /// </summary>
    public static T[] Select<T>(IReadOnlyList<T> candidates, int count, ulong seed, long round)
    {
        ArgumentNullException.ThrowIfNull(candidates);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        int want = Math.Min(count, candidates.Count);
        var positions = new int[candidates.Count];
        for (int i = 0; i < positions.Length; i++) positions[i] = i;
        var rng = DeterministicRandom.Derive(seed, Purpose, (ulong)round);
        for (int i = 0; i < want; i++)
        {
            int j = i + rng.NextInt(positions.Length - i);
            (positions[i], positions[j]) = (positions[j], positions[i]);
        }
        Array.Sort(positions, 0, want);
        var chosen = new T[want];
        for (int i = 0; i < want; i++) chosen[i] = candidates[positions[i]];
        return chosen;
    }
}
