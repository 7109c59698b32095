using System.Diagnostics;
using System.Security.Cryptography;
using FleetLearn.Core.Random;

namespace FleetLearn.Core.SecureAggregation;

/// <summary>Figures of one benchmark round.</summary>
/// <param name="Clients">n.</param>
/// <param name="Dimension">Coordinates per input.</param>
/// <param name="Neighbors">k for SecAgg+, null for the complete graph.</param>
/// <param name="Threshold">t used.</param>
/// <param name="BitWidth">m.</param>
/// <param name="Dropped">Vehicles that dropped after ShareKeys.</param>
/// <param name="ClientSeconds">Mean over surviving vehicles of one vehicle's CPU work for the whole round.</param>
/// <param name="ClientSecondsMax">The slowest surviving vehicle's work.</param>
/// <param name="ServerSeconds">All server work (decoding, folding, directory/forwarding, reconstruction and mask removal).</param>
/// <param name="BytesPerClient">Mean encoded bytes a surviving vehicle sends over the round (all four messages).</param>
/// <param name="Expansion">BytesPerClient / ⌈Dimension · BitWidth / 8⌉: bytes sent relative to the plain update at the same bit width.</param>
/// <param name="ServerThreads">Degree of parallelism of the server's mask removal.</param>
/// <param name="Holders">How SecAgg+ picked the share holders (seed ring or self-chosen).</param>
public sealed record SecAggBenchmarkResult(
    int Clients, int Dimension, int? Neighbors, int Threshold, int BitWidth, int Dropped,
    double ClientSeconds, double ClientSecondsMax, double ServerSeconds, double BytesPerClient, double Expansion, int ServerThreads,
    HolderSelection Holders = HolderSelection.SeedRing);

/// <summary>
/// Runs one real round in-process — the <see cref="SecAggVehicle"/> and <see cref="SecAggServer"/>
/// state machines, every message encoded and decoded with <see cref="SecAggCodec"/> — and times each
/// side separately. Vehicles run one after another on the calling thread, so a vehicle's time is its
/// own work only. The dropped fraction disconnects after ShareKeys (the costliest case for the server:
/// their pairwise masks must be rebuilt from reconstructed keys). The unmasked sum is checked bit for
/// bit against the plaintext sum; a mismatch throws.
/// </summary>
public static class SecAggBenchmark
{
    /// <summary>Runs a warm-up round (JIT) and then the measured round.</summary>
    /// <param name="clients">Cohort size n.</param>
    /// <param name="dim">Input dimension.</param>
    /// <param name="dropout">Fraction of vehicles that drop after ShareKeys.</param>
    /// <param name="neighbors">k for SecAgg+ (even), or null for the complete graph.</param>
    /// <param name="seed">Seed of the simulation (inputs, who drops, public round seed); keys always come from the OS CSPRNG.</param>
    /// <param name="progress">Progress lines.</param>
    /// <param name="bitWidth">m (default 32).</param>
    /// <param name="serverThreads">Server mask-removal parallelism (default 1).</param>
    /// <param name="holders">SecAgg+ share holders: the seed ring (default) or drawn by each vehicle (about 2k mask neighbours each).</param>
    public static SecAggBenchmarkResult Run(int clients, int dim, double dropout, int? neighbors, int seed, IProgress<string>? progress = null, int bitWidth = 32, int serverThreads = 1,
        HolderSelection holders = HolderSelection.SeedRing)
    {
        if (dropout is < 0 or >= 1 || double.IsNaN(dropout)) throw new ArgumentOutOfRangeException(nameof(dropout), dropout, "Dropout must be in [0, 1).");
        progress?.Report("warm-up round (n = 8, dim = 256)");
        RunOnce(8, 256, 0.25, null, seed, null, bitWidth, serverThreads, holders);
        RunOnce(8, 256, 0.25, 4, seed, null, bitWidth, serverThreads, holders);
        return RunOnce(clients, dim, dropout, neighbors, seed, progress, bitWidth, serverThreads, holders);
    }

    private static SecAggBenchmarkResult RunOnce(int n, int dim, double dropout, int? neighbors, int seed, IProgress<string>? progress, int bitWidth, int serverThreads, HolderSelection holders)
    {
        var rng = new DeterministicRandom((ulong)seed);
        var roundSeed = new byte[32];
        for (int i = 0; i < 32; i++) roundSeed[i] = (byte)rng.NextUInt64();
        ulong modMax = bitWidth == 32 ? uint.MaxValue : (1UL << bitWidth) - 1;
        var p = new SecAggParameters
        {
            Round = 1,
            CohortSize = n,
            Dimension = dim,
            BitWidth = bitWidth,
            MaxInputValue = modMax / (ulong)n,
            Neighbors = neighbors,
            HolderSelection = holders,
            RoundSeed = roundSeed,
            PhaseTimeout = TimeSpan.FromSeconds(30),
        };
        p.Validate();
        string graph = p.IsCompleteGraph ? "complete graph" : $"SecAgg+ k = {p.Neighbors}{(p.SelfChosenHolders ? " self-chosen holders" : "")}";
        progress?.Report($"n = {n}, dim = {dim}, m = {bitWidth}, {graph}, t = {p.EffectiveThreshold}; creating {n} device keys");

        var deviceKeys = new ECDsa[n];
        using var registry = new DeviceKeyRegistry();
        for (int u = 0; u < n; u++)
        {
            deviceKeys[u] = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            registry.Add(u, deviceKeys[u].ExportSubjectPublicKeyInfo());
        }
        var ids = Enumerable.Range(0, n).ToArray();
        rng.Shuffle(ids.AsSpan());
        var drops = new bool[n];
        int dropCount = (int)Math.Round(dropout * n);
        foreach (int u in ids.AsSpan(0, dropCount)) drops[u] = true;

        var clock = new ManualTimeProvider();
        var clientTicks = new long[n];
        var bytesSent = new long[n];
        var serverWatch = new Stopwatch();
        var vehicles = new SecAggVehicle[n];
        for (int u = 0; u < n; u++) vehicles[u] = new SecAggVehicle(p, u, deviceKeys[u], registry, clock);
        using var server = new SecAggServer(p, registry, clock, new SecAggServerOptions { MaxDegreeOfParallelism = serverThreads });
        var expected = new uint[dim];
        var outbox = new List<SecAggMessage>();

        // Vehicle side: decode what the server sent, run the state machine, encode the answer.
        byte[]? Client(int u, Func<SecAggVehicle, SecAggMessage> act)
        {
            long start = Stopwatch.GetTimestamp();
            var reply = SecAggCodec.Encode(act(vehicles[u]));
            clientTicks[u] += Stopwatch.GetTimestamp() - start;
            bytesSent[u] += reply.Length;
            return reply;
        }
        // Server side: decode and receive.
        void Server(byte[] data)
        {
            serverWatch.Start();
            var step = server.Receive(SecAggCodec.Decode(data, p.Round));
            serverWatch.Stop();
            if (!step.Accepted && server.Phase != SecAggServerPhase.Completed) throw new InvalidOperationException(step.Rejection);
            outbox.AddRange(step.Outbox);
        }
        byte[] ServerEncode(SecAggMessage m)
        {
            serverWatch.Start();
            var b = SecAggCodec.Encode(m);
            serverWatch.Stop();
            return b;
        }
        T ClientDecode<T>(int u, byte[] data) where T : SecAggMessage
        {
            long start = Stopwatch.GetTimestamp();
            var m = SecAggCodec.Decode<T>(data, p.Round);
            clientTicks[u] += Stopwatch.GetTimestamp() - start;
            return m;
        }
        double lastServer = 0;
        void Expect(SecAggServerPhase phase)
        {
            if (server.Phase != phase) throw new InvalidOperationException($"Server is in {server.Phase}, expected {phase}: {server.AbortReason}");
            double now = serverWatch.Elapsed.TotalSeconds;
            progress?.Report(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"  server time for the phase: {now - lastServer:F3} s"));
            lastServer = now;
        }

        progress?.Report("phase 0: AdvertiseKeys");
        for (int u = 0; u < n; u++) Server(Client(u, v => v.Start())!);
        Expect(SecAggServerPhase.ShareKeys);

        progress?.Report("phase 1: ShareKeys");
        var directories = outbox.ToArray();
        outbox.Clear();
        foreach (var d in directories)
        {
            var data = ServerEncode(d);
            Server(Client(d.VehicleId, v => v.HandleKeyDirectory(ClientDecode<KeyDirectoryMessage>(d.VehicleId, data)))!);
        }
        Expect(SecAggServerPhase.MaskedInputCollection);

        progress?.Report($"phase 2: MaskedInputCollection ({dropCount} vehicles drop)");
        var forwarded = outbox.ToArray();
        outbox.Clear();
        var input = new uint[dim];
        int done = 0;
        foreach (var f in forwarded)
        {
            int u = f.VehicleId;
            var data = ServerEncode(f);
            if (drops[u]) continue;
            var inputRng = DeterministicRandom.Derive((ulong)seed, 1, (ulong)u);
            for (int i = 0; i < dim; i++)
            {
                input[i] = (uint)(inputRng.NextUInt64() % (p.MaxInputValue + 1));
                expected[i] += input[i];
            }
            Server(Client(u, v => v.HandleForwardedShares(ClientDecode<ForwardedSharesMessage>(u, data), input))!);
            if (++done % Math.Max(1, forwarded.Length / 10) == 0) progress?.Report($"  {done} masked inputs folded");
        }
        if (server.Phase == SecAggServerPhase.MaskedInputCollection)
        {
            clock.Advance(p.PhaseTimeout);
            serverWatch.Start();
            outbox.AddRange(server.Tick().Outbox);
            serverWatch.Stop();
        }
        Expect(SecAggServerPhase.Unmasking);

        progress?.Report("phase 3: Unmasking");
        var requests = outbox.ToArray();
        outbox.Clear();
        foreach (var r in requests)
        {
            var data = ServerEncode(r);
            Server(Client(r.VehicleId, v => v.HandleUnmaskRequest(ClientDecode<UnmaskRequestMessage>(r.VehicleId, data)))!);
        }
        Expect(SecAggServerPhase.Completed);

        var sum = server.Result!.Sum.Span;
        uint mask = p.ValueMask;
        for (int i = 0; i < dim; i++)
            if (sum[i] != (expected[i] & mask))
                throw new InvalidOperationException($"Unmasked sum differs from the plaintext sum at coordinate {i}: {sum[i]} ≠ {expected[i] & mask}.");

        foreach (var v in vehicles) v.Dispose();
        foreach (var k in deviceKeys) k.Dispose();
        var survivors = Enumerable.Range(0, n).Where(u => !drops[u]).ToArray();
        double[] seconds = [.. survivors.Select(u => clientTicks[u] / (double)Stopwatch.Frequency)];
        double bytes = survivors.Average(u => (double)bytesSent[u]);
        var result = new SecAggBenchmarkResult(n, dim, p.IsCompleteGraph ? null : p.Neighbors, p.EffectiveThreshold, bitWidth, dropCount,
            seconds.Average(), seconds.Max(), serverWatch.Elapsed.TotalSeconds, bytes, bytes / BitPacking.PackedLength(dim, bitWidth), serverThreads,
            p.SelfChosenHolders ? HolderSelection.SelfChosen : HolderSelection.SeedRing);
        progress?.Report($"done: sum verified bit for bit; client {result.ClientSeconds:F4} s (max {result.ClientSecondsMax:F4} s), server {result.ServerSeconds:F3} s, {result.BytesPerClient:F0} B/client, expansion {result.Expansion:F4}");
        return result;
    }
}
