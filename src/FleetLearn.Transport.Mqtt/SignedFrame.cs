using System.Buffers.Binary;
using System.Security.Cryptography;
using FleetLearn.Core.Rounds;

namespace FleetLearn.Transport.Mqtt;

/// <summary>
/// The framing every signed downlink message shares (round plan, FedBuff assignment, pace suggestion): the signed body, a
/// u16 little-endian signature length, and an ECDSA P-256 / SHA-256 signature in IEEE P1363 form over the body.
/// </summary>
internal static class SignedFrame
{
    /// <summary>body ‖ u16 length ‖ signature of <paramref name="body"/> by <paramref name="key"/>.</summary>
    public static byte[] Seal(ReadOnlySpan<byte> body, ECDsa key)
    {
        var signature = key.SignData(body, HashAlgorithmName.SHA256, DSASignatureFormat.IeeeP1363FixedFieldConcatenation);
        var bytes = new byte[body.Length + 2 + signature.Length];
        body.CopyTo(bytes);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(body.Length), (ushort)signature.Length);
        signature.CopyTo(bytes, body.Length + 2);
        return bytes;
    }

    /// <summary>
    /// Checks that <paramref name="bytes"/> is exactly its first <paramref name="signed"/> bytes, a signature length and that
    /// many signature bytes, and that the signature is <paramref name="publicKey"/>'s over them; else a
    /// <see cref="WireFormatException"/> naming <paramref name="what"/>.
    /// </summary>
    public static void Open(ReadOnlySpan<byte> bytes, int signed, ECDsa publicKey, string what)
    {
        if (bytes.Length < signed + 2) throw new WireFormatException($"{what} truncated before its signature.", RejectReasons.Truncated);
        int length = BinaryPrimitives.ReadUInt16LittleEndian(bytes[signed..]);
        if (bytes.Length != signed + 2 + length) throw new WireFormatException($"{what} signature length does not match the message length.", RejectReasons.Truncated);
        if (!publicKey.VerifyData(bytes[..signed], bytes[(signed + 2)..], HashAlgorithmName.SHA256, DSASignatureFormat.IeeeP1363FixedFieldConcatenation))
            throw new WireFormatException($"{what} signature is not valid for the pinned aggregator key.", RejectReasons.Signature);
    }
}
