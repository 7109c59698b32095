using System.Collections.Immutable;
using System.Runtime.InteropServices;

namespace FleetLearn.Core.SecureAggregation;

/// <summary>Message kinds; the byte value is the wire tag.</summary>
public enum SecAggMessageType : byte
{
    /// <summary>Vehicle → server, phase 0.</summary>
    AdvertiseKeys = 1,
    /// <summary>Server → vehicle, end of phase 0: the signed keys of its share holders.</summary>
    KeyDirectory = 2,
    /// <summary>Vehicle → server, phase 1: encrypted shares, one per holder.</summary>
    ShareKeys = 3,
    /// <summary>Server → vehicle, end of phase 1: the encrypted shares addressed to it.</summary>
    ForwardedShares = 4,
    /// <summary>Vehicle → server, phase 2.</summary>
    MaskedInput = 5,
    /// <summary>Server → vehicle, end of phase 2: survivors and dropped vehicles.</summary>
    UnmaskRequest = 6,
    /// <summary>Vehicle → server, phase 3: revealed shares.</summary>
    UnmaskResponse = 7,
    /// <summary>Server → vehicle, end of phase 2 under a malicious server: the survivor set U3 to sign (Bonawitz et al. 2017, ConsistencyCheck).</summary>
    ConsistencyCheck = 8,
    /// <summary>Vehicle → server: the vehicle's device signature on U3.</summary>
    ConsistencySignature = 9,
}

/// <summary>Which of a peer's two secrets a revealed share belongs to.</summary>
public enum ShareKind : byte
{
    /// <summary>Share of the self-mask seed b_u (revealed for survivors).</summary>
    SelfMaskSeed = 1,
    /// <summary>Share of the masking private key s_u^SK (revealed for dropped vehicles).</summary>
    MaskingKey = 2,
}

/// <summary>
/// Base of all secure-aggregation messages. <see cref="VehicleId"/> is the sender of vehicle →
/// server messages and the recipient of server → vehicle messages (the MQTT topic's vehicle).
/// </summary>
public abstract class SecAggMessage(ulong round, int vehicleId)
{
    /// <summary>The round this message belongs to.</summary>
    public ulong Round { get; } = round;

    /// <summary>Sender (up) or recipient (down).</summary>
    public int VehicleId { get; } = vehicleId >= 0 ? vehicleId : throw new ArgumentOutOfRangeException(nameof(vehicleId), vehicleId, "Vehicle ids are non-negative.");

    /// <summary>The wire tag.</summary>
    public abstract SecAggMessageType Type { get; }

    /// <summary>Server → vehicle messages: the aggregator's ECDSA signature over the session and the encoding (<see cref="SecAggDownlink"/>); empty when unsigned.</summary>
    public ImmutableArray<byte> ServerSignature { get; internal set; } = [];

    private protected static ImmutableArray<byte> Exact(ImmutableArray<byte> bytes, int length, string name)
        => !bytes.IsDefault && bytes.Length == length ? bytes : throw new ArgumentException($"{name} must be {length} bytes.", name);
}

/// <summary>Phase 0: a vehicle's fresh round keys (c_u for share encryption, s_u for masking) and, with self-chosen holders, C(u), signed with its device key.</summary>
public sealed class AdvertiseKeysMessage(ulong round, int vehicleId, ImmutableArray<byte> encryptionKey, ImmutableArray<byte> maskingKey, ImmutableArray<byte> signature, ImmutableArray<int> holders = default)
    : SecAggMessage(round, vehicleId)
{
    /// <summary>Most holders one advertisement may name (the wire count is 16 bits).</summary>
    public const int MaxHolders = ushort.MaxValue;

    /// <inheritdoc/>
    public override SecAggMessageType Type => SecAggMessageType.AdvertiseKeys;
    /// <summary>c_u^PK, uncompressed P-256 point (65 bytes).</summary>
    public ImmutableArray<byte> EncryptionKey { get; } = Exact(encryptionKey, SecAggCrypto.PointBytes, nameof(encryptionKey));
    /// <summary>s_u^PK, uncompressed P-256 point (65 bytes).</summary>
    public ImmutableArray<byte> MaskingKey { get; } = Exact(maskingKey, SecAggCrypto.PointBytes, nameof(maskingKey));
    /// <summary>ECDSA P-256 / SHA-256 signature (IEEE P1363, 64 bytes) by the device key over (round, vehicle, keys, holders).</summary>
    public ImmutableArray<byte> Signature { get; } = Exact(signature, SecAggCrypto.SignatureBytes, nameof(signature));
    /// <summary>C(u): the share holders the vehicle drew itself (<see cref="SelfChosenGraph"/>), ascending; empty on the seed ring and the complete graph.</summary>
    public ImmutableArray<int> Holders { get; } = holders.IsDefault ? [] : holders.Length <= MaxHolders ? holders : throw new ArgumentException($"At most {MaxHolders} holders.", nameof(holders));
}

/// <summary>End of phase 0: the advertisements of the recipient's share holders (itself included), sorted by vehicle.</summary>
public sealed class KeyDirectoryMessage(ulong round, int recipient, ImmutableArray<AdvertiseKeysMessage> entries) : SecAggMessage(round, recipient)
{
    /// <inheritdoc/>
    public override SecAggMessageType Type => SecAggMessageType.KeyDirectory;
    /// <summary>Signed advertisements, as the server received them.</summary>
    public ImmutableArray<AdvertiseKeysMessage> Entries { get; } = entries.IsDefault ? throw new ArgumentNullException(nameof(entries)) : entries;
}

/// <summary>One encrypted share pair; <see cref="Peer"/> is the recipient (in ShareKeys) or the sender (in ForwardedShares).</summary>
public sealed class EncryptedShare(int peer, ImmutableArray<byte> ciphertext)
{
    /// <summary>The other vehicle.</summary>
    public int Peer { get; } = peer >= 0 ? peer : throw new ArgumentOutOfRangeException(nameof(peer));
    /// <summary>nonce ‖ AES-GCM ciphertext ‖ tag.</summary>
    public ImmutableArray<byte> Ciphertext { get; } = ciphertext.IsDefault ? throw new ArgumentNullException(nameof(ciphertext)) : ciphertext;
}

/// <summary>Phase 1: the sender's shares of b_u and s_u^SK, encrypted for each holder, plus a commitment to b_u.</summary>
public sealed class ShareKeysMessage(ulong round, int sender, ImmutableArray<byte> selfMaskCommitment, ImmutableArray<EncryptedShare> shares)
    : SecAggMessage(round, sender)
{
    /// <inheritdoc/>
    public override SecAggMessageType Type => SecAggMessageType.ShareKeys;
    /// <summary>SHA-256 commitment to b_u; lets the server verify its reconstruction.</summary>
    public ImmutableArray<byte> SelfMaskCommitment { get; } = Exact(selfMaskCommitment, 32, nameof(selfMaskCommitment));
    /// <summary>One entry per other holder; Peer = recipient.</summary>
    public ImmutableArray<EncryptedShare> Shares { get; } = shares.IsDefault ? throw new ArgumentNullException(nameof(shares)) : shares;
}

/// <summary>End of phase 1: the shares other vehicles encrypted for the recipient; Peer = sender.</summary>
public sealed class ForwardedSharesMessage(ulong round, int recipient, ImmutableArray<EncryptedShare> shares) : SecAggMessage(round, recipient)
{
    /// <inheritdoc/>
    public override SecAggMessageType Type => SecAggMessageType.ForwardedShares;
    /// <summary>Encrypted shares; the senders are the recipient's neighbours that reached phase 1.</summary>
    public ImmutableArray<EncryptedShare> Shares { get; } = shares.IsDefault ? throw new ArgumentNullException(nameof(shares)) : shares;
}

/// <summary>Phase 2: y_u = x_u + PRG(b_u) + Σ ±PRG(s_{u,v}) mod 2^m, one value per coordinate.</summary>
public sealed class MaskedInputMessage : SecAggMessage
{
    /// <summary>Creates the message; every value must be below 2^<paramref name="bitWidth"/>.</summary>
    public MaskedInputMessage(ulong round, int sender, int bitWidth, ImmutableArray<uint> values) : base(round, sender)
    {
        if (bitWidth is < 1 or > 32) throw new ArgumentOutOfRangeException(nameof(bitWidth), bitWidth, "Bit width must be in [1, 32].");
        if (values.IsDefault) throw new ArgumentNullException(nameof(values));
        if (bitWidth < 32)
        {
            uint limit = 1u << bitWidth;
            foreach (uint v in values.AsSpan())
                if (v >= limit) throw new ArgumentException($"Value {v} does not fit in {bitWidth} bits.", nameof(values));
        }
        BitWidth = bitWidth;
        Count = values.Length;
        _values = values;
    }

    /// <summary>The message as received: its values stay packed in the segments they arrived in (see <see cref="AddTo(Span{uint})"/>).</summary>
    public MaskedInputMessage(ulong round, int sender, PackedSegments packed) : base(round, sender)
    {
        BitWidth = packed.BitWidth;
        Count = packed.Count;
        Packed = packed;
    }

    private ImmutableArray<uint> _values;

    /// <inheritdoc/>
    public override SecAggMessageType Type => SecAggMessageType.MaskedInput;
    /// <summary>m.</summary>
    public int BitWidth { get; }
    /// <summary>Number of masked coordinates.</summary>
    public int Count { get; }
    /// <summary>The values as received, still packed (null when the message was built from values).</summary>
    public PackedSegments? Packed { get; }

    /// <summary>Masked coordinates mod 2^m (unpacked on first use from <see cref="Packed"/>: the server folds with <see cref="AddTo(Span{uint})"/> instead).</summary>
    public ImmutableArray<uint> Values
    {
        get
        {
            if (_values.IsDefault)
            {
                var values = new uint[Count];
                Packed!.Value.CopyTo(values);
                _values = ImmutableCollectionsMarshal.AsImmutableArray(values);
            }
            return _values;
        }
    }

    /// <summary><c>sum[i] += y_u[i]</c> mod 2^16 for m = 16, straight from the packed bytes when the message has them.</summary>
    public void AddTo(Span<ushort> sum)
    {
        if (BitWidth != 16) throw new InvalidOperationException($"A sum in 16-bit lanes takes 16-bit inputs; this one has {BitWidth} bits.");
        if (Packed is { } packed)
        {
            packed.AddTo(sum);
            return;
        }
        var values = _values.AsSpan();
        if (sum.Length != values.Length) throw new ArgumentException($"The sum has {sum.Length} coordinates; the input has {values.Length}.", nameof(sum));
        for (int i = 0; i < values.Length; i++) sum[i] += (ushort)values[i];
    }

    /// <summary><c>sum[i] += y_u[i]</c> mod 2^32, straight from the packed bytes when the message has them.</summary>
    public void AddTo(Span<uint> sum)
    {
        if (Packed is { } packed) packed.AddTo(sum);
        else MaskPrg.AddInPlace(sum, _values.AsSpan());
    }
}

/// <summary>End of phase 2 under a malicious server: every survivor gets the same U3 (sorted) to sign, or the round cannot unmask.</summary>
public sealed class ConsistencyCheckRequestMessage(ulong round, int recipient, ImmutableArray<int> survivors) : SecAggMessage(round, recipient)
{
    /// <inheritdoc/>
    public override SecAggMessageType Type => SecAggMessageType.ConsistencyCheck;
    /// <summary>U3: every vehicle whose masked input is in the sum, ascending.</summary>
    public ImmutableArray<int> Survivors { get; } = survivors.IsDefault ? throw new ArgumentNullException(nameof(survivors)) : survivors;
}

/// <summary>A vehicle's ECDSA P-256 device signature (IEEE P1363, 64 bytes) on the survivor set it was shown.</summary>
public sealed class ConsistencySignatureMessage(ulong round, int sender, ImmutableArray<byte> signature) : SecAggMessage(round, sender)
{
    /// <inheritdoc/>
    public override SecAggMessageType Type => SecAggMessageType.ConsistencySignature;
    /// <summary>Signature over the round, the session and SHA-256 of U3 (<c>SecAggCrypto.SurvivorSetToBeSigned</c>).</summary>
    public ImmutableArray<byte> Signature { get; } = Exact(signature, SecAggCrypto.SignatureBytes, nameof(signature));
}

/// <summary>One vehicle's signature on the survivor set, as the server forwards it in the unmask request.</summary>
public sealed class SurvivorSetSignature(int signer, ImmutableArray<byte> signature)
{
    /// <summary>The signing vehicle.</summary>
    public int Signer { get; } = signer >= 0 ? signer : throw new ArgumentOutOfRangeException(nameof(signer));
    /// <summary>Its device signature (64 bytes).</summary>
    public ImmutableArray<byte> Signature { get; } = !signature.IsDefault && signature.Length == SecAggCrypto.SignatureBytes ? signature : throw new ArgumentException("A signature is 64 bytes.", nameof(signature));
}

/// <summary>End of phase 2: which of the recipient's holders-of-shares survived (reveal b-share) and which dropped (reveal s-share).</summary>
public sealed class UnmaskRequestMessage(ulong round, int recipient, ImmutableArray<int> survivors, ImmutableArray<int> dropped, int? survivorCount = null, ImmutableArray<SurvivorSetSignature> signatures = default) : SecAggMessage(round, recipient)
{
    /// <summary>Under a malicious server: the signatures of the recipient's holders on U3 (at least t, all on the set it signed).</summary>
    public ImmutableArray<SurvivorSetSignature> Signatures { get; } = signatures.IsDefault ? [] : signatures;

    /// <inheritdoc/>
    public override SecAggMessageType Type => SecAggMessageType.UnmaskRequest;
    /// <summary>Vehicles whose masked input was received (their self-mask shares are requested).</summary>
    public ImmutableArray<int> Survivors { get; } = survivors.IsDefault ? throw new ArgumentNullException(nameof(survivors)) : survivors;
    /// <summary>Vehicles declared dropped (their masking-key shares are requested).</summary>
    public ImmutableArray<int> Dropped { get; } = dropped.IsDefault ? throw new ArgumentNullException(nameof(dropped)) : dropped;
    /// <summary>|U3|: all survivors of the round (under SecAgg+ <see cref="Survivors"/> lists only the recipient's holders); defaults to that list's length.</summary>
    public int SurvivorCount { get; } = survivorCount ?? (survivors.IsDefault ? 0 : survivors.Length);
}

/// <summary>One revealed share.</summary>
public sealed class RevealedShare(int peer, ShareKind kind, ImmutableArray<byte> share)
{
    /// <summary>Whose secret the share belongs to.</summary>
    public int Peer { get; } = peer >= 0 ? peer : throw new ArgumentOutOfRangeException(nameof(peer));
    /// <summary>Which secret.</summary>
    public ShareKind Kind { get; } = kind is ShareKind.SelfMaskSeed or ShareKind.MaskingKey ? kind : throw new ArgumentOutOfRangeException(nameof(kind));
    /// <summary>Field element, 32 bytes big-endian.</summary>
    public ImmutableArray<byte> Share { get; } = !share.IsDefault && share.Length == Shamir.ElementBytes ? share : throw new ArgumentException("A share is 32 bytes.", nameof(share));
}

/// <summary>Phase 3: the shares the server asked for.</summary>
public sealed class UnmaskResponseMessage(ulong round, int sender, ImmutableArray<RevealedShare> shares) : SecAggMessage(round, sender)
{
    /// <inheritdoc/>
    public override SecAggMessageType Type => SecAggMessageType.UnmaskResponse;
    /// <summary>Revealed shares.</summary>
    public ImmutableArray<RevealedShare> Shares { get; } = shares.IsDefault ? throw new ArgumentNullException(nameof(shares)) : shares;
}
