using System.Security.Cryptography;
using System.Text;

namespace FleetLearn.Core.SecureAggregation;

/// <summary>The session id every signature of a round binds: SHA-256 over the fleet id and the signed plan's bytes.</summary>
public static class SecAggSession
{
    /// <summary>SHA-256("FleetLearn/SecAgg/v1/session" ‖ len ‖ fleet ‖ signed plan): a message of one fleet's round cannot pass in another's, nor under another plan.</summary>
    public static byte[] Id(string fleet, ReadOnlySpan<byte> signedPlan)
    {
        ArgumentNullException.ThrowIfNull(fleet);
        var tag = "FleetLearn/SecAgg/v1/session"u8;
        byte[] name = Encoding.UTF8.GetBytes(fleet);
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(tag);
        Span<byte> length = stackalloc byte[4];
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(length, name.Length);
        hash.AppendData(length);
        hash.AppendData(name);
        hash.AppendData(signedPlan);
        return hash.GetHashAndReset();
    }
}

/// <summary>Signatures on aggregator → vehicle SecAgg messages (issue 13 item 5): ECDSA P-256 by the aggregator's plan-signing key over the session and the message's encoding.</summary>
public static class SecAggDownlink
{
    /// <summary>True for the message types the server sends.</summary>
    public static bool IsDownlink(SecAggMessage message) => message.Type is SecAggMessageType.KeyDirectory or SecAggMessageType.ForwardedShares
        or SecAggMessageType.ConsistencyCheck or SecAggMessageType.UnmaskRequest;

    /// <summary>Signs <paramref name="message"/> in place (its <see cref="SecAggMessage.ServerSignature"/>) and returns it.</summary>
    public static T Sign<T>(T message, ECDsa key, ReadOnlySpan<byte> session) where T : SecAggMessage
    {
        ArgumentNullException.ThrowIfNull(message);
        ArgumentNullException.ThrowIfNull(key);
        if (!IsDownlink(message)) throw new ArgumentException($"{message.Type} is not a server-to-vehicle message.", nameof(message));
        message.ServerSignature = [.. key.SignData(ToBeSigned(message, session), HashAlgorithmName.SHA256)];
        return message;
    }

    /// <summary>True when <paramref name="message"/> carries a valid signature of <paramref name="key"/> for <paramref name="session"/>.</summary>
    public static bool Verify(SecAggMessage message, ECDsa key, ReadOnlySpan<byte> session)
        => message.ServerSignature.Length == SecAggCrypto.SignatureBytes
           && key.VerifyData(ToBeSigned(message, session), message.ServerSignature.AsSpan(), HashAlgorithmName.SHA256);

    private static byte[] ToBeSigned(SecAggMessage message, ReadOnlySpan<byte> session)
    {
        var tag = "FleetLearn/SecAgg/v1/server-message"u8;
        var data = new byte[tag.Length + 1 + session.Length + 32];
        tag.CopyTo(data);
        data[tag.Length] = (byte)session.Length;
        session.CopyTo(data.AsSpan(tag.Length + 1));
        SHA256.HashData(SecAggCodec.Encode(message, withServerSignature: false), data.AsSpan(tag.Length + 1 + session.Length));
        return data;
    }
}
