// Long (over 450 lines) because the vehicle side of SecAgg is one state machine whose phases share its keys, held shares
// and holder sets; its checks (on the ring and with self-chosen holders) sit beside the phase they guard.
using System.Collections.Immutable;
using System.Numerics;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using FleetLearn.Core.Privacy;

namespace FleetLearn.Core.SecureAggregation;

/// <summary>Where a vehicle is in its round.</summary>
public enum SecAggVehiclePhase
{
    /// <summary>Constructed; <see cref="SecAggVehicle.Start"/> not called yet.</summary>
    Created,
    /// <summary>Keys advertised; waiting for the key directory.</summary>
    AwaitingKeyDirectory,
    /// <summary>Shares sent; waiting for the shares addressed to it.</summary>
    AwaitingShares,
    /// <summary>Masked input sent under a malicious server; waiting for the survivor set to sign (ConsistencyCheck).</summary>
    AwaitingConsistencyCheck,
    /// <summary>Masked input sent (and, under a malicious server, the survivor set signed); waiting for the unmask request.</summary>
    AwaitingUnmaskRequest,
    /// <summary>Unmask request answered; nothing secret is held any more.</summary>
    Completed,
    /// <summary>Gave up; see <see cref="SecAggVehicle.AbortReason"/>.</summary>
    Aborted,
}

/// <summary>
/// The vehicle side of SecAgg / SecAgg+ (Bonawitz et al. 2017, Fig. 4, semi-honest server, with
/// signed keys), as a pure state machine: it reacts to the server's messages and the clock and
/// returns the message to send; it never does I/O. Call, in order: <see cref="Start"/> →
/// <see cref="HandleKeyDirectory"/> → <see cref="HandleForwardedShares"/> → (<see cref="HandleConsistencyCheck"/> when
/// <see cref="SecAggParameters.MaliciousServer"/>) → <see cref="HandleUnmaskRequest"/>, and <see cref="CheckDeadline"/> whenever a timer fires.
/// </summary>
/// <remarks>
/// Errors throw <see cref="SecAggProtocolException"/>. A message for the wrong round, vehicle or
/// phase is refused without aborting (a duplicate delivery must not kill the round); a message of
/// the expected phase that fails a check aborts the vehicle's round. Round keys live only in memory
/// and are discarded after use (see <see cref="SecAggCrypto"/>); after answering the unmask request
/// all held shares are wiped, so no second request can extract anything. Not thread-safe: one
/// caller at a time.
/// </remarks>
public sealed class SecAggVehicle : IDisposable
{
    private readonly SecAggParameters _p;
    private readonly ECDsa _deviceKey;
    private readonly IDeviceKeyRegistry _registry;
    private readonly TimeProvider _time;
    private readonly int _t;
    private readonly ECDsa? _serverKey;
    private readonly INoiseSource? _holderRandomness;

    private ECDiffieHellman? _c, _s;
    private AdvertiseKeysMessage? _advert;
    private DateTimeOffset _deadline;
    private readonly Dictionary<int, Peer> _peers = [];           // U1 ∩ N(u)
    private byte[]? _selfSeed;                                      // b_u
    private readonly Dictionary<int, (byte[] B, byte[] S)> _held = []; // shares held, own included: from U2 ∩ H(u) (ring), from U2 ∩ {v : u ∈ C(v)} (self-chosen)
    private bool _answered;
    private int[]? _signedSet;                                      // U3 as this vehicle signed it (malicious server)
    private int[] _chosen = [];                                     // C(u): the holders this vehicle drew (self-chosen)
    private readonly HashSet<int> _ownHolders = [];                 // H(u) ∩ U1: the vehicles holding its shares, itself included
    private readonly HashSet<int> _choseMe = [];                    // {v ∈ U1 : u ∈ C(v)}: whose shares it will hold (self-chosen)

    /// <summary>Creates the state machine of vehicle <paramref name="vehicleId"/> for one round.</summary>
    /// <param name="parameters">The round's public parameters (validated here).</param>
    /// <param name="vehicleId">This vehicle's index in the cohort.</param>
    /// <param name="deviceKey">Long-term ECDSA P-256 device key (private), used to sign the round keys.</param>
    /// <param name="registry">Device public keys of the cohort, to check peers' signatures.</param>
    /// <param name="timeProvider">Clock for deadlines (defaults to the system clock).</param>
    /// <param name="serverKey">
    /// The aggregator's public key (the one that signs plans): with it, every server message must carry its signature over
    /// the round's session; required when <see cref="SecAggParameters.MaliciousServer"/>.
    /// </param>
    /// <param name="holderRandomness">
    /// Where this vehicle draws its share holders with <see cref="SecAggParameters.SelfChosenHolders"/>: the OS CSPRNG
    /// (<see cref="SecureNoiseSource"/>) unless a simulation passes a seeded source to replay a run.
    /// </param>
    public SecAggVehicle(SecAggParameters parameters, int vehicleId, ECDsa deviceKey, IDeviceKeyRegistry registry, TimeProvider? timeProvider = null, ECDsa? serverKey = null, INoiseSource? holderRandomness = null)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        parameters.Validate();
        if (vehicleId < 0 || vehicleId >= parameters.CohortSize)
            throw new ArgumentOutOfRangeException(nameof(vehicleId), vehicleId, $"Vehicle id must lie in [0, {parameters.CohortSize}).");
        _p = parameters;
        VehicleId = vehicleId;
        _deviceKey = deviceKey ?? throw new ArgumentNullException(nameof(deviceKey));
        _registry = registry ?? throw new ArgumentNullException(nameof(registry));
        _time = timeProvider ?? TimeProvider.System;
        _t = parameters.EffectiveThreshold;
        _serverKey = serverKey;
        _holderRandomness = holderRandomness;
        if (parameters.MaliciousServer && serverKey is null)
            throw new ArgumentException("Against a malicious server every server message is checked against the aggregator's public key; pass it as serverKey.", nameof(serverKey));
    }

    /// <summary>This vehicle's cohort index.</summary>
    public int VehicleId { get; }

    /// <summary>Current phase.</summary>
    public SecAggVehiclePhase Phase { get; private set; } = SecAggVehiclePhase.Created;

    /// <summary>Why the vehicle aborted, or null.</summary>
    public string? AbortReason { get; private set; }

    /// <summary>The round's m: bits per input value, the sum's modulus 2^m.</summary>
    public int BitWidth => _p.BitWidth;

    /// <summary>When the vehicle gives up waiting for the server's next message.</summary>
    public DateTimeOffset? Deadline => Phase is SecAggVehiclePhase.AwaitingKeyDirectory or SecAggVehiclePhase.AwaitingShares or SecAggVehiclePhase.AwaitingConsistencyCheck or SecAggVehiclePhase.AwaitingUnmaskRequest ? _deadline : null;

    private sealed record Peer(ECDiffieHellman Encryption, ECDiffieHellmanPublicKey EncryptionPublic, ECDiffieHellman Masking, ECDiffieHellmanPublicKey MaskingPublic);

    /// <summary>Phase 0 (AdvertiseKeys): generates fresh key pairs c_u, s_u and signs them with the device key.</summary>
    public AdvertiseKeysMessage Start()
    {
        if (Phase != SecAggVehiclePhase.Created) throw new SecAggProtocolException($"Vehicle {VehicleId} already started round {_p.Round}.", false);
        _c = SecAggCrypto.NewKeyPair();
        _s = SecAggCrypto.NewKeyPair();
        byte[] cPk = SecAggCrypto.ExportPoint(_c), sPk = SecAggCrypto.ExportPoint(_s);
        // Self-chosen holders are drawn now, after the plan fixed the cohort, and signed with the keys (issue 13 item 5).
        if (_p.SelfChosenHolders) _chosen = SelfChosenGraph.Draw(_p.CohortSize, _p.Neighbors!.Value, VehicleId, _holderRandomness ?? new SecureNoiseSource());
        byte[] sig = _deviceKey.SignData(SecAggCrypto.AdvertisementToBeSigned(_p.Round, VehicleId, cPk, sPk, _chosen), HashAlgorithmName.SHA256);
        _advert = new AdvertiseKeysMessage(_p.Round, VehicleId, [.. cPk], [.. sPk], [.. sig], [.. _chosen]);
        Enter(SecAggVehiclePhase.AwaitingKeyDirectory);
        return _advert;
    }

    /// <summary>Phase 1 (ShareKeys): checks the holders' signed keys, Shamir-shares b_u and s_u^SK and encrypts one share pair per holder.</summary>
    public ShareKeysMessage HandleKeyDirectory(KeyDirectoryMessage message)
    {
        Expect(SecAggVehiclePhase.AwaitingKeyDirectory, message);
        IShareGraph graph = _p.SelfChosenHolders ? DirectoryGraph(message) : _p.Graph;
        var holders = new List<int>(message.Entries.Length);
        bool sawSelf = false;
        int previous = -1;
        var points = new HashSet<string>(2 * message.Entries.Length);
        foreach (var e in message.Entries)
        {
            int v = e.VehicleId;
            // Bonawitz et al. Fig. 4, ShareKeys: all public keys must be distinct (no vehicle may reuse another's keys).
            if (!points.Add(Convert.ToHexString(e.EncryptionKey.AsSpan())) | !points.Add(Convert.ToHexString(e.MaskingKey.AsSpan())))
                Fail($"the key directory repeats a public key (at vehicle {v})");
            if (e.Round != _p.Round) Fail($"key directory entry of vehicle {v} is for round {e.Round}");
            if (v <= previous) Fail($"key directory is not sorted by vehicle or lists vehicle {v} twice");
            previous = v;
            if (v >= _p.CohortSize || !(v == VehicleId || graph.AreNeighbors(VehicleId, v))) Fail($"key directory lists vehicle {v}, which is not a neighbour of vehicle {VehicleId}");
            var deviceKey = _registry.FindDeviceKey(v) ?? Fail<ECDsa>(_registry.WhyUnknown(v) ?? $"vehicle {v} is not in the device key registry");
            // With self-chosen holders the signature also covers C(v): the server can neither forge nor alter a choice.
            if (!deviceKey.VerifyData(SecAggCrypto.AdvertisementToBeSigned(e), e.Signature.AsSpan(), HashAlgorithmName.SHA256))
                Fail($"the round keys of vehicle {v} carry an invalid device signature");
            if (graph.IsHolder(VehicleId, v)) holders.Add(v);
            if (graph.IsHolder(v, VehicleId)) _choseMe.Add(v);
            if (v == VehicleId)
            {
                if (!e.EncryptionKey.AsSpan().SequenceEqual(_advert!.EncryptionKey.AsSpan()) || !e.MaskingKey.AsSpan().SequenceEqual(_advert.MaskingKey.AsSpan())
                    || !e.Holders.AsSpan().SequenceEqual(_advert.Holders.AsSpan()))
                    Fail("the key directory carries keys for this vehicle that it did not advertise");
                sawSelf = true;
                continue;
            }
            try
            {
                var c = SecAggCrypto.ImportPoint(e.EncryptionKey.AsSpan());
                var s = SecAggCrypto.ImportPoint(e.MaskingKey.AsSpan());
                _peers[v] = new Peer(c, c.PublicKey, s, s.PublicKey);
            }
            catch (CryptographicException)
            {
                Fail($"vehicle {v} advertised a public key that is not a valid P-256 point");
            }
        }
        if (!sawSelf) Fail("the key directory does not list this vehicle");
        if (holders.Count < _t) Fail($"only {holders.Count} share holders advertised keys, fewer than the threshold t = {_t}");

        // b_u: uniform in [0, p), used directly as the AES-256 key of the self mask.
        var b = Shamir.RandomElement();
        _selfSeed = new byte[32];
        Shamir.WriteElement(b, _selfSeed);
        byte[] sKey = SecAggCrypto.ExportScalar(_s!);
        var sSecret = new BigInteger(sKey, isUnsigned: true, isBigEndian: true);
        CryptographicOperations.ZeroMemory(sKey);
        var xs = holders.Select(v => v + 1).ToArray();
        var bShares = Shamir.Split(b, _t, xs);
        var sShares = Shamir.Split(sSecret, _t, xs);

        _ownHolders.UnionWith(holders);
        var shares = ImmutableArray.CreateBuilder<EncryptedShare>(_peers.Count);
        Span<byte> bBytes = stackalloc byte[32], sBytes = stackalloc byte[32];
        for (int i = 0; i < holders.Count; i++)
        {
            int v = holders[i];
            if (v == VehicleId)
            {
                var ownB = new byte[32]; var ownS = new byte[32];
                Shamir.WriteElement(bShares[i], ownB);
                Shamir.WriteElement(sShares[i], ownS);
                _held[VehicleId] = (ownB, ownS);
                continue;
            }
            Shamir.WriteElement(bShares[i], bBytes);
            Shamir.WriteElement(sShares[i], sBytes);
            byte[] key = SecAggCrypto.ShareEncryptionKey(_c!, _peers[v].EncryptionPublic, _p.Round, VehicleId, v);
            shares.Add(new EncryptedShare(v, [.. SecAggCrypto.EncryptShares(key, _p.Round, VehicleId, v, bBytes, sBytes)]));
            CryptographicOperations.ZeroMemory(key);
        }
        CryptographicOperations.ZeroMemory(bBytes);
        CryptographicOperations.ZeroMemory(sBytes);
        // Self-chosen holders: the neighbours that chose this vehicle but hold none of its shares get an authenticated empty
        // entry, so that they know it reached this phase and mask with it (the server can withhold it, not forge it).
        foreach (int v in _peers.Keys.Where(v => !_ownHolders.Contains(v)).Order())
        {
            byte[] key = SecAggCrypto.ShareEncryptionKey(_c!, _peers[v].EncryptionPublic, _p.Round, VehicleId, v);
            shares.Add(new EncryptedShare(v, [.. SecAggCrypto.EncryptShares(key, _p.Round, VehicleId, v, bBytes, sBytes)]));
            CryptographicOperations.ZeroMemory(key);
        }
        var commitment = SecAggCrypto.SelfMaskCommitment(_p.Round, VehicleId, _selfSeed);
        Enter(SecAggVehiclePhase.AwaitingShares);
        return new ShareKeysMessage(_p.Round, VehicleId, [.. commitment], shares.ToImmutable());
    }

    /// <summary>
    /// Phase 2 (MaskedInputCollection): decrypts the shares addressed to this vehicle and returns
    /// y_u = x_u + PRG(b_u) + Σ_{v ∈ U2 ∩ N(u)} ±PRG(s_{u,v}) mod 2^m (+ when u &gt; v).
    /// </summary>
    /// <param name="message">The forwarded shares; their senders are the neighbours that reached phase 1 (U2 ∩ N(u)).</param>
    /// <param name="input">x_u: <see cref="SecAggParameters.Dimension"/> values, each ≤ <see cref="SecAggParameters.MaxInputValue"/>.</param>
    public MaskedInputMessage HandleForwardedShares(ForwardedSharesMessage message, ReadOnlySpan<uint> input)
    {
        if (input.Length != _p.Dimension)
            throw new ArgumentException($"Input has {input.Length} coordinates; the round expects {_p.Dimension}.", nameof(input));
        for (int i = 0; i < input.Length; i++)
            if (input[i] > _p.MaxInputValue)
                throw new ArgumentException($"Input coordinate {i} = {input[i]} exceeds the round's maximum input value {_p.MaxInputValue}; the cohort's sum could wrap.", nameof(input));
        Expect(SecAggVehiclePhase.AwaitingShares, message);

        var senders = new List<int>(message.Shares.Length);
        var seen = new HashSet<int>(message.Shares.Length);
        foreach (var share in message.Shares)
        {
            int v = share.Peer;
            if (!_peers.TryGetValue(v, out var peer)) Fail($"forwarded shares include vehicle {v}, which is not a neighbour that advertised keys");
            if (_held.ContainsKey(v) || !seen.Add(v)) Fail($"forwarded shares list vehicle {v} twice");
            byte[] key = SecAggCrypto.ShareEncryptionKey(_c!, peer!.EncryptionPublic, _p.Round, v, VehicleId);
            var b = new byte[32]; var s = new byte[32];
            bool ok = SecAggCrypto.TryDecryptShares(key, _p.Round, v, VehicleId, share.Ciphertext.AsSpan(), b, s);
            CryptographicOperations.ZeroMemory(key);
            if (!ok) Fail($"the shares from vehicle {v} fail authentication");
            if (Shamir.ReadElement(b) >= Shamir.Prime || Shamir.ReadElement(s) >= Shamir.Prime) Fail($"the shares from vehicle {v} are not field elements");
            // With self-chosen holders only the vehicles that chose this one sent shares; the others sent an empty entry.
            if (!_p.SelfChosenHolders || _choseMe.Contains(v)) _held[v] = (b, s);
            senders.Add(v);
        }
        int liveHolders = _p.SelfChosenHolders ? senders.Count(_ownHolders.Contains) : senders.Count;
        if (liveHolders + 1 < _t) Fail($"only {liveHolders + 1} share holders reached the ShareKeys phase, fewer than the threshold t = {_t}");

        var y = input.ToArray();
        MaskPrg.Apply(_selfSeed, y, subtract: false);
        foreach (int v in senders)
        {
            byte[] seed = SecAggCrypto.PairwiseMaskSeed(_s!, _peers[v].MaskingPublic, _p.Round, VehicleId, v);
            MaskPrg.Apply(seed, y, subtract: VehicleId < v);
            CryptographicOperations.ZeroMemory(seed);
        }
        uint mask = _p.ValueMask;
        if (mask != uint.MaxValue) for (int i = 0; i < y.Length; i++) y[i] &= mask;

        // The round keys and b_u are not needed any more; only the shares stay until unmasking.
        CryptographicOperations.ZeroMemory(_selfSeed);
        DisposeKeys();
        Enter(_p.MaliciousServer ? SecAggVehiclePhase.AwaitingConsistencyCheck : SecAggVehiclePhase.AwaitingUnmaskRequest);
        return new MaskedInputMessage(_p.Round, VehicleId, _p.BitWidth, ImmutableCollectionsMarshal.AsImmutableArray(y));
    }

    /// <summary>
    /// ConsistencyCheck (Bonawitz et al. 2017, Fig. 4, active security): signs the survivor set U3 once. The vehicle signs
    /// only a set that lists itself, holds at least t of its share holders (and the noise shares promised), and will later
    /// unmask only for this set.
    /// </summary>
    public ConsistencySignatureMessage HandleConsistencyCheck(ConsistencyCheckRequestMessage message)
    {
        Expect(SecAggVehiclePhase.AwaitingConsistencyCheck, message);
        var set = message.Survivors;
        for (int i = 0; i < set.Length; i++)
        {
            if (set[i] < 0 || set[i] >= _p.CohortSize) Fail($"the survivor set to sign lists vehicle {set[i]}, outside the cohort");
            if (i > 0 && set[i] <= set[i - 1]) Fail("the survivor set to sign is not sorted or repeats a vehicle");
        }
        if (set.BinarySearch(VehicleId) < 0) Fail($"the survivor set to sign does not list this vehicle ({VehicleId}) although it sent its masked input");
        int holders = 0;
        foreach (int v in set) if (IsOwnHolder(v)) holders++;
        if (holders < _t) Fail($"the survivor set to sign holds only {holders} of this vehicle's share holders, fewer than the threshold t = {_t}");
        if (set.Length < _p.MinNoiseShares) Fail($"the survivor set to sign lists {set.Length} vehicles, fewer than the {_p.MinNoiseShares} noise shares the distributed DP noise was sized for");
        _signedSet = [.. set];
        byte[] signature = _deviceKey.SignData(SecAggCrypto.SurvivorSetToBeSigned(_p.Round, _p.SessionId, _signedSet), HashAlgorithmName.SHA256);
        Enter(SecAggVehiclePhase.AwaitingUnmaskRequest);
        return new ConsistencySignatureMessage(_p.Round, VehicleId, [.. signature]);
    }

    /// <summary>
    /// Phase 3 (Unmasking): reveals the self-mask share of each survivor and the key share of each
    /// dropped vehicle. Refuses (and aborts) any request that would reveal both shares of one
    /// vehicle: a vehicle in both lists, a second request, or one that declares this vehicle dropped.
    /// </summary>
    public UnmaskResponseMessage HandleUnmaskRequest(UnmaskRequestMessage message)
    {
        if (Phase == SecAggVehiclePhase.AwaitingConsistencyCheck)
            throw new SecAggProtocolException($"Vehicle {VehicleId} refuses an unmask request of round {_p.Round} before the ConsistencyCheck round: it has not signed a survivor set yet.", false);
        if (_answered)
            throw new SecAggProtocolException($"Vehicle {VehicleId} refuses a second unmask request for round {_p.Round}: it already revealed its shares once, and a second answer could reveal both shares of a peer.", false);
        Expect(SecAggVehiclePhase.AwaitingUnmaskRequest, message);
        var survivors = new HashSet<int>();
        foreach (int v in message.Survivors)
            if (!survivors.Add(v)) Fail($"the unmask request lists survivor {v} twice");
        var dropped = new HashSet<int>();
        foreach (int v in message.Dropped)
        {
            if (survivors.Contains(v))
                Refuse($"vehicle {v} is listed as both survivor and dropped; answering would reveal both its self-mask share and its key share");
            if (!dropped.Add(v)) Fail($"the unmask request lists dropped vehicle {v} twice");
        }
        if (dropped.Contains(VehicleId)) Refuse($"it declares this vehicle ({VehicleId}) dropped although it sent its masked input");
        if (!survivors.Contains(VehicleId)) Refuse($"it does not list this vehicle ({VehicleId}) among the survivors");
        foreach (int v in survivors.Concat(dropped))
            if (!_held.ContainsKey(v)) Refuse($"it names vehicle {v}, whose shares this vehicle does not hold");
        // Self-chosen holders: the request lists the vehicles whose shares this one holds, any number of them; the threshold
        // applies to the survivors the server states (and, against a malicious server, to this vehicle's holders in the set it signed).
        int listed = _p.SelfChosenHolders ? message.SurvivorCount : survivors.Count;
        if (listed < _t) Refuse($"only {listed} survivors are listed, fewer than the threshold t = {_t}");
        // The vehicle's own guard on distributed DP: fewer survivors carry fewer noise shares than the round promised.
        // Under SecAgg+ the request lists only this vehicle's holders, so the server states |U3|; it cannot state less
        // than it lists, nor other than it lists on the complete graph.
        int total = message.SurvivorCount;
        if (total < survivors.Count || _p.IsCompleteGraph && total != survivors.Count)
            Fail($"the unmask request states {total} survivors but lists {survivors.Count}");
        if (total < _p.MinNoiseShares) Refuse($"only {total} survivors are listed, fewer than the {_p.MinNoiseShares} noise shares the distributed DP noise was sized for");
        if (_p.MaliciousServer) CheckConsistency(message, survivors, dropped);

        var revealed = ImmutableArray.CreateBuilder<RevealedShare>(survivors.Count + dropped.Count);
        foreach (int v in message.Survivors) revealed.Add(new RevealedShare(v, ShareKind.SelfMaskSeed, [.. _held[v].B]));
        foreach (int v in message.Dropped) revealed.Add(new RevealedShare(v, ShareKind.MaskingKey, [.. _held[v].S]));
        _answered = true;
        WipeShares();
        Phase = SecAggVehiclePhase.Completed;
        return new UnmaskResponseMessage(_p.Round, VehicleId, revealed.MoveToImmutable());
    }

    /// <summary>
    /// Under a malicious server the request must follow the set this vehicle signed (survivors in it, dropped outside it,
    /// |U3| its size) and carry at least t valid signatures of this vehicle's share holders on that same set: with
    /// t &gt; (h + c)/2 no second set can gather as many, so every honest vehicle unmasks for the same U3.
    /// </summary>
    private void CheckConsistency(UnmaskRequestMessage message, HashSet<int> survivors, HashSet<int> dropped)
    {
        var set = _signedSet!;
        if (message.SurvivorCount != set.Length) Refuse($"it states {message.SurvivorCount} survivors, but the survivor set this vehicle signed has {set.Length}");
        foreach (int v in survivors) if (Array.BinarySearch(set, v) < 0) Refuse($"it lists vehicle {v} as a survivor, which is not in the survivor set this vehicle signed");
        foreach (int v in dropped) if (Array.BinarySearch(set, v) >= 0) Refuse($"it declares vehicle {v} dropped, which is in the survivor set this vehicle signed");
        foreach (int v in _held.Keys) if (Array.BinarySearch(set, v) >= 0 && !survivors.Contains(v)) Refuse($"it leaves out survivor {v}, whose self-mask share this vehicle holds");
        byte[] toBeSigned = SecAggCrypto.SurvivorSetToBeSigned(_p.Round, _p.SessionId, set);
        var signers = new HashSet<int>();
        foreach (var s in message.Signatures)
        {
            int w = s.Signer;
            if (!IsOwnHolder(w) || Array.BinarySearch(set, w) < 0 || signers.Contains(w)) continue;
            if (_registry.FindDeviceKey(w) is { } key && key.VerifyData(toBeSigned, s.Signature.AsSpan(), HashAlgorithmName.SHA256)) signers.Add(w);
        }
        if (signers.Count < _t)
            Refuse($"it carries {signers.Count} valid signatures of this vehicle's share holders on the survivor set it signed, fewer than the threshold t = {_t} (ConsistencyCheck)");
    }

    /// <summary>True when w holds shares of this vehicle's secrets (itself included); on the ring and the complete graph, the holders it shares with.</summary>
    private bool IsOwnHolder(int w) => _p.SelfChosenHolders ? _ownHolders.Contains(w) : _held.ContainsKey(w);

    /// <summary>The union graph of the advertisements in the directory, with this vehicle's own draw (self-chosen holders).</summary>
    private SelfChosenGraph DirectoryGraph(KeyDirectoryMessage message)
    {
        var chosen = new int[]?[_p.CohortSize];
        foreach (var e in message.Entries)
        {
            int v = e.VehicleId;
            if (v >= _p.CohortSize) continue; // refused with the entry
            if (SelfChosenGraph.Check(_p.CohortSize, _p.Neighbors!.Value, v, e.Holders) is { } why) Fail($"the key directory entry of vehicle {v} is malformed: {why}");
            chosen[v] = [.. e.Holders];
        }
        chosen[VehicleId] = _chosen;
        return new SelfChosenGraph(_p.CohortSize, chosen);
    }

    /// <summary>Aborts when the current phase's deadline has passed; returns true if it aborted now.</summary>
    public bool CheckDeadline()
    {
        if (Deadline is { } d && _time.GetUtcNow() >= d)
        {
            Abort($"Vehicle {VehicleId} timed out in phase {Phase} of round {_p.Round}: no message from the server by {d:O}.");
            return true;
        }
        return false;
    }

    private void Enter(SecAggVehiclePhase phase)
    {
        Phase = phase;
        _deadline = _time.GetUtcNow() + _p.EffectiveVehicleTimeout;
    }

    private void Expect(SecAggVehiclePhase phase, SecAggMessage message)
    {
        if (Phase == SecAggVehiclePhase.Aborted)
            throw new SecAggProtocolException($"Vehicle {VehicleId} already aborted round {_p.Round}: {AbortReason}", true);
        if (message.Round != _p.Round)
            throw new SecAggProtocolException($"Vehicle {VehicleId} got a {message.Type} message for round {message.Round} during round {_p.Round}.", false);
        if (message.VehicleId != VehicleId)
            throw new SecAggProtocolException($"Vehicle {VehicleId} got a {message.Type} message addressed to vehicle {message.VehicleId}.", false);
        if (Phase != phase)
            throw new SecAggProtocolException($"Vehicle {VehicleId} got an unexpected {message.Type} message in phase {Phase}.", false);
        // Not an abort: a message anyone could have injected must not be able to end the vehicle's round.
        if (_serverKey is not null && !SecAggDownlink.Verify(message, _serverKey, _p.SessionId))
            throw new SecAggProtocolException($"Vehicle {VehicleId} refuses a {message.Type} message of round {_p.Round}: it does not carry the aggregator's signature for this session (fleet and plan).", false);
        if (CheckDeadline())
            throw new SecAggProtocolException(AbortReason!, true);
    }

    private void Fail(string reason) => Abort($"Vehicle {VehicleId} aborted round {_p.Round}: {reason}.", throwIt: true);

    private T Fail<T>(string reason)
    {
        Fail(reason);
        return default!;
    }

    private void Refuse(string reason) => Abort($"Vehicle {VehicleId} refuses the unmask request of round {_p.Round}: {reason}.", throwIt: true);

    private void Abort(string reason, bool throwIt = false)
    {
        Phase = SecAggVehiclePhase.Aborted;
        AbortReason = reason;
        WipeShares();
        DisposeKeys();
        if (_selfSeed is not null) CryptographicOperations.ZeroMemory(_selfSeed);
        if (throwIt) throw new SecAggProtocolException(reason, true);
    }

    private void WipeShares()
    {
        foreach (var (b, s) in _held.Values)
        {
            CryptographicOperations.ZeroMemory(b);
            CryptographicOperations.ZeroMemory(s);
        }
        _held.Clear();
    }

    private void DisposeKeys()
    {
        _c?.Dispose();
        _s?.Dispose();
        _c = _s = null;
        foreach (var peer in _peers.Values)
        {
            peer.EncryptionPublic.Dispose();
            peer.Encryption.Dispose();
            peer.MaskingPublic.Dispose();
            peer.Masking.Dispose();
        }
        _peers.Clear();
    }

    /// <summary>Releases keys and wipes held shares.</summary>
    public void Dispose()
    {
        WipeShares();
        DisposeKeys();
    }
}
