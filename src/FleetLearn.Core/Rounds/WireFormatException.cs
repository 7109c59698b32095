
namespace FleetLearn.Core.Rounds;

/// <summary>
/// Thrown by every decoder of this project's wire formats (envelope, chunk, round plan, update) when input is
/// truncated, of another version, for another round, oversized, non-finite or otherwise malformed. The message says why;
/// <see cref="Reason"/> is a short fixed label (one of <see cref="RejectReasons"/>) that metrics count by.
/// </summary>
public sealed class WireFormatException(string message, string reason = RejectReasons.Malformed, Exception? inner = null) : Exception(message, inner)
{
    /// <summary>Creates an exception with the <see cref="RejectReasons.Malformed"/> label.</summary>
    public WireFormatException(string message, Exception? inner) : this(message, RejectReasons.Malformed, inner)
    {
    }

    /// <summary>Fixed label of the failure (a Prometheus label value).</summary>
    public string Reason { get; } = reason;
}
