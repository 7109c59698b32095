namespace FleetLearn.Core.Rounds;

/// <summary>
/// Vehicle identifiers double as MQTT client ids, usernames, certificate common names and topic levels, so they are
/// restricted to 1–64 characters of <c>[A-Za-z0-9_.-]</c> (never <c>+ # / $</c>, which would change a topic's meaning).
/// </summary>
public static class VehicleId
{
    /// <summary>Longest accepted id.</summary>
    public const int MaxLength = 64;

    /// <summary>True when <paramref name="id"/> is a well-formed vehicle id.</summary>
    public static bool IsValid(string? id)
    {
        if (string.IsNullOrEmpty(id) || id.Length > MaxLength || id[0] == '.') return false;
        foreach (char c in id)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '_' or '-' or '.')) return false;
        }
        return true;
    }

    /// <summary>Throws <see cref="ArgumentException"/> naming the rule when <paramref name="id"/> is not valid.</summary>
    public static string Validate(string? id, string what = "vehicle id")
    {
        if (!IsValid(id))
            throw new ArgumentException($"The {what} '{id}' is invalid: use 1–{MaxLength} characters of A–Z, a–z, 0–9, '_', '-', '.' (not starting with '.').");
        return id!;
    }

    /// <summary>
    /// The canonical order of vehicle ids (cohort candidates, cohort indices): ordinal, except that runs of digits compare by
    /// value, so <c>vehicle-2</c> precedes <c>vehicle-10</c>. A fleet numbered 0..N−1 is then in numeric order wherever the
    /// round runs — the aggregator over its checked-in ids, the in-process simulator over vehicle indices — and the same
    /// seed selects the same cohort with the same cohort indices on both transports.
    /// </summary>
    public static IComparer<string> Order { get; } = new NaturalOrder();

    private sealed class NaturalOrder : IComparer<string>
    {
        public int Compare(string? x, string? y)
        {
            if (ReferenceEquals(x, y)) return 0;
            if (x is null) return -1;
            if (y is null) return 1;
            int i = 0, j = 0;
            while (i < x.Length && j < y.Length)
            {
                if (char.IsAsciiDigit(x[i]) && char.IsAsciiDigit(y[j]))
                {
                    int si = i, sj = j;
                    while (si < x.Length && x[si] == '0') si++;
                    while (sj < y.Length && y[sj] == '0') sj++;
                    int ei = si, ej = sj;
                    while (ei < x.Length && char.IsAsciiDigit(x[ei])) ei++;
                    while (ej < y.Length && char.IsAsciiDigit(y[ej])) ej++;
                    // Longer significant run = larger value; equal lengths compare digit by digit.
                    int byValue = (ei - si).CompareTo(ej - sj);
                    if (byValue == 0) byValue = string.CompareOrdinal(x, si, y, sj, ei - si);
                    if (byValue != 0) return byValue;
                    // Equal values: fewer leading zeros first, so that distinct ids never compare equal.
                    int byZeros = (si - i).CompareTo(sj - j);
                    if (byZeros != 0) return byZeros;
                    (i, j) = (ei, ej);
                    continue;
                }
                if (x[i] != y[j]) return x[i].CompareTo(y[j]);
                i++;
                j++;
            }
            return (x.Length - i).CompareTo(y.Length - j);
        }
    }
}
