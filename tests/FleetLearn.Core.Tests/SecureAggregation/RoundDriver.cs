using System.Security.Cryptography;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Random;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Core.Tests.SecureAggregation;

/// <summary>Drives one in-process round through the real state machines, every message through the codec.</summary>
internal sealed class RoundDriver : IDisposable
{
    public const ulong Round = 7;

    public RoundDriver(int n, int dim, int bitWidth = 16, int? neighbors = null, int? threshold = null, ulong seed = 1, int serverThreads = 1, int minNoiseShares = 1, bool maliciousServer = false, HolderSelection holders = HolderSelection.SeedRing)
    {
        var rng = new DeterministicRandom(seed);
        var roundSeed = new byte[32];
        for (int i = 0; i < 32; i++) roundSeed[i] = (byte)rng.NextUInt64();
        ulong max = (bitWidth == 32 ? uint.MaxValue : (1UL << bitWidth) - 1) / (ulong)n;
        Parameters = new SecAggParameters
        {
            Round = Round, CohortSize = n, Dimension = dim, BitWidth = bitWidth, MaxInputValue = max,
            Neighbors = neighbors, Threshold = threshold, RoundSeed = roundSeed, PhaseTimeout = TimeSpan.FromSeconds(10), MinNoiseShares = minNoiseShares,
            MaliciousServer = maliciousServer, HolderSelection = holders,
        };
        DeviceKeys = new ECDsa[n];
        for (int u = 0; u < n; u++)
        {
            DeviceKeys[u] = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            Registry.Add(u, DeviceKeys[u].ExportSubjectPublicKeyInfo());
        }
        // Against a malicious server the downlink is signed (by the aggregator's plan key) and checked by every vehicle.
        ECDsa? aggregator = maliciousServer ? AggregatorKey : null;
        // Self-chosen holders are drawn from a seeded source here so that a failing case replays; vehicles use the CSPRNG.
        Vehicles = [.. Enumerable.Range(0, n).Select(u => new SecAggVehicle(Parameters, u, DeviceKeys[u], Registry, Clock, aggregator, new SeededNoiseSource(seed * 1000 + (ulong)u)))];
        Server = new SecAggServer(Parameters, Registry, Clock, new SecAggServerOptions { MaxDegreeOfParallelism = serverThreads, SigningKey = aggregator });
        Inputs = new uint[n][];
        for (int u = 0; u < n; u++)
        {
            var r = DeterministicRandom.Derive(seed, 2, (ulong)u);
            Inputs[u] = [.. Enumerable.Range(0, dim).Select(_ => (uint)(r.NextUInt64() % (max + 1)))];
        }
    }

    public SecAggParameters Parameters { get; }
    public ECDsa AggregatorKey { get; } = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    public ManualTimeProvider Clock { get; } = new();
    public DeviceKeyRegistry Registry { get; } = new();
    public ECDsa[] DeviceKeys { get; }
    public SecAggVehicle[] Vehicles { get; }
    public SecAggServer Server { get; }
    public uint[][] Inputs { get; }
    public List<SecAggMessage> Pending { get; } = [];

    public static T Wire<T>(T message) where T : SecAggMessage => SecAggCodec.Decode<T>(SecAggCodec.Encode(message), Round);

    public SecAggServerStep Send(SecAggMessage up)
    {
        var step = Server.Receive(Wire(up));
        Pending.AddRange(step.Outbox);
        return step;
    }

    /// <summary>Closes the server's current phase by letting its deadline pass, if it is still open.</summary>
    public void CloseIfOpen(SecAggServerPhase phase)
    {
        if (Server.Phase != phase) return;
        Clock.Advance(Parameters.PhaseTimeout);
        Pending.AddRange(Server.Tick().Outbox);
    }

    private List<T> Take<T>() where T : SecAggMessage
    {
        var list = Pending.OfType<T>().ToList();
        Pending.Clear();
        return list;
    }

    /// <summary>Runs the whole round; <paramref name="dropsAt"/>[p] are the vehicles that stop before sending their phase-p message.</summary>
    public void Run(params IReadOnlySet<int>[] dropsAt)
    {
        var requests = RunToUnmasking(dropsAt);
        if (Server.Phase == SecAggServerPhase.Aborted) return;
        var drops = dropsAt.Length > 3 ? dropsAt[3] : new HashSet<int>();
        foreach (var r in requests)
        {
            if (drops.Contains(r.VehicleId)) continue;
            var response = Vehicles[r.VehicleId].HandleUnmaskRequest(Wire(r));
            if (Server.Phase == SecAggServerPhase.Unmasking) Send(response);
        }
        CloseIfOpen(SecAggServerPhase.Unmasking);
    }

    /// <summary>Runs phases 0–2 and returns the unmask requests (empty when the round aborted).</summary>
    public List<UnmaskRequestMessage> RunToUnmasking(params IReadOnlySet<int>[] dropsAt)
    {
        IReadOnlySet<int> Drops(int phase) => phase < dropsAt.Length ? dropsAt[phase] : new HashSet<int>();
        var gone = new HashSet<int>();

        foreach (var v in Vehicles)
        {
            var advert = v.Start();
            if (Drops(0).Contains(v.VehicleId)) { gone.Add(v.VehicleId); continue; }
            Send(advert);
        }
        CloseIfOpen(SecAggServerPhase.AdvertiseKeys);
        if (Server.Phase == SecAggServerPhase.Aborted) return [];

        foreach (var d in Take<KeyDirectoryMessage>())
        {
            var reply = Vehicles[d.VehicleId].HandleKeyDirectory(Wire(d));
            if (Drops(1).Contains(d.VehicleId)) { gone.Add(d.VehicleId); continue; }
            Send(reply);
        }
        CloseIfOpen(SecAggServerPhase.ShareKeys);
        if (Server.Phase == SecAggServerPhase.Aborted) return [];

        foreach (var f in Take<ForwardedSharesMessage>())
        {
            int u = f.VehicleId;
            if (Drops(2).Contains(u)) { gone.Add(u); continue; }
            Send(Vehicles[u].HandleForwardedShares(Wire(f), Inputs[u]));
        }
        CloseIfOpen(SecAggServerPhase.MaskedInputCollection);
        if (Parameters.MaliciousServer && Server.Phase == SecAggServerPhase.ConsistencyCheck)
        {
            // The consistency round: vehicles that drop in phase 3 already stay silent here.
            foreach (var c in Take<ConsistencyCheckRequestMessage>())
                if (!(dropsAt.Length > 3 && dropsAt[3].Contains(c.VehicleId))) Send(Vehicles[c.VehicleId].HandleConsistencyCheck(Wire(c)));
            CloseIfOpen(SecAggServerPhase.ConsistencyCheck);
        }
        return Server.Phase == SecAggServerPhase.Aborted ? [] : Take<UnmaskRequestMessage>();
    }

    public static IReadOnlySet<int>[] DropsAt(int phase, params int[] vehicles)
    {
        var d = new IReadOnlySet<int>[4];
        for (int p = 0; p < 4; p++) d[p] = p == phase ? new HashSet<int>(vehicles) : new HashSet<int>();
        return d;
    }

    /// <summary>Plaintext Σ x_u mod 2^m over <paramref name="contributors"/>.</summary>
    public uint[] PlainSum(IEnumerable<int> contributors)
    {
        var sum = new uint[Parameters.Dimension];
        foreach (int u in contributors)
            for (int i = 0; i < sum.Length; i++) sum[i] += Inputs[u][i];
        for (int i = 0; i < sum.Length; i++) sum[i] &= Parameters.ValueMask;
        return sum;
    }

    public void Dispose()
    {
        AggregatorKey.Dispose();
        foreach (var v in Vehicles) v.Dispose();
        foreach (var k in DeviceKeys) k.Dispose();
        Server.Dispose();
        Registry.Dispose();
    }
}
