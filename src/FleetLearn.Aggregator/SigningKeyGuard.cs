using System.Security.Cryptography;
using FleetLearn.Storage;
using FleetLearn.Transport.Mqtt;
using Microsoft.Extensions.Logging;

namespace FleetLearn.Aggregator;

/// <summary>
/// The plan-signing key of a fleet, never silently re-created (issue 15 item 5): vehicles pin its public key, so a new key
/// for a fleet that already has a model would leave every vehicle refusing every plan. The key's id is recorded in the round
/// store; a different key is refused unless this start names it in <see cref="AggregatorOptions.AcceptSigningKeyId"/> (rotation).
/// </summary>
internal static class SigningKeyGuard
{
    private const string KeyIdMeta = "signing-key-id";

    /// <summary>Loads (for a new fleet: creates) the signing key and checks it against the fleet's key of record.</summary>
    public static ECDsa Load(AggregatorOptions options, LiteDbRoundStore store, ILogger logger)
    {
        string? recorded = store.GetMeta(KeyIdMeta);
        bool fresh = recorded is null && store.LatestModel() is null && store.Rounds().Count == 0;
        if (!fresh && !File.Exists(options.SigningKeyPath))
            throw new InvalidOperationException(
                $"The plan-signing key '{Path.GetFullPath(options.SigningKeyPath)}' is missing, but fleet database '{store.Path}' already has a model; its vehicles pin the public key{(recorded is null ? "" : $" with id {recorded}")}. " +
                "Restore the key file from its backup: a new key would be refused by every vehicle. To rotate on purpose, see docs/reliability.md.");
        var key = fresh ? SigningKeys.LoadOrCreate(options.SigningKeyPath) : SigningKeys.Load(options.SigningKeyPath);
        string id = SigningKeys.KeyId(key);
        if (recorded is not null && recorded != id)
        {
            if (!string.Equals(options.AcceptSigningKeyId, id, StringComparison.OrdinalIgnoreCase))
            {
                key.Dispose();
                throw new InvalidOperationException(
                    $"The signing key '{Path.GetFullPath(options.SigningKeyPath)}' has id {id}, but this fleet's plans are signed with key {recorded}, which its vehicles pin. " +
                    $"If this is a deliberate rotation (vehicles already trust the new public key), start once with --Aggregator:AcceptSigningKeyId={id}.");
            }
            logger.LogWarning("aggregator: signing key rotated from {Old} to {New} (Aggregator:AcceptSigningKeyId).", recorded, id);
        }
        if (recorded != id) store.SetMeta(KeyIdMeta, id);
        logger.LogInformation("aggregator: plan-signing key {KeyId} ({Path}).", id, Path.GetFullPath(options.SigningKeyPath));
        return key;
    }
}
