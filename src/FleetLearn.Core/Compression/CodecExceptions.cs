namespace FleetLearn.Core.Compression;

/// <summary>
/// An update-pipeline configuration that cannot work (unknown codec token, top-k with secure aggregation,
/// a modulus too small for the cohort's sum, …), raised when the configuration is read. The message names the conflict.
/// </summary>
public sealed class CodecConfigurationException(string message) : ArgumentException(message);

/// <summary>An encoded update could not be decoded: malformed, wrong version, wrong round, NaN, or over a size limit.</summary>
public sealed class UpdateFormatException(string message) : FormatException(message);

/// <summary>
/// A secure sum that honest inputs cannot produce (a forged weight or out-of-range coordinate): the round must abort and
/// release nothing. The message says which coordinate and why.
/// </summary>
public sealed class SecureSumRejectedException(string message) : Exception(message);
