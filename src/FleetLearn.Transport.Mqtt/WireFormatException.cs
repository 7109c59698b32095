namespace FleetLearn.Transport.Mqtt;

/// <summary>
/// Thrown by every decoder of this project's wire formats (envelope, chunk, round plan, update) when input is
/// truncated, of another version, for another round, oversized, non-finite or otherwise malformed. The message says why.
/// </summary>
public sealed class WireFormatException(string message, Exception? inner = null) : Exception(message, inner);
