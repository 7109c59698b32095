// Long (over 450 lines) because the server side of SecAgg is one state machine: five phases, their checks and the
// reconstruction share private state, and splitting them would spread one protocol's invariants over several files.
using System.Collections.Immutable;
using System.Numerics;
using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace FleetLearn.Core.SecureAggregation;

/// <summary>Where the server is in the round.</summary>
public enum SecAggServerPhase
{
    /// <summary>Phase 0: collecting signed key advertisements.</summary>
    AdvertiseKeys,
    /// <summary>Phase 1: collecting encrypted shares.</summary>
    ShareKeys,
    /// <summary>Phase 2: collecting masked inputs (folded into a running sum).</summary>
    MaskedInputCollection,
    /// <summary>Under a malicious server: collecting the survivors' signatures on U3 (Bonawitz et al. 2017, ConsistencyCheck).</summary>
    ConsistencyCheck,
    /// <summary>Phase 3: collecting revealed shares.</summary>
    Unmasking,
    /// <summary>The sum is available in <see cref="SecAggServer.Result"/>.</summary>
    Completed,
    /// <summary>Too few vehicles survived or a check failed; see <see cref="SecAggServer.AbortReason"/>.</summary>
    Aborted,
}

/// <summary>What one call into the server produced: messages to send (each addressed to its <see cref="SecAggMessage.VehicleId"/>) and, if the input was refused, why.</summary>
public sealed record SecAggServerStep(IReadOnlyList<SecAggMessage> Outbox, string? Rejection)
{
    /// <summary>True when the message was accepted (always true for <see cref="SecAggServer.Tick"/>).</summary>
    public bool Accepted => Rejection is null;
}

/// <summary>The unmasked aggregate.</summary>
public sealed class SecAggResult(uint[] sum, ImmutableArray<int> survivors, ImmutableArray<int> dropped)
{
    /// <summary>Σ_{u ∈ survivors} x_u mod 2^m, coordinate-wise.</summary>
    public ReadOnlyMemory<uint> Sum { get; } = sum;
    /// <summary>U3: the vehicles whose inputs are in the sum.</summary>
    public ImmutableArray<int> Survivors { get; } = survivors;
    /// <summary>U2 \ U3: vehicles that shared keys but whose masked input was not counted.</summary>
    public ImmutableArray<int> Dropped { get; } = dropped;
}

/// <summary>Server tuning.</summary>
public sealed record SecAggServerOptions
{
    /// <summary>Threads used to expand masks during reconstruction (1 = single-threaded, deterministic scheduling).</summary>
    public int MaxDegreeOfParallelism { get; init; } = 1;

    /// <summary>The aggregator's ECDSA P-256 key: every server → vehicle message is signed over the session (required when the server may be malicious).</summary>
    public System.Security.Cryptography.ECDsa? SigningKey { get; init; }
}

/// <summary>
/// The server side of SecAgg / SecAgg+ as a pure state machine (Bonawitz et al. 2017, Fig. 4,
/// semi-honest server, signed keys; Bell et al. 2020 neighbourhoods). Feed it every decoded
/// vehicle message with <see cref="Receive"/> and call <see cref="Tick"/> when a timer fires; send
/// the returned <see cref="SecAggServerStep.Outbox"/>. A phase closes when every expected vehicle
/// answered or at its deadline (phase start + <see cref="SecAggParameters.PhaseTimeout"/>).
/// </summary>
/// <remarks>
/// Masked inputs are folded into one running sum as they arrive (memory O(dimension), not
/// O(vehicles × dimension)). A masked input that arrives after its phase closed belongs to a vehicle
/// already declared dropped and is refused, never counted. Only the secrets needed are
/// reconstructed: b_u of each survivor, and s_u of each dropped vehicle that has a surviving
/// neighbour, each from the first t shares to arrive (Lagrange coefficients cached per share set).
/// Not thread-safe: a transport serializes calls (one round, one consumer).
/// One file over 450 lines because the four phases of Bonawitz et al. Fig. 4 (advertise keys, share keys, masked input,
/// unmask) read top to bottom in protocol order, each handler beside the close that ends its phase, over the same
/// per-vehicle arrays that every phase narrows to its survivors.
/// </remarks>
public sealed class SecAggServer : IDisposable
{
    private readonly SecAggParameters _p;
    private readonly IDeviceKeyRegistry _registry;
    private readonly TimeProvider _time;
    private readonly SecAggServerOptions _options;
    private IShareGraph _graph;  // self-chosen holders: empty until the advertisements are in
    private readonly int _n, _t;

    private DateTimeOffset _deadline;
    private readonly AdvertiseKeysMessage?[] _adverts;
    private readonly ECDiffieHellman?[] _maskingKeys;
    private readonly ECDiffieHellmanPublicKey?[] _maskingPublic;
    private readonly byte[]?[] _commitments;
    private List<EncryptedShare>?[]? _inbox;
    private readonly bool[] _maskedReceived;
    private readonly uint[] _sum;
    // m = 16 (the default): the masked inputs are summed in 16-bit lanes. Only the sum mod 2^m is ever read (the result is
    // reduced mod 2^m), so Z_2^16 is exact, and each input adds its 2 wire bytes a coordinate to 2 bytes of sum instead of 4;
    // the lanes are widened into _sum once, before the masks are removed.
    private ushort[]? _sum16;
    private readonly UnmaskRequestMessage?[] _requests;
    private readonly bool[] _responded;
    private readonly List<(int X, BigInteger Y)>?[] _bShares, _sShares;
    private readonly Dictionary<string, BigInteger[]> _lagrange = [];
    private readonly HashSet<string> _seenPoints = [];
    private readonly byte[]?[] _consistency;
    private int[] _u1 = [], _u2 = [], _u3 = [], _u4 = [], _droppedNeeded = [];
    private int _pending;
    private int[] _responders = [];

    /// <summary>Starts the round: phase AdvertiseKeys opens now.</summary>
    public SecAggServer(SecAggParameters parameters, IDeviceKeyRegistry registry, TimeProvider? timeProvider = null, SecAggServerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        parameters.Validate();
        _p = parameters;
        _registry = registry ?? throw new ArgumentNullException(nameof(registry));
        _time = timeProvider ?? TimeProvider.System;
        _options = options ?? new SecAggServerOptions();
        if (parameters.MaliciousServer && _options.SigningKey is null)
            throw new ArgumentException("A round against a malicious server signs every server-to-vehicle message: SecAggServerOptions.SigningKey is required.", nameof(options));
        _n = parameters.CohortSize;
        _graph = parameters.SelfChosenHolders ? new SelfChosenGraph(_n, new int[]?[_n]) : parameters.Graph;
        _t = parameters.EffectiveThreshold;
        _adverts = new AdvertiseKeysMessage?[_n];
        _maskingKeys = new ECDiffieHellman?[_n];
        _maskingPublic = new ECDiffieHellmanPublicKey?[_n];
        _commitments = new byte[]?[_n];
        _maskedReceived = new bool[_n];
        _sum = new uint[parameters.Dimension];
        if (parameters.BitWidth == 16 && BitConverter.IsLittleEndian) _sum16 = new ushort[parameters.Dimension];
        _requests = new UnmaskRequestMessage?[_n];
        _responded = new bool[_n];
        _consistency = new byte[]?[_n];
        _bShares = new List<(int, BigInteger)>?[_n];
        _sShares = new List<(int, BigInteger)>?[_n];
        Enter(SecAggServerPhase.AdvertiseKeys);
    }

    /// <summary>Current phase.</summary>
    public SecAggServerPhase Phase { get; private set; }

    /// <summary>When the current phase closes.</summary>
    public DateTimeOffset PhaseDeadline => _deadline;

    /// <summary>Why the round aborted, or null.</summary>
    public string? AbortReason { get; private set; }

    /// <summary>The unmasked sum once <see cref="Phase"/> is <see cref="SecAggServerPhase.Completed"/>.</summary>
    public SecAggResult? Result { get; private set; }

    /// <summary>Messages refused so far (for metrics).</summary>
    public int RejectedCount { get; private set; }

    /// <summary>Closes the current phase if its deadline has passed.</summary>
    public SecAggServerStep Tick()
    {
        var outbox = new List<SecAggMessage>();
        CloseIfExpired(outbox);
        return new SecAggServerStep(SignAll(outbox), null);
    }

    /// <summary>Handles one vehicle message (already decoded and authenticated as coming from its <see cref="SecAggMessage.VehicleId"/>).</summary>
    public SecAggServerStep Receive(SecAggMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        var outbox = new List<SecAggMessage>();
        CloseIfExpired(outbox);
        string? rejection = Check(message) ?? message switch
        {
            AdvertiseKeysMessage a => OnAdvertise(a, outbox),
            ShareKeysMessage s => OnShareKeys(s, outbox),
            MaskedInputMessage m => OnMaskedInput(m, outbox),
            ConsistencySignatureMessage c => OnConsistencySignature(c, outbox),
            UnmaskResponseMessage r => OnUnmaskResponse(r, outbox),
            _ => $"{message.Type} is a server-to-vehicle message.",
        };
        if (rejection is not null) RejectedCount++;
        return new SecAggServerStep(SignAll(outbox), rejection);
    }

    private List<SecAggMessage> SignAll(List<SecAggMessage> outbox)
    {
        if (_options.SigningKey is { } key)
            foreach (var m in outbox) SecAggDownlink.Sign(m, key, _p.SessionId);
        return outbox;
    }

    private string? Check(SecAggMessage m)
    {
        if (Phase is SecAggServerPhase.Completed or SecAggServerPhase.Aborted)
            return $"{m.Type} from vehicle {m.VehicleId} arrived after round {_p.Round} {(Phase == SecAggServerPhase.Completed ? "completed" : "aborted")}.";
        if (m.Round != _p.Round) return $"{m.Type} from vehicle {m.VehicleId} is for round {m.Round}, not {_p.Round}.";
        if (m.VehicleId >= _n) return $"Vehicle {m.VehicleId} is not in the cohort of {_n}.";
        return null;
    }

    private string? Late(SecAggMessage m, SecAggServerPhase phase)
        => Phase == phase ? null : $"{m.Type} from vehicle {m.VehicleId} arrived in phase {Phase}; phase {phase} is {(Phase > phase ? "closed" : "not open yet")}.";

    // ---- Phase 0 -------------------------------------------------------------------------------

    private string? OnAdvertise(AdvertiseKeysMessage a, List<SecAggMessage> outbox)
    {
        if (Late(a, SecAggServerPhase.AdvertiseKeys) is { } late) return late;
        int u = a.VehicleId;
        if (_adverts[u] is not null) return $"Vehicle {u} already advertised keys for round {_p.Round}.";
        var deviceKey = _registry.FindDeviceKey(u);
        if (deviceKey is null) return _registry.WhyUnknown(u) is { } why ? $"{char.ToUpperInvariant(why[0])}{why[1..]}." : $"Vehicle {u} is not in the device key registry.";
        if (!deviceKey.VerifyData(SecAggCrypto.AdvertisementToBeSigned(a), a.Signature.AsSpan(), HashAlgorithmName.SHA256))
            return $"The round keys of vehicle {u} carry an invalid device signature.";
        if (_p.SelfChosenHolders && SelfChosenGraph.Check(_n, _p.Neighbors!.Value, u, a.Holders) is { } bad) return $"Refused the advertisement of vehicle {u}: {bad}.";
        if (!_p.SelfChosenHolders && a.Holders.Length > 0) return $"Vehicle {u} named {a.Holders.Length} share holders, but round {_p.Round} does not let vehicles choose them.";
        try
        {
            using (SecAggCrypto.ImportPoint(a.EncryptionKey.AsSpan())) { }
            _maskingKeys[u] = SecAggCrypto.ImportPoint(a.MaskingKey.AsSpan());
        }
        catch (CryptographicException)
        {
            return $"Vehicle {u} advertised a public key that is not a valid P-256 point.";
        }
        string c = Convert.ToHexString(a.EncryptionKey.AsSpan()), sk = Convert.ToHexString(a.MaskingKey.AsSpan());
        if (c == sk || _seenPoints.Contains(c) || _seenPoints.Contains(sk))
        {
            _maskingKeys[u]!.Dispose();
            _maskingKeys[u] = null;
            return $"Vehicle {u} advertised a public key that is already in use in round {_p.Round}.";
        }
        _seenPoints.Add(c);
        _seenPoints.Add(sk);
        _adverts[u] = a;
        if (Count(_adverts) == _n) CloseAdvertise(outbox);
        return null;
    }

    private void CloseAdvertise(List<SecAggMessage> outbox)
    {
        _u1 = Members(u => _adverts[u] is not null);
        if (_p.SelfChosenHolders) _graph = new SelfChosenGraph(_n, [.. _adverts.Select(a => a is null ? null : a.Holders.ToArray())]);
        var alive = Mask(_u1);
        if (!CheckThreshold("AdvertiseKeys", "advertised keys", alive, _u1)) return;
        ImmutableArray<AdvertiseKeysMessage> all = _graph.IsComplete ? [.. _u1.Select(u => _adverts[u]!)] : default;
        foreach (int u in _u1)
        {
            var entries = _graph.IsComplete ? all : [.. _graph.DirectoryOf(u).Where(v => alive[v]).Select(v => _adverts[v]!)];
            outbox.Add(new KeyDirectoryMessage(_p.Round, u, entries));
        }
        _inbox = new List<EncryptedShare>?[_n];
        Enter(SecAggServerPhase.ShareKeys);
    }

    // ---- Phase 1 -------------------------------------------------------------------------------

    private string? OnShareKeys(ShareKeysMessage s, List<SecAggMessage> outbox)
    {
        if (Late(s, SecAggServerPhase.ShareKeys) is { } late) return late;
        int u = s.VehicleId;
        if (_adverts[u] is null) return $"Vehicle {u} sent shares but did not advertise keys in time.";
        if (_commitments[u] is not null) return $"Vehicle {u} already sent its shares for round {_p.Round}.";
        var expected = new HashSet<int>();
        // One entry per neighbour that advertised: shares for its holders, and with self-chosen holders an empty token for
        // the vehicles that chose it, so that each neighbour learns it reached this phase and masks with it.
        foreach (int v in _graph.NeighborsOf(u)) if (_adverts[v] is not null) expected.Add(v);
        if (s.Shares.Length != expected.Count) return $"Vehicle {u} sent {s.Shares.Length} encrypted shares; {expected.Count} holders expect one each.";
        foreach (var e in s.Shares)
        {
            if (!expected.Remove(e.Peer)) return $"Vehicle {u} sent a share for vehicle {e.Peer}, which is not an expected holder or is listed twice.";
            if (e.Ciphertext.Length != SecAggCrypto.ShareCiphertextBytes) return $"Vehicle {u} sent a {e.Ciphertext.Length}-byte share ciphertext; expected {SecAggCrypto.ShareCiphertextBytes}.";
        }
        _commitments[u] = s.SelfMaskCommitment.ToArray();
        foreach (var e in s.Shares) (_inbox![e.Peer] ??= []).Add(new EncryptedShare(u, e.Ciphertext));
        if (_u1.All(v => _commitments[v] is not null)) CloseShareKeys(outbox);
        return null;
    }

    private void CloseShareKeys(List<SecAggMessage> outbox)
    {
        _u2 = Members(u => _commitments[u] is not null);
        if (!CheckThreshold("ShareKeys", "sent their shares", Mask(_u2), _u2)) return;
        foreach (int v in _u2)
        {
            var list = _inbox![v] ?? [];
            list.Sort((a, b) => a.Peer.CompareTo(b.Peer));
            outbox.Add(new ForwardedSharesMessage(_p.Round, v, [.. list]));
        }
        _inbox = null;
        Enter(SecAggServerPhase.MaskedInputCollection);
    }

    // ---- Phase 2 -------------------------------------------------------------------------------

    private string? OnMaskedInput(MaskedInputMessage m, List<SecAggMessage> outbox)
    {
        int u = m.VehicleId;
        if (Phase > SecAggServerPhase.MaskedInputCollection)
            return $"Masked input from vehicle {u} arrived after the MaskedInputCollection phase closed; vehicle {u} was declared dropped and its input is not counted.";
        if (Late(m, SecAggServerPhase.MaskedInputCollection) is { } late) return late;
        if (_commitments[u] is null) return $"Vehicle {u} sent a masked input but did not share its keys in time.";
        if (_maskedReceived[u]) return $"Vehicle {u} already sent its masked input for round {_p.Round}.";
        if (m.BitWidth != _p.BitWidth || m.Count != _p.Dimension)
            return $"Masked input from vehicle {u} has {m.Count} × {m.BitWidth} bits; the round expects {_p.Dimension} × {_p.BitWidth} bits.";
        if (_sum16 is not null) m.AddTo(_sum16); // from the packed bytes as received: no uint[dim] per vehicle
        else m.AddTo(_sum);
        _maskedReceived[u] = true;
        if (_u2.All(v => _maskedReceived[v])) CloseMaskedInputs(outbox);
        return null;
    }

    private void CloseMaskedInputs(List<SecAggMessage> outbox)
    {
        _u3 = Members(u => _maskedReceived[u]);
        var alive = Mask(_u3);
        var inU2 = Mask(_u2);
        // s_u is needed only for a dropped vehicle with a surviving neighbour (who masked with it).
        _droppedNeeded = [.. _u2.Where(u => !alive[u] && _graph.NeighborsOf(u).Any(v => alive[v]))];
        if (!CheckThreshold("MaskedInputCollection", "sent masked inputs", alive, _u3.Concat(_droppedNeeded))) return;
        if (_p.MaliciousServer)
        {
            // Every survivor is shown the same U3 and signs it; none unmasks without t signatures on it (ConsistencyCheck).
            foreach (int v in _u3) outbox.Add(new ConsistencyCheckRequestMessage(_p.Round, v, ImmutableCollectionsMarshal.AsImmutableArray(_u3)));
            Enter(SecAggServerPhase.ConsistencyCheck);
            return;
        }
        RequestUnmasking(_u3, outbox);
    }

    // ---- ConsistencyCheck (malicious server only) ----------------------------------------------

    private string? OnConsistencySignature(ConsistencySignatureMessage c, List<SecAggMessage> outbox)
    {
        if (Late(c, SecAggServerPhase.ConsistencyCheck) is { } late) return late;
        int u = c.VehicleId;
        if (!_maskedReceived[u]) return $"Vehicle {u} signed the survivor set but is not a survivor.";
        if (_consistency[u] is not null) return $"Vehicle {u} already signed the survivor set of round {_p.Round}.";
        var key = _registry.FindDeviceKey(u);
        if (key is null || !key.VerifyData(SecAggCrypto.SurvivorSetToBeSigned(_p.Round, _p.SessionId, _u3), c.Signature.AsSpan(), HashAlgorithmName.SHA256))
            return $"Vehicle {u}'s signature on the survivor set of round {_p.Round} does not verify.";
        _consistency[u] = c.Signature.ToArray();
        if (_u3.All(v => _consistency[v] is not null)) CloseConsistency(outbox);
        return null;
    }

    private void CloseConsistency(List<SecAggMessage> outbox)
    {
        _u4 = [.. _u3.Where(u => _consistency[u] is not null)];
        // Each secret needs t answers from signers among its holders; each signer needs t signatures of its own holders.
        if (!CheckThreshold("ConsistencyCheck", "signed the survivor set", Mask(_u4), _u3.Concat(_droppedNeeded).Concat(_u4))) return;
        RequestUnmasking(_u4, outbox);
    }

    private void RequestUnmasking(int[] responders, List<SecAggMessage> outbox)
    {
        var alive = Mask(_u3);
        var inU2 = Mask(_u2);
        var needS = Mask(_droppedNeeded);
        var signed = Mask(_u4);
        ImmutableArray<SurvivorSetSignature> all = _p.MaliciousServer && _graph.IsComplete ? [.. _u4.Select(u => new SurvivorSetSignature(u, [.. _consistency[u]!]))] : [];
        foreach (int v in responders)
        {
            // v reveals shares of the vehicles it holds shares of, and counts the signatures of its own holders.
            var held = _graph.HeldBy(v);
            var signatures = !_p.MaliciousServer ? [] : _graph.IsComplete ? all : ImmutableArray.CreateRange(_graph.HoldersOf(v).Where(u => signed[u]).Select(u => new SurvivorSetSignature(u, [.. _consistency[u]!])));
            var request = new UnmaskRequestMessage(_p.Round, v,
                [.. held.Where(u => alive[u])],
                [.. held.Where(u => inU2[u] && !alive[u] && needS[u])],
                _u3.Length, signatures);
            _requests[v] = request;
            outbox.Add(request);
        }
        _responders = responders;
        foreach (int u in _u3) _bShares[u] = new(_t);
        foreach (int u in _droppedNeeded) _sShares[u] = new(_t);
        _pending = _u3.Length + _droppedNeeded.Length;
        Enter(SecAggServerPhase.Unmasking);
    }

    // ---- Phase 3 -------------------------------------------------------------------------------

    private string? OnUnmaskResponse(UnmaskResponseMessage r, List<SecAggMessage> outbox)
    {
        if (Late(r, SecAggServerPhase.Unmasking) is { } late) return late;
        int v = r.VehicleId;
        var request = _requests[v];
        if (request is null) return $"Vehicle {v} was not asked to unmask (it is not a survivor).";
        if (_responded[v]) return $"Vehicle {v} already answered the unmask request.";
        var expected = new HashSet<(int, ShareKind)>();
        foreach (int u in request.Survivors) expected.Add((u, ShareKind.SelfMaskSeed));
        foreach (int u in request.Dropped) expected.Add((u, ShareKind.MaskingKey));
        if (r.Shares.Length != expected.Count) return $"Vehicle {v} revealed {r.Shares.Length} shares; {expected.Count} were requested.";
        var values = new BigInteger[r.Shares.Length];
        for (int i = 0; i < r.Shares.Length; i++)
        {
            var s = r.Shares[i];
            if (!expected.Remove((s.Peer, s.Kind))) return $"Vehicle {v} revealed a {s.Kind} share of vehicle {s.Peer} that was not requested or is repeated.";
            values[i] = Shamir.ReadElement(s.Share.AsSpan());
            if (values[i] >= Shamir.Prime) return $"Vehicle {v} revealed a share of vehicle {s.Peer} that is not a field element.";
        }
        _responded[v] = true;
        for (int i = 0; i < r.Shares.Length; i++)
        {
            var s = r.Shares[i];
            var list = s.Kind == ShareKind.SelfMaskSeed ? _bShares[s.Peer]! : _sShares[s.Peer]!;
            if (list.Count >= _t) continue;
            list.Add((v + 1, values[i]));
            if (list.Count == _t) _pending--;
        }
        if (_pending == 0) Finish();
        else if (_responders.All(u => _responded[u])) AbortMissingShares();
        return null;
    }

    private void AbortMissingShares()
    {
        int answered = _responders.Count(u => _responded[u]);
        foreach (int u in _u3)
            if (_bShares[u]!.Count < _t)
            {
                Abort($"Round {_p.Round} aborted in Unmasking: only {_bShares[u]!.Count} shares of the self-mask seed of vehicle {u} arrived, fewer than the threshold t = {_t} ({answered} of {_responders.Length} survivors answered).");
                return;
            }
        foreach (int u in _droppedNeeded)
            if (_sShares[u]!.Count < _t)
            {
                Abort($"Round {_p.Round} aborted in Unmasking: only {_sShares[u]!.Count} shares of the masking key of dropped vehicle {u} arrived, fewer than the threshold t = {_t} ({answered} of {_responders.Length} survivors answered).");
                return;
            }
    }

    private void Finish()
    {
        if (_sum16 is { } lanes)
        {
            for (int i = 0; i < lanes.Length; i++) _sum[i] = lanes[i];
            _sum16 = null;
        }
        // 1. Reconstruct exactly the secrets needed and check them (commitment / advertised point).
        var selfSeeds = new byte[_n][];
        foreach (int u in _u3)
        {
            var seed = new byte[32];
            Shamir.WriteElement(Reconstruct(_bShares[u]!), seed);
            if (!CryptographicOperations.FixedTimeEquals(SecAggCrypto.SelfMaskCommitment(_p.Round, u, seed), _commitments[u]))
            {
                Abort($"Round {_p.Round} aborted in Unmasking: the reconstructed self-mask seed of vehicle {u} does not match its commitment (a revealed share is wrong).");
                return;
            }
            selfSeeds[u] = seed;
        }
        var droppedKeys = new ECDiffieHellman[_droppedNeeded.Length];
        for (int i = 0; i < _droppedNeeded.Length; i++)
        {
            int u = _droppedNeeded[i];
            var scalar = new byte[32];
            Shamir.WriteElement(Reconstruct(_sShares[u]!), scalar);
            try
            {
                droppedKeys[i] = SecAggCrypto.ImportPrivate(scalar, _adverts[u]!.MaskingKey.AsSpan());
            }
            catch (CryptographicException)
            {
                foreach (var k in droppedKeys) k?.Dispose();
                Abort($"Round {_p.Round} aborted in Unmasking: the reconstructed masking key of dropped vehicle {u} does not match its advertised public key (a revealed share is wrong).");
                return;
            }
            finally
            {
                CryptographicOperations.ZeroMemory(scalar);
            }
        }
        var alive = Mask(_u3);
        foreach (int v in _u3) _maskingPublic[v] ??= _maskingKeys[v]!.PublicKey;

        // 2. Remove the masks: −PRG(b_u) for survivors; for each dropped u and surviving neighbour v,
        //    undo v's ±PRG(s_{u,v}) (v added it when v > u, subtracted it when v < u).
        int jobs = _u3.Length + _droppedNeeded.Length;
        void RunJob(int j, uint[] acc)
        {
            if (j < _u3.Length)
            {
                MaskPrg.Apply(selfSeeds[_u3[j]], acc, subtract: true);
                return;
            }
            int i = j - _u3.Length, u = _droppedNeeded[i];
            foreach (int v in _graph.NeighborsOf(u))
            {
                if (!alive[v]) continue;
                byte[] seed = SecAggCrypto.PairwiseMaskSeed(droppedKeys[i], _maskingPublic[v]!, _p.Round, u, v);
                MaskPrg.Apply(seed, acc, subtract: v > u);
                CryptographicOperations.ZeroMemory(seed);
            }
        }
        if (_options.MaxDegreeOfParallelism <= 1)
        {
            for (int j = 0; j < jobs; j++) RunJob(j, _sum);
        }
        else
        {
            var gate = new object();
            Parallel.For(0, jobs, new ParallelOptions { MaxDegreeOfParallelism = _options.MaxDegreeOfParallelism },
                () => new uint[_sum.Length],
                (j, _, acc) => { RunJob(j, acc); return acc; },
                acc => { lock (gate) MaskPrg.AddInPlace(_sum, acc); });
        }
        foreach (var k in droppedKeys) k.Dispose();
        foreach (var s in selfSeeds) if (s is not null) CryptographicOperations.ZeroMemory(s);

        uint mask = _p.ValueMask;
        var sum = (uint[])_sum.Clone();
        if (mask != uint.MaxValue) for (int i = 0; i < sum.Length; i++) sum[i] &= mask;
        Result = new SecAggResult(sum, ImmutableCollectionsMarshal.AsImmutableArray(_u3), [.. _u2.Where(u => !alive[u])]);
        Phase = SecAggServerPhase.Completed;
    }

    private BigInteger Reconstruct(List<(int X, BigInteger Y)> shares)
    {
        var xs = new int[shares.Count];
        var ys = new BigInteger[shares.Count];
        for (int i = 0; i < xs.Length; i++) (xs[i], ys[i]) = shares[i];
        string key = string.Join(',', xs);
        if (!_lagrange.TryGetValue(key, out var lambdas)) _lagrange[key] = lambdas = Shamir.LagrangeAtZero(xs, Shamir.Prime);
        return Shamir.Combine(lambdas, ys, Shamir.Prime);
    }

    // ---- Shared --------------------------------------------------------------------------------

    private void CloseIfExpired(List<SecAggMessage> outbox)
    {
        if (_time.GetUtcNow() < _deadline) return;
        switch (Phase)
        {
            case SecAggServerPhase.AdvertiseKeys: CloseAdvertise(outbox); break;
            case SecAggServerPhase.ShareKeys: CloseShareKeys(outbox); break;
            case SecAggServerPhase.MaskedInputCollection: CloseMaskedInputs(outbox); break;
            case SecAggServerPhase.ConsistencyCheck: CloseConsistency(outbox); break;
            case SecAggServerPhase.Unmasking: AbortMissingShares(); break;
        }
    }

    /// <summary>Aborts unless at least t vehicles survive and every listed vehicle keeps t live share holders.</summary>
    private bool CheckThreshold(string phase, string did, bool[] alive, IEnumerable<int> secretOwners)
    {
        int count = alive.Count(a => a);
        if (count < _t)
        {
            Abort($"Round {_p.Round} aborted in {phase}: only {count} of {_n} vehicles {did}, fewer than the threshold t = {_t}.");
            return false;
        }
        // Checked before any unmask request leaves: the survivors' noise shares must add up to the promised noise
        // (issue 13 item 2); a later check would run when the server already holds the unmasked sum.
        if (count < _p.MinNoiseShares)
        {
            Abort($"Round {_p.Round} aborted in {phase}: only {count} of {_n} vehicles {did}, fewer than the {_p.MinNoiseShares} noise shares the distributed DP noise was sized for; the sum is never unmasked.");
            return false;
        }
        if (_graph.IsComplete) return true;
        foreach (int u in secretOwners)
        {
            int holders = _graph.HoldersOf(u).Count(v => alive[v]);
            if (holders < _t)
            {
                Abort($"Round {_p.Round} aborted in {phase}: only {holders} of the {_p.HolderCount} share holders of vehicle {u} {did}, fewer than the threshold t = {_t}.");
                return false;
            }
        }
        return true;
    }

    private void Abort(string reason)
    {
        Phase = SecAggServerPhase.Aborted;
        AbortReason = reason;
        _inbox = null;
    }

    private void Enter(SecAggServerPhase phase)
    {
        Phase = phase;
        _deadline = _time.GetUtcNow() + _p.PhaseTimeout;
    }

    private int[] Members(Func<int, bool> predicate)
    {
        var list = new List<int>();
        for (int u = 0; u < _n; u++) if (predicate(u)) list.Add(u);
        return [.. list];
    }

    private bool[] Mask(IEnumerable<int> ids)
    {
        var m = new bool[_n];
        foreach (int u in ids) m[u] = true;
        return m;
    }

    private static int Count<T>(T?[] items) where T : class => items.Count(x => x is not null);

    /// <summary>Releases imported keys.</summary>
    public void Dispose()
    {
        foreach (var k in _maskingPublic) k?.Dispose();
        foreach (var k in _maskingKeys) k?.Dispose();
    }
}
