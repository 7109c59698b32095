using System.Numerics;
using System.Reflection;
using System.Security.Cryptography;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Random;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Core.Tests.Attacks;

/// <summary>
/// Issue 13 item 5, seed grinding: the aggregator writes the round plan, so it picks the round seed and the order of the
/// cohort list. When the seed fixes the SecAgg+ graph (the Harary ring), it tries seeds and cohort orders until the victim's
/// share holders are its colluding vehicles, and those colluders then hold ≥ t shares of both of the victim's secrets:
/// with the victim's masked input that is its input in the clear. With share holders chosen by each vehicle after the plan
/// is fixed (the mode of every round against a malicious aggregator), the same grinding buys nothing.
/// </summary>
public sealed class SeedGrindingAttackTests
{
    private const ulong Round = 21;
    private const int N = 100, K = 8, Victim = 0, Colluders = 8, Dim = 4;

    [Fact]
    public void SeedGrinding_SeedRing_ColludersReconstructTheVictimsInput()
    {
        var outcome = RunGroundRound(maliciousServer: false);

        Assert.True(outcome.ColludingHolders >= outcome.Threshold, $"{outcome.ColludingHolders} colluding holders, t = {outcome.Threshold}");
        Assert.NotNull(outcome.RecoveredInput);
        Assert.Equal(outcome.VictimInput, outcome.RecoveredInput);
    }

    [Fact]
    public void SeedGrinding_AggregatorCannotChooseAnHonestVehiclesHolders()
    {
        var outcome = RunGroundRound(maliciousServer: true);

        // The grinder predicted all K of the victim's holders to be colluders; the victim drew its own.
        Assert.Equal(K, outcome.PredictedColludingHolders);
        Assert.True(outcome.ColludingHolders < outcome.Threshold, $"{outcome.ColludingHolders} colluding holders, t = {outcome.Threshold}");
        Assert.Null(outcome.RecoveredInput);
        Assert.Equal(outcome.Why, $"the colluders hold {outcome.ColludingHolders} shares of vehicle {Victim}'s secrets, fewer than t = {outcome.Threshold}: the self-mask seed does not match its commitment and the masking key does not match its public key");
    }

    private sealed record Outcome(int Threshold, int PredictedColludingHolders, int ColludingHolders, uint[] VictimInput, uint[]? RecoveredInput, string Why);

    /// <summary>
    /// The grinder: for each candidate seed and cohort order it predicts the victim's holders from the plan (the ring the
    /// seed gives) and keeps the candidate with the most colluders among them. A cohort order is where the aggregator lists
    /// its colluders; it tries random orders and the one that puts them on the victim's ring neighbours.
    /// </summary>
    private static (byte[] Seed, int[] Colluders, int Score) Grind()
    {
        var rng = new DeterministicRandom(5);
        (byte[] Seed, int[] Colluders, int Score) best = ([], [], -1);
        for (int s = 0; s < 32; s++)
        {
            var seed = new byte[32];
            for (int i = 0; i < 32; i++) seed[i] = (byte)rng.NextUInt64();
            var ring = NeighborGraph.Create(N, K, seed);
            List<int[]> candidates = [ring.NeighborsOf(Victim).Take(Colluders).ToArray()];
            for (int c = 0; c < 32; c++)
            {
                var order = Enumerable.Range(1, N - 1).ToArray();
                rng.Shuffle(order.AsSpan());
                candidates.Add([.. order.Take(Colluders)]);
            }
            foreach (var colluders in candidates)
            {
                int score = colluders.Count(c => ring.IsHolder(Victim, c));
                if (score > best.Score) best = (seed, colluders, score);
            }
        }
        return best;
    }

    private static Outcome RunGroundRound(bool maliciousServer)
    {
        var (seed, colluders, predicted) = Grind();
        var plain = new SecAggParameters
        {
            Round = Round, CohortSize = N, Dimension = Dim, BitWidth = 16, MaxInputValue = 600, Neighbors = K, RoundSeed = seed,
            PhaseTimeout = TimeSpan.FromSeconds(10),
        };
        var parameters = maliciousServer ? plain.AgainstMaliciousServer(new byte[32], colludingHolders: 0) : plain;
        int t = parameters.EffectiveThreshold;
        var clock = new ManualTimeProvider();
        using var registry = new DeviceKeyRegistry();
        var keys = Enumerable.Range(0, N).Select(_ => ECDsa.Create(ECCurve.NamedCurves.nistP256)).ToArray();
        for (int u = 0; u < N; u++) registry.Add(u, keys[u].ExportSubjectPublicKeyInfo());
        using var aggregator = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        ECDsa? serverKey = maliciousServer ? aggregator : null;
        // Self-chosen holders come from a seeded source here so that the test replays (vehicles use the OS CSPRNG): the
        // grinder never sees it. With a fresh draw, ≥ t = 5 of the 8 colluders among 8 of 99 has probability 4.0e-5.
        var vehicles = Enumerable.Range(0, N).Select(u => new SecAggVehicle(parameters, u, keys[u], registry, clock, serverKey, new SeededNoiseSource(0x5E1F + (ulong)u))).ToArray();
        using var server = new SecAggServer(parameters, registry, clock, new SecAggServerOptions { SigningKey = serverKey });
        var inputs = Enumerable.Range(0, N).Select(u => Enumerable.Range(0, Dim).Select(i => (uint)((u * 37 + i * 11) % 600)).ToArray()).ToArray();

        // The round runs to completion with every vehicle online; the aggregator keeps what it sees.
        var outbox = new List<SecAggMessage>();
        foreach (var v in vehicles) outbox.AddRange(server.Receive(v.Start()).Outbox);
        var victimDirectory = outbox.OfType<KeyDirectoryMessage>().Single(d => d.VehicleId == Victim);
        var next = new List<SecAggMessage>();
        byte[] commitment = [];
        foreach (var d in outbox.OfType<KeyDirectoryMessage>())
        {
            var shares = vehicles[d.VehicleId].HandleKeyDirectory(d);
            if (d.VehicleId == Victim) commitment = [.. shares.SelfMaskCommitment];
            next.AddRange(Accept(server, shares));
        }
        MaskedInputMessage? victimMasked = null;
        // A colluder is a vehicle that hands the aggregator whatever it holds (here: read from its state machine).
        var leaked = new Dictionary<int, (byte[] B, byte[] S)>();
        var after = new List<SecAggMessage>();
        foreach (var f in next.OfType<ForwardedSharesMessage>())
        {
            var masked = vehicles[f.VehicleId].HandleForwardedShares(f, inputs[f.VehicleId]);
            if (f.VehicleId == Victim) victimMasked = masked;
            if (colluders.Contains(f.VehicleId) && Held(vehicles[f.VehicleId]).TryGetValue(Victim, out var share)) leaked[f.VehicleId] = ([.. share.B], [.. share.S]);
            after.AddRange(Accept(server, masked));
        }
        if (maliciousServer)
        {
            var requests = after.OfType<ConsistencyCheckRequestMessage>().ToList();
            after.Clear();
            foreach (var c in requests) after.AddRange(Accept(server, vehicles[c.VehicleId].HandleConsistencyCheck(c)));
        }
        foreach (var r in after.OfType<UnmaskRequestMessage>().ToList())
            if (server.Phase == SecAggServerPhase.Unmasking) Accept(server, vehicles[r.VehicleId].HandleUnmaskRequest(r));
        Assert.Equal(SecAggServerPhase.Completed, server.Phase);
        var expected = new uint[Dim];
        foreach (var x in inputs) for (int i = 0; i < Dim; i++) expected[i] = (expected[i] + x[i]) & parameters.ValueMask;
        Assert.Equal(expected, server.Result!.Sum.ToArray());

        // The attack: the colluders' shares of the victim's self-mask seed b and masking key s.
        var recovered = Recover(parameters, leaked, victimDirectory, commitment, victimMasked!, out string why);
        foreach (var k in keys) k.Dispose();
        foreach (var v in vehicles) v.Dispose();
        return new Outcome(t, predicted, leaked.Count, inputs[Victim], recovered, why);
    }

    private static IReadOnlyList<SecAggMessage> Accept(SecAggServer server, SecAggMessage message)
    {
        var step = server.Receive(message);
        Assert.Null(step.Rejection);
        return step.Outbox;
    }

    private static Dictionary<int, (byte[] B, byte[] S)> Held(SecAggVehicle vehicle)
        => (Dictionary<int, (byte[] B, byte[] S)>)typeof(SecAggVehicle).GetField("_held", BindingFlags.NonPublic | BindingFlags.Instance)!.GetValue(vehicle)!;

    /// <summary>Rebuilds b and s from the leaked shares (all of them, at most t) and unmasks the victim's input; null when they do not check.</summary>
    private static uint[]? Recover(SecAggParameters p, Dictionary<int, (byte[] B, byte[] S)> leaked, KeyDirectoryMessage directory, byte[] commitment, MaskedInputMessage masked, out string why)
    {
        int t = p.EffectiveThreshold;
        var used = leaked.OrderBy(kv => kv.Key).Take(t).ToArray();
        why = $"the colluders hold {leaked.Count} shares of vehicle {Victim}'s secrets, fewer than t = {t}: the self-mask seed does not match its commitment and the masking key does not match its public key";
        if (used.Length == 0) return null;
        int[] xs = [.. used.Select(kv => kv.Key + 1)];
        var b = Shamir.Reconstruct(xs, [.. used.Select(kv => Shamir.ReadElement(kv.Value.B))]);
        var s = Shamir.Reconstruct(xs, [.. used.Select(kv => Shamir.ReadElement(kv.Value.S))]);
        var seed = new byte[32];
        var scalar = new byte[32];
        Shamir.WriteElement(b, seed);
        Shamir.WriteElement(s, scalar);
        var own = directory.Entries.Single(e => e.VehicleId == Victim);
        bool seedOk = SecAggCrypto.SelfMaskCommitment(p.Round, Victim, seed).AsSpan().SequenceEqual(commitment);
        ECDiffieHellman? key = null;
        try
        {
            key = SecAggCrypto.ImportPrivate(scalar, own.MaskingKey.AsSpan());
            if (!SecAggCrypto.ExportPoint(key).AsSpan().SequenceEqual(own.MaskingKey.AsSpan())) key = null;
        }
        catch (CryptographicException)
        {
            key = null;
        }
        if (!seedOk || key is null)
        {
            key?.Dispose();
            return null;
        }
        // y − PRG(b) and every pairwise mask the victim added, recomputed from s and its neighbours' public keys.
        var y = masked.Values.ToArray();
        MaskPrg.Apply(seed, y, subtract: true);
        foreach (var e in directory.Entries)
        {
            if (e.VehicleId == Victim) continue;
            using var peer = SecAggCrypto.ImportPoint(e.MaskingKey.AsSpan());
            using var pk = peer.PublicKey;
            byte[] pairSeed = SecAggCrypto.PairwiseMaskSeed(key, pk, p.Round, Victim, e.VehicleId);
            MaskPrg.Apply(pairSeed, y, subtract: !(Victim < e.VehicleId));
        }
        key.Dispose();
        for (int i = 0; i < y.Length; i++) y[i] &= p.ValueMask;
        why = $"the colluders hold {leaked.Count} shares of vehicle {Victim}'s secrets (t = {t}): b and s rebuilt, input unmasked";
        return y;
    }
}
