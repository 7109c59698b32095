namespace FleetLearn.Core.SecureAggregation;

/// <summary>Invalid secure-aggregation configuration (detected before any key is generated).</summary>
public sealed class SecAggConfigurationException(string message) : Exception(message);

/// <summary>A secure-aggregation message could not be decoded: malformed, wrong version, wrong round or over a size limit.</summary>
public sealed class SecAggFormatException(string message) : FormatException(message);

/// <summary>
/// A protocol message was refused by a state machine (wrong phase, failed check, unsafe request).
/// <see cref="Aborted"/> says whether the refusing party aborted the round because of it.
/// </summary>
public sealed class SecAggProtocolException(string message, bool aborted) : Exception(message)
{
    /// <summary>True when the state machine aborted its round because of this message.</summary>
    public bool Aborted { get; } = aborted;
}
