using System.Numerics;
using CsCheck;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Core.Tests.SecureAggregation;

public sealed class ShamirTests
{
    private static readonly Gen<BigInteger> GenSecret =
        Gen.Byte.Array[32].Select(b => new BigInteger(b, isUnsigned: true, isBigEndian: true) % Shamir.Prime);

    [Fact]
    public void Reconstruct_AnyTOrMoreShares_ReturnsTheSecret()
    {
        Gen.Select(GenSecret, Gen.Int[2, 8], Gen.Int[0, 5], Gen.Int[0, 1000]).Sample((secret, t, extra, pick) =>
        {
            int n = t + extra;
            int[] xs = [.. Enumerable.Range(0, n).Select(i => 1 + i * 37 % 1000 + i)]; // distinct, non-zero
            var shares = Shamir.Split(secret, t, xs);
            var r = new FleetLearn.Core.Random.DeterministicRandom((ulong)pick);
            var idx = Enumerable.Range(0, n).ToArray();
            r.Shuffle(idx.AsSpan());
            int take = t + r.NextInt(extra + 1);
            var chosen = idx.Take(take).ToArray();
            return Shamir.Reconstruct([.. chosen.Select(i => xs[i])], [.. chosen.Select(i => shares[i])]) == secret;
        }, iter: 200);
    }

    [Fact]
    public void Split_TMinusOneShares_DistributedIdenticallyForEverySecret()
    {
        // Exhaustive in GF(13), t = 3: over all coefficient choices, every pair of share values at any
        // two points occurs exactly once for every secret, so t − 1 shares carry no information.
        var p = new BigInteger(13);
        Gen.Select(Gen.Int[1, 12], Gen.Int[1, 12]).Where((a, b) => a != b).Sample((x1, x2) =>
        {
            for (int secret = 0; secret < 13; secret++)
            {
                var seen = new int[13, 13];
                for (int c1 = 0; c1 < 13; c1++)
                    for (int c2 = 0; c2 < 13; c2++)
                    {
                        var s = Shamir.Split(secret, [c1, c2], [x1, x2], p);
                        seen[(int)s[0], (int)s[1]]++;
                    }
                foreach (int count in seen) if (count != 1) return false;
            }
            return true;
        }, iter: 20);
    }

    [Fact]
    public void LagrangeAtZero_BatchInversion_EqualsNaiveCoefficients()
    {
        Gen.Int[1, 500].Array[2, 12].Where(a => a.Distinct().Count() == a.Length).Sample(xs =>
        {
            var lambdas = Shamir.LagrangeAtZero(xs, Shamir.Prime);
            var p = Shamir.Prime;
            for (int i = 0; i < xs.Length; i++)
            {
                BigInteger num = 1, den = 1;
                for (int j = 0; j < xs.Length; j++)
                {
                    if (j == i) continue;
                    num = num * xs[j] % p;
                    den = den * (((BigInteger)xs[j] - xs[i]) % p + p) % p;
                }
                if (lambdas[i] != num * BigInteger.ModPow(den, p - 2, p) % p) return false;
            }
            return true;
        }, iter: 100);
    }

    [Fact]
    public void Split_DuplicatePoint_Throws()
    {
        var e = Assert.Throws<ArgumentException>(() => Shamir.Split(5, 2, [3, 3]));
        Assert.Equal("Share point x = 3 appears twice.", e.Message);
    }

    [Fact]
    public void Split_SecretOutsideField_Throws()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => Shamir.Split(Shamir.Prime, 2, [1, 2]));
    }

    [Fact]
    public void Prime_IsTheP256FieldPrime()
    {
        var expected = BigInteger.Pow(2, 256) - BigInteger.Pow(2, 224) + BigInteger.Pow(2, 192) + BigInteger.Pow(2, 96) - 1;
        Assert.Equal(expected, Shamir.Prime);
    }
}
