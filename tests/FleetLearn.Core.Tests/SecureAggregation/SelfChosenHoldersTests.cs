using System.Security.Cryptography;
using CsCheck;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.SecureAggregation;
using static FleetLearn.Core.Tests.SecureAggregation.RoundDriver;

namespace FleetLearn.Core.Tests.SecureAggregation;

/// <summary>SecAgg+ with share holders drawn by each vehicle (issue 13 item 5): the union graph, the exact sum, and the refusals.</summary>
public sealed class SelfChosenHoldersTests
{
    private static readonly Gen<(int N, int K, int[][] Chosen)> AnyChoices =
        Gen.Int[3, 40].SelectMany(n => Gen.Int[2, n - 1].SelectMany(k => Gen.ULong.Select(seed =>
        {
            var rng = new SeededNoiseSource(seed);
            return (n, k, Enumerable.Range(0, n).Select(u => SelfChosenGraph.Draw(n, k, u, rng)).ToArray());
        })));

    [Fact]
    public void Graph_AnyChoices_UnionIsSymmetricAndHoldersAreNeighbours()
    {
        AnyChoices.Sample(c =>
        {
            var (n, k, chosen) = c;
            var g = new SelfChosenGraph(n, chosen);
            for (int u = 0; u < n; u++)
            {
                Assert.Null(SelfChosenGraph.Check(n, k, u, chosen[u]));
                var nb = g.NeighborsOf(u);
                Assert.DoesNotContain(u, nb);
                Assert.Equal(nb, Enumerable.Range(0, n).Where(v => g.AreNeighbors(u, v)).ToArray());
                foreach (int v in nb) Assert.True(g.AreNeighbors(v, u));
                // N(u) = C(u) ∪ {v : u ∈ C(v)}, H(u) = C(u) ∪ {u} ⊆ N(u) ∪ {u}.
                Assert.Equal(chosen[u].Union(Enumerable.Range(0, n).Where(v => chosen[v].Contains(u))).Order(), nb);
                var holders = g.HoldersOf(u);
                Assert.Equal(chosen[u].Append(u).Order(), holders);
                Assert.Subset(nb.Append(u).ToHashSet(), holders.ToHashSet());
                Assert.Equal(g.DirectoryOf(u), nb.Append(u).Order());
                // v holds u's shares exactly when u is in HeldBy(v).
                foreach (int v in holders) Assert.Contains(u, g.HeldBy(v));
                Assert.Equal(g.HeldBy(u), Enumerable.Range(0, n).Where(w => g.IsHolder(w, u)).ToArray());
            }
        }, iter: 200);
    }

    [Fact]
    public void Run_SelfChosenWithRandomDropoutsBelowTolerance_SumEqualsPlaintextSumExactly()
    {
        // Drops at random phases, at most k + 1 − t in all: every vehicle keeps t of its k + 1 holders whatever they drew.
        var gen = Gen.Select(Gen.Int[5, 14], Gen.Int[2, 6], Gen.Bool, Gen.ULong, Gen.Int[0, 3].Array[14]).Where((n, k, _, _, _) => k <= n - 2);
        gen.Sample((n, k, malicious, seed, phases) =>
        {
            using var round = new RoundDriver(n, dim: 5, bitWidth: 20, neighbors: k, seed: seed, maliciousServer: malicious, holders: HolderSelection.SelfChosen);
            int tolerated = k + 1 - round.Parameters.EffectiveThreshold;
            var rng = new SeededNoiseSource(seed);
            var dropped = Enumerable.Range(0, n).Where(_ => rng.NextUniform() < 0.3).Take(tolerated).ToHashSet();
            var dropsAt = Enumerable.Range(0, 4).Select(p => (IReadOnlySet<int>)dropped.Where(u => phases[u] == p).ToHashSet()).ToArray();

            round.Run(dropsAt);

            Assert.True(round.Server.Phase == SecAggServerPhase.Completed, round.Server.AbortReason);
            var contributors = Enumerable.Range(0, n).Where(u => !dropped.Contains(u) || phases[u] == 3);
            Assert.Equal(round.PlainSum(contributors), round.Server.Result!.Sum.ToArray());
        }, iter: 30);
    }

    [Fact]
    public void Draw_IsKDistinctOtherMembers_AndUsesEveryMember()
    {
        var rng = new SeededNoiseSource(3);
        var seen = new int[10];
        for (int i = 0; i < 2000; i++)
            foreach (int v in SelfChosenGraph.Draw(10, 3, 4, rng))
            {
                Assert.NotEqual(4, v);
                seen[v]++;
            }
        Assert.Equal(0, seen[4]);
        // 2000 draws × 3 of 9: 667 per member on average.
        Assert.All(seen.Where((_, v) => v != 4), count => Assert.InRange(count, 560, 780));
    }

    private static (RoundDriver Round, List<AdvertiseKeysMessage> Adverts, List<KeyDirectoryMessage> Directories) ToDirectories(bool malicious = true)
    {
        var round = new RoundDriver(n: 12, dim: 3, bitWidth: 16, neighbors: 4, seed: 9, maliciousServer: malicious, holders: HolderSelection.SelfChosen);
        var adverts = round.Vehicles.Select(v => v.Start()).ToList();
        foreach (var a in adverts) Assert.Null(round.Send(a).Rejection);
        var directories = round.Pending.OfType<KeyDirectoryMessage>().ToList();
        round.Pending.Clear();
        return (round, adverts, directories);
    }

    private static KeyDirectoryMessage Directory(RoundDriver round, int recipient, IEnumerable<AdvertiseKeysMessage> entries)
        => SecAggDownlink.Sign(new KeyDirectoryMessage(Round, recipient, [.. entries.OrderBy(e => e.VehicleId)]), round.AggregatorKey, round.Parameters.SessionId);

    [Fact]
    public void HandleKeyDirectory_ListsANonNeighbour_VehicleAborts()
    {
        var (round, adverts, directories) = ToDirectories();
        using (round)
        {
            var mine = directories.Single(d => d.VehicleId == 0);
            var graph = new SelfChosenGraph(12, [.. adverts.Select(a => a.Holders.ToArray())]);
            int stranger = Enumerable.Range(1, 11).First(v => !graph.AreNeighbors(0, v));

            var e = Assert.Throws<SecAggProtocolException>(() => round.Vehicles[0].HandleKeyDirectory(Directory(round, 0, mine.Entries.Append(adverts[stranger]))));

            Assert.Equal($"Vehicle 0 aborted round {Round}: key directory lists vehicle {stranger}, which is not a neighbour of vehicle 0.", e.Message);
        }
    }

    [Fact]
    public void HandleKeyDirectory_OmitsChosenHoldersBelowThreshold_VehicleAborts()
    {
        var (round, adverts, directories) = ToDirectories();
        using (round)
        {
            var chosen = adverts[0].Holders;
            // The server claims three of vehicle 0's four holders never advertised: 2 of its 5 are left, below t = 3.
            var withheld = chosen.Take(3).ToHashSet();

            var e = Assert.Throws<SecAggProtocolException>(() => round.Vehicles[0].HandleKeyDirectory(Directory(round, 0, directories.Single(d => d.VehicleId == 0).Entries.Where(a => !withheld.Contains(a.VehicleId)))));

            Assert.Equal($"Vehicle 0 aborted round {Round}: only 2 share holders advertised keys, fewer than the threshold t = 3.", e.Message);
        }
    }

    [Fact]
    public void HandleForwardedShares_FromANeighbourTheDirectoryOmitted_VehicleAborts()
    {
        var (round, adverts, directories) = ToDirectories();
        using (round)
        {
            // A vehicle that chose 0 but is not among 0's own holders: the server leaves it out of 0's directory, yet routes its share.
            int chooser = Enumerable.Range(1, 11).First(v => adverts[v].Holders.Contains(0) && !adverts[0].Holders.Contains(v));
            var trimmed = Directory(round, 0, directories.Single(d => d.VehicleId == 0).Entries.Where(a => a.VehicleId != chooser));
            var replies = directories.Select(d => d.VehicleId == 0 ? round.Vehicles[0].HandleKeyDirectory(trimmed) : round.Vehicles[d.VehicleId].HandleKeyDirectory(d)).ToList();
            var fromChooser = replies.Single(r => r.VehicleId == chooser).Shares.Single(s => s.Peer == 0);
            var forwarded = SecAggDownlink.Sign(new ForwardedSharesMessage(Round, 0, [new EncryptedShare(chooser, fromChooser.Ciphertext)]), round.AggregatorKey, round.Parameters.SessionId);

            var e = Assert.Throws<SecAggProtocolException>(() => round.Vehicles[0].HandleForwardedShares(forwarded, round.Inputs[0]));

            Assert.Equal($"Vehicle 0 aborted round {Round}: forwarded shares include vehicle {chooser}, which is not a neighbour that advertised keys.", e.Message);
        }
    }

    [Fact]
    public void HandleKeyDirectory_ForgedChoiceOfANeighbour_VehicleAborts()
    {
        var (round, adverts, directories) = ToDirectories();
        using (round)
        {
            // The server rewrites a stranger's C(v) so that it names vehicle 0: the device signature no longer covers it.
            var graph = new SelfChosenGraph(12, [.. adverts.Select(a => a.Holders.ToArray())]);
            int v = Enumerable.Range(1, 11).First(w => !graph.AreNeighbors(0, w));
            var a = adverts[v];
            int[] forged = [.. a.Holders.Skip(1).Append(0).Order()];
            var entry = new AdvertiseKeysMessage(Round, v, a.EncryptionKey, a.MaskingKey, a.Signature, [.. forged]);

            var e = Assert.Throws<SecAggProtocolException>(() => round.Vehicles[0].HandleKeyDirectory(Directory(round, 0, directories.Single(d => d.VehicleId == 0).Entries.Append(entry))));

            Assert.Equal($"Vehicle 0 aborted round {Round}: the round keys of vehicle {v} carry an invalid device signature.", e.Message);
        }
    }

    private static (RoundDriver Round, List<AdvertiseKeysMessage> Adverts, List<ConsistencyCheckRequestMessage> Requests) ToConsistencyCheck()
    {
        var (round, adverts, directories) = ToDirectories();
        foreach (var d in directories) round.Send(round.Vehicles[d.VehicleId].HandleKeyDirectory(d));
        var forwarded = round.Pending.OfType<ForwardedSharesMessage>().ToList();
        round.Pending.Clear();
        foreach (var f in forwarded) round.Send(round.Vehicles[f.VehicleId].HandleForwardedShares(f, round.Inputs[f.VehicleId]));
        Assert.Equal(SecAggServerPhase.ConsistencyCheck, round.Server.Phase);
        var requests = round.Pending.OfType<ConsistencyCheckRequestMessage>().ToList();
        round.Pending.Clear();
        return (round, adverts, requests);
    }

    [Fact]
    public void HandleConsistencyCheck_SetWithoutTOfItsOwnHolders_VehicleAborts()
    {
        var (round, adverts, _) = ToConsistencyCheck();
        using (round)
        {
            // Everyone but three of the four holders vehicle 0 drew: the vehicles that drew 0 do not count, its own draw does.
            var gone = adverts[0].Holders.Take(3).ToHashSet();
            var set = Enumerable.Range(0, 12).Where(v => !gone.Contains(v)).ToArray();
            var request = SecAggDownlink.Sign(new ConsistencyCheckRequestMessage(Round, 0, [.. set]), round.AggregatorKey, round.Parameters.SessionId);

            var e = Assert.Throws<SecAggProtocolException>(() => round.Vehicles[0].HandleConsistencyCheck(request));

            Assert.Equal($"Vehicle 0 aborted round {Round}: the survivor set to sign holds only 2 of this vehicle's share holders, fewer than the threshold t = 3.", e.Message);
        }
    }

    [Fact]
    public void HandleUnmaskRequest_SignaturesOfVehiclesItDidNotDraw_Refused()
    {
        var (round, adverts, requests) = ToConsistencyCheck();
        using (round)
        {
            var signatures = requests.Select(r => new SurvivorSetSignature(r.VehicleId, round.Vehicles[r.VehicleId].HandleConsistencyCheck(r).Signature)).ToList();
            var own = adverts[0].Holders.Append(0).ToHashSet();
            var strangers = signatures.Where(x => !own.Contains(x.Signer)).ToList();
            Assert.True(strangers.Count >= 3);
            var graph = new SelfChosenGraph(12, [.. adverts.Select(a => a.Holders.ToArray())]);
            int[] held = graph.HeldBy(0);
            var request = SecAggDownlink.Sign(new UnmaskRequestMessage(Round, 0, [.. held], [], 12, [.. strangers]), round.AggregatorKey, round.Parameters.SessionId);

            var e = Assert.Throws<SecAggProtocolException>(() => round.Vehicles[0].HandleUnmaskRequest(request));

            Assert.Equal($"Vehicle 0 refuses the unmask request of round {Round}: it carries 0 valid signatures of this vehicle's share holders on the survivor set it signed, fewer than the threshold t = 3 (ConsistencyCheck).", e.Message);
        }
    }

    [Fact]
    public void Server_AdvertWithForgedOrMalformedChoice_Rejected()
    {
        using var round = new RoundDriver(n: 12, dim: 3, bitWidth: 16, neighbors: 4, seed: 9, maliciousServer: true, holders: HolderSelection.SelfChosen);
        var a = round.Vehicles[3].Start();
        int[] other = [.. Enumerable.Range(0, 12).Where(v => v != 3 && !a.Holders.Contains(v)).Take(4)];
        var altered = new AdvertiseKeysMessage(Round, 3, a.EncryptionKey, a.MaskingKey, a.Signature, [.. other]);
        Assert.Equal("The round keys of vehicle 3 carry an invalid device signature.", round.Send(altered).Rejection);

        // Signed by the device, but three holders where the round asks for four.
        int[] three = [.. a.Holders.Take(3)];
        var sig = round.DeviceKeys[3].SignData(SecAggCrypto.AdvertisementToBeSigned(Round, 3, a.EncryptionKey.AsSpan(), a.MaskingKey.AsSpan(), three), HashAlgorithmName.SHA256);
        var shortChoice = new AdvertiseKeysMessage(Round, 3, a.EncryptionKey, a.MaskingKey, [.. sig], [.. three]);
        Assert.Equal("Refused the advertisement of vehicle 3: vehicle 3 chose 3 share holders; the round asks for k = 4.", round.Send(shortChoice).Rejection);

        Assert.Null(round.Send(a).Rejection);
    }

    [Fact]
    public void Server_SeedRingAdvertNamingHolders_Rejected()
    {
        using var round = new RoundDriver(n: 12, dim: 3, bitWidth: 16, neighbors: 4, seed: 9);
        var a = round.Vehicles[3].Start();
        Assert.Empty(a.Holders);
        int[] chosen = [0, 1, 2, 4];
        var sig = round.DeviceKeys[3].SignData(SecAggCrypto.AdvertisementToBeSigned(Round, 3, a.EncryptionKey.AsSpan(), a.MaskingKey.AsSpan(), chosen), HashAlgorithmName.SHA256);

        Assert.Equal($"Vehicle 3 named 4 share holders, but round {Round} does not let vehicles choose them.", round.Send(new AdvertiseKeysMessage(Round, 3, a.EncryptionKey, a.MaskingKey, [.. sig], [.. chosen])).Rejection);
    }

    [Fact]
    public void Parameters_MaliciousServerSecAggPlus_AlwaysSelfChosen_GraphNotFromSeed()
    {
        var p = new SecAggParameters { Round = 1, CohortSize = 20, Dimension = 1, BitWidth = 16, MaxInputValue = 10, Neighbors = 5, RoundSeed = new byte[32] };
        Assert.Throws<SecAggConfigurationException>(p.Validate); // odd k on the seed ring

        var malicious = new SecAggParameters { Round = 1, CohortSize = 20, Dimension = 1, BitWidth = 16, MaxInputValue = 10, Neighbors = 6, RoundSeed = new byte[32] }.AgainstMaliciousServer([], 0);

        Assert.True(malicious.SelfChosenHolders);
        Assert.Throws<InvalidOperationException>(() => malicious.Graph);
        Assert.False(new SecAggParameters { Round = 1, CohortSize = 20, Dimension = 1, BitWidth = 16, MaxInputValue = 10, RoundSeed = new byte[32], MaliciousServer = true }.SelfChosenHolders);
    }
}
