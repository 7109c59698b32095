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
}
