using System.Security.Cryptography;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Random;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Cli.Commands;

/// <summary>Issue 13 item 5, seed grinding: a malicious aggregator picks the round seed and cohort order to give a victim colluding holders.</summary>
internal static partial class PrivacyAttackAudit
{
    /// <summary>
    /// n = 100, k = 8, t = 5, 8 colluders. The aggregator tries 32 seeds × 33 cohort orders and keeps the one whose seed ring
    /// makes the most colluders holders of vehicle 0. Then the real state machines run the advertisement and share phases in
    /// malicious-server mode and in honest-but-curious mode (the seed ring), and the victim's encrypted shares are counted.
    /// </summary>
    private static AttackOutcome SeedGrinding(string name)
    {
        const int n = 100, k = 8, colluderCount = 8, victim = 0;
        var rng = new DeterministicRandom(13);
        (byte[] Seed, int[] Colluders, int Score) best = ([], [], -1);
        for (int s = 0; s < 32; s++)
        {
            var seed = new byte[32];
            for (int i = 0; i < seed.Length; i++) seed[i] = (byte)rng.NextUInt64();
            var ring = NeighborGraph.Create(n, k, seed);
            var candidates = new List<int[]> { ring.NeighborsOf(victim).Take(colluderCount).ToArray() };
            for (int c = 0; c < 32; c++)
            {
                var order = Enumerable.Range(1, n - 1).ToArray();
                rng.Shuffle(order.AsSpan());
                candidates.Add(order.Take(colluderCount).ToArray());
            }
            foreach (var colluders in candidates)
            {
                int score = colluders.Count(c => ring.IsHolder(victim, c));
                if (score > best.Score) best = (seed, colluders, score);
            }
        }
        var plain = new SecAggParameters { Round = 3, CohortSize = n, Dimension = 2, BitWidth = 16, MaxInputValue = 600, Neighbors = k, RoundSeed = best.Seed };
        int t = plain.EffectiveThreshold;
        int onRing = ColludingShareHolders(plain, best.Colluders, victim);
        int chosen = ColludingShareHolders(plain.AgainstMaliciousServer(SecAggSession.Id("audit", "plan"u8), colludingHolders: 0), best.Colluders, victim);
        string detail = $"the aggregator ground 32 seeds × 33 cohort orders to make its {colluderCount} colluders the predicted holders of vehicle 0 (n = {n}, k = {k}, t = {t}): "
            + $"in malicious-server mode vehicle 0 drew its own holders and sent {chosen} of its shares to colluders; with the seed ring (honest-but-curious mode) it would send {onRing}, enough to rebuild its secrets";
        return chosen < t && onRing >= t ? AttackOutcome.Refused(name, detail) : AttackOutcome.Succeeded(name, detail);
    }

    /// <summary>Runs the real server and vehicles to the share phase; the number of colluders the victim's shares (not empty entries) went to.</summary>
    private static int ColludingShareHolders(SecAggParameters parameters, int[] colluders, int victim)
    {
        int n = parameters.CohortSize;
        using var aggregator = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var registry = new DeviceKeyRegistry();
        var keys = Enumerable.Range(0, n).Select(_ => ECDsa.Create(ECCurve.NamedCurves.nistP256)).ToArray();
        for (int u = 0; u < n; u++) registry.Add(u, keys[u].ExportSubjectPublicKeyInfo());
        var clock = new ManualTimeProvider();
        ECDsa? serverKey = parameters.MaliciousServer ? aggregator : null;
        // The holder draws are seeded so that the audit's figures replay (a deployed vehicle draws from the OS CSPRNG); the
        // grinder never sees the seed. A fresh draw gives ≥ t = 5 of the 8 colluders among 8 of 99 with probability 4.0e-5.
        var vehicles = Enumerable.Range(0, n).Select(u => new SecAggVehicle(parameters, u, keys[u], registry, clock, serverKey, new SeededNoiseSource(0xA0D1 + (ulong)u))).ToArray();
        using var server = new SecAggServer(parameters, registry, clock, new SecAggServerOptions { SigningKey = serverKey });
        try
        {
            var adverts = vehicles.Select(v => v.Start()).ToArray();
            var directories = adverts.SelectMany(a => server.Receive(a).Outbox).OfType<KeyDirectoryMessage>().ToList();
            var shares = vehicles[victim].HandleKeyDirectory(directories.Single(d => d.VehicleId == victim));
            // Shares go to the victim's holders; with self-chosen holders the vehicles that chose it get an empty entry.
            var holders = parameters.SelfChosenHolders ? adverts[victim].Holders.ToHashSet() : parameters.Graph.HoldersOf(victim).ToHashSet();
            return shares.Shares.Count(s => holders.Contains(s.Peer) && colluders.Contains(s.Peer));
        }
        finally
        {
            foreach (var v in vehicles) v.Dispose();
            foreach (var key in keys) key.Dispose();
        }
    }
}
