using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace FleetLearn.Core.SecureAggregation;

/// <summary>
/// Key agreement, key derivation, signatures and share encryption, all from .NET's own crypto
/// (OpenSSL on Linux): ECDH and ECDSA on P-256, HKDF-SHA256, AES-256-GCM.
/// </summary>
/// <remarks>
/// Every derived key is bound to the protocol version, the round and the pair (HKDF info), so a
/// key agreed in one round or for one pair can never mask or decrypt anything in another.
/// Round keys are generated fresh in memory by <see cref="SecAggVehicle.Start"/> from the OS CSPRNG
/// and are never persisted: a vehicle that restarts mid-round has lost them and simply counts as
/// dropped, so a key pair is never used for two rounds nor twice in one round after a restart.
/// </remarks>
internal static class SecAggCrypto
{
    public const int PointBytes = 65;     // uncompressed SEC1 point 0x04 || X || Y
    public const int SignatureBytes = 64; // IEEE P1363 r || s
    public const int NonceBytes = 12;
    public const int TagBytes = 16;
    public const int SharePlaintextBytes = 4 + 4 + 2 * Shamir.ElementBytes;
    public const int ShareCiphertextBytes = NonceBytes + SharePlaintextBytes + TagBytes;

    private static readonly byte[] Salt = "FleetLearn/SecAgg/v1"u8.ToArray();

    public static ECDiffieHellman NewKeyPair() => ECDiffieHellman.Create(ECCurve.NamedCurves.nistP256);

    public static byte[] ExportPoint(ECDiffieHellman key)
    {
        var q = key.ExportParameters(false).Q;
        var point = new byte[PointBytes];
        point[0] = 0x04;
        q.X!.CopyTo(point, 1);
        q.Y!.CopyTo(point, 33);
        return point;
    }

    /// <summary>Imports a peer's public point; OpenSSL rejects points not on the curve.</summary>
    public static ECDiffieHellman ImportPoint(ReadOnlySpan<byte> point)
    {
        if (point.Length != PointBytes || point[0] != 0x04) throw new CryptographicException("Not an uncompressed P-256 point.");
        return ECDiffieHellman.Create(new ECParameters
        {
            Curve = ECCurve.NamedCurves.nistP256,
            Q = new ECPoint { X = point.Slice(1, 32).ToArray(), Y = point.Slice(33, 32).ToArray() },
        });
    }

    /// <summary>Rebuilds a private key from a reconstructed scalar; throws if it does not match the advertised point.</summary>
    public static ECDiffieHellman ImportPrivate(ReadOnlySpan<byte> scalar, ReadOnlySpan<byte> advertisedPoint)
        => ECDiffieHellman.Create(new ECParameters
        {
            Curve = ECCurve.NamedCurves.nistP256,
            D = scalar.ToArray(),
            Q = new ECPoint { X = advertisedPoint.Slice(1, 32).ToArray(), Y = advertisedPoint.Slice(33, 32).ToArray() },
        });

    public static byte[] ExportScalar(ECDiffieHellman key)
    {
        var d = key.ExportParameters(true).D!;
        var s = new byte[32];
        d.CopyTo(s, 32 - d.Length);
        CryptographicOperations.ZeroMemory(d);
        return s;
    }

    /// <summary>s_{u,v}: the 256-bit pairwise mask seed, HKDF(ECDH(s_u, s_v), info = "pairwise-mask" ‖ round ‖ min ‖ max).</summary>
    public static byte[] PairwiseMaskSeed(ECDiffieHellman own, ECDiffieHellmanPublicKey peer, ulong round, int u, int v)
        => Derive(own, peer, "pairwise-mask", round, Math.Min(u, v), Math.Max(u, v));

    /// <summary>The AES-GCM key for shares sent from <paramref name="sender"/> to <paramref name="recipient"/> (direction-bound).</summary>
    public static byte[] ShareEncryptionKey(ECDiffieHellman own, ECDiffieHellmanPublicKey peer, ulong round, int sender, int recipient)
        => Derive(own, peer, "share-encryption", round, sender, recipient);

    private static byte[] Derive(ECDiffieHellman own, ECDiffieHellmanPublicKey peer, string label, ulong round, int a, int b)
    {
        byte[] shared = own.DeriveRawSecretAgreement(peer);
        try
        {
            var output = new byte[32];
            HKDF.DeriveKey(HashAlgorithmName.SHA256, shared, output, Salt, Info(label, round, a, b));
            return output;
        }
        finally
        {
            CryptographicOperations.ZeroMemory(shared);
        }
    }

    /// <summary>A 256-bit key for public randomness derived from a public seed (e.g. the graph order).</summary>
    public static byte[] DeriveLabelledKey(ReadOnlySpan<byte> seed, string label)
    {
        var output = new byte[32];
        HKDF.DeriveKey(HashAlgorithmName.SHA256, seed, output, Salt, Encoding.ASCII.GetBytes(label));
        return output;
    }

    private static byte[] Info(string label, ulong round, int a, int b)
    {
        var l = Encoding.ASCII.GetBytes(label);
        var info = new byte[l.Length + 16];
        l.CopyTo(info, 0);
        BinaryPrimitives.WriteUInt64BigEndian(info.AsSpan(l.Length), round);
        BinaryPrimitives.WriteInt32BigEndian(info.AsSpan(l.Length + 8), a);
        BinaryPrimitives.WriteInt32BigEndian(info.AsSpan(l.Length + 12), b);
        return info;
    }

    /// <summary>
    /// Bytes a vehicle signs with its device key to advertise its round keys and, with self-chosen holders, C(u) (count and
    /// ids appended; nothing appended without them, so seed-ring and complete-graph signatures are unchanged).
    /// </summary>
    public static byte[] AdvertisementToBeSigned(ulong round, int vehicle, ReadOnlySpan<byte> encryptionKey, ReadOnlySpan<byte> maskingKey, ReadOnlySpan<int> holders = default)
    {
        var tag = "FleetLearn/SecAgg/v1/advertise-keys"u8;
        int fixedLength = tag.Length + 12 + 2 * PointBytes;
        var data = new byte[fixedLength + (holders.IsEmpty ? 0 : 4 + 4 * holders.Length)];
        tag.CopyTo(data);
        BinaryPrimitives.WriteUInt64BigEndian(data.AsSpan(tag.Length), round);
        BinaryPrimitives.WriteInt32BigEndian(data.AsSpan(tag.Length + 8), vehicle);
        encryptionKey.CopyTo(data.AsSpan(tag.Length + 12));
        maskingKey.CopyTo(data.AsSpan(tag.Length + 12 + PointBytes));
        if (!holders.IsEmpty)
        {
            BinaryPrimitives.WriteInt32BigEndian(data.AsSpan(fixedLength), holders.Length);
            for (int i = 0; i < holders.Length; i++) BinaryPrimitives.WriteInt32BigEndian(data.AsSpan(fixedLength + 4 + 4 * i), holders[i]);
        }
        return data;
    }

    /// <summary>The bytes <paramref name="a"/>'s signature must cover.</summary>
    public static byte[] AdvertisementToBeSigned(AdvertiseKeysMessage a)
        => AdvertisementToBeSigned(a.Round, a.VehicleId, a.EncryptionKey.AsSpan(), a.MaskingKey.AsSpan(), a.Holders.AsSpan());

    /// <summary>
    /// Bytes a vehicle signs in the ConsistencyCheck round (Bonawitz et al. 2017, Fig. 4, active security): the round, the
    /// session (hash of the signed plan and the fleet id; empty when the parameters carry none) and SHA-256 of U3, ascending.
    /// </summary>
    public static byte[] SurvivorSetToBeSigned(ulong round, ReadOnlySpan<byte> session, ReadOnlySpan<int> survivors)
    {
        var tag = "FleetLearn/SecAgg/v1/survivor-set"u8;
        var ids = new byte[4 * survivors.Length];
        for (int i = 0; i < survivors.Length; i++) BinaryPrimitives.WriteInt32BigEndian(ids.AsSpan(4 * i), survivors[i]);
        var data = new byte[tag.Length + 8 + 1 + session.Length + 32];
        tag.CopyTo(data);
        BinaryPrimitives.WriteUInt64BigEndian(data.AsSpan(tag.Length), round);
        data[tag.Length + 8] = (byte)session.Length;
        session.CopyTo(data.AsSpan(tag.Length + 9));
        SHA256.HashData(ids, data.AsSpan(tag.Length + 9 + session.Length));
        return data;
    }

    /// <summary>SHA-256 commitment to the self-mask seed, letting the server check its reconstruction.</summary>
    public static byte[] SelfMaskCommitment(ulong round, int vehicle, ReadOnlySpan<byte> seed)
    {
        var tag = "FleetLearn/SecAgg/v1/self-mask-commitment"u8;
        var data = new byte[tag.Length + 12 + seed.Length];
        tag.CopyTo(data);
        BinaryPrimitives.WriteUInt64BigEndian(data.AsSpan(tag.Length), round);
        BinaryPrimitives.WriteInt32BigEndian(data.AsSpan(tag.Length + 8), vehicle);
        seed.CopyTo(data.AsSpan(tag.Length + 12));
        return SHA256.HashData(data);
    }

    private static byte[] ShareAad(ulong round, int sender, int recipient)
    {
        var aad = new byte[16];
        BinaryPrimitives.WriteUInt64BigEndian(aad, round);
        BinaryPrimitives.WriteInt32BigEndian(aad.AsSpan(8), sender);
        BinaryPrimitives.WriteInt32BigEndian(aad.AsSpan(12), recipient);
        return aad;
    }

    /// <summary>nonce ‖ AES-GCM(sender ‖ recipient ‖ b-share ‖ s-share) ‖ tag, with (round, sender, recipient) as associated data.</summary>
    public static byte[] EncryptShares(byte[] key, ulong round, int sender, int recipient, ReadOnlySpan<byte> selfMaskShare, ReadOnlySpan<byte> keyShare)
    {
        Span<byte> plain = stackalloc byte[SharePlaintextBytes];
        BinaryPrimitives.WriteInt32BigEndian(plain, sender);
        BinaryPrimitives.WriteInt32BigEndian(plain[4..], recipient);
        selfMaskShare.CopyTo(plain[8..]);
        keyShare.CopyTo(plain[(8 + Shamir.ElementBytes)..]);
        var output = new byte[ShareCiphertextBytes];
        var nonce = output.AsSpan(0, NonceBytes);
        RandomNumberGenerator.Fill(nonce);
        using var gcm = new AesGcm(key, TagBytes);
        gcm.Encrypt(nonce, plain, output.AsSpan(NonceBytes, SharePlaintextBytes), output.AsSpan(NonceBytes + SharePlaintextBytes), ShareAad(round, sender, recipient));
        CryptographicOperations.ZeroMemory(plain);
        return output;
    }

    /// <summary>Decrypts and checks a share ciphertext; returns false when it fails authentication or names the wrong pair.</summary>
    public static bool TryDecryptShares(byte[] key, ulong round, int sender, int recipient, ReadOnlySpan<byte> ciphertext, Span<byte> selfMaskShare, Span<byte> keyShare)
    {
        if (ciphertext.Length != ShareCiphertextBytes) return false;
        Span<byte> plain = stackalloc byte[SharePlaintextBytes];
        using var gcm = new AesGcm(key, TagBytes);
        try
        {
            gcm.Decrypt(ciphertext[..NonceBytes], ciphertext.Slice(NonceBytes, SharePlaintextBytes), ciphertext[(NonceBytes + SharePlaintextBytes)..], plain, ShareAad(round, sender, recipient));
        }
        catch (AuthenticationTagMismatchException)
        {
            return false;
        }
        bool ok = BinaryPrimitives.ReadInt32BigEndian(plain) == sender && BinaryPrimitives.ReadInt32BigEndian(plain[4..]) == recipient;
        plain.Slice(8, Shamir.ElementBytes).CopyTo(selfMaskShare);
        plain.Slice(8 + Shamir.ElementBytes, Shamir.ElementBytes).CopyTo(keyShare);
        CryptographicOperations.ZeroMemory(plain);
        return ok;
    }
}
