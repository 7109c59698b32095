using System.Globalization;
using System.Numerics;
using System.Security.Cryptography;

namespace FleetLearn.Core.SecureAggregation;

/// <summary>
/// t-of-n Shamir secret sharing over the prime field of NIST P-256,
/// p = 2^256 − 2^224 + 2^192 + 2^96 − 1 (FIPS 186-4 D.1.2.3), with <see cref="BigInteger"/>.
/// </summary>
/// <remarks>
/// Why this prime: both secrets fit without splitting into limbs. The ECDH private scalar is below
/// the P-256 group order n &lt; p, and the self-mask seed b_u is drawn uniformly from [0, p) by
/// rejection (a 32-byte draw is rejected with probability below 2^−32), so it keeps ~256 bits of
/// entropy and is used directly as the AES-256 key of the mask PRG. Shares are 32 bytes.
/// Vehicle v's share has x = v + 1 (x = 0 is the secret).
/// </remarks>
public static class Shamir
{
    /// <summary>The field prime.</summary>
    public static readonly BigInteger Prime = BigInteger.Parse(
        "0FFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF", NumberStyles.HexNumber, CultureInfo.InvariantCulture);

    /// <summary>Encoded length of a field element (big-endian, fixed width).</summary>
    public const int ElementBytes = 32;

    /// <summary>A uniform element of [0, p) from the OS CSPRNG.</summary>
    public static BigInteger RandomElement() => RandomElement(Prime);

    internal static BigInteger RandomElement(BigInteger prime)
    {
        int bytes = (int)((prime.GetBitLength() + 7) / 8);
        Span<byte> buf = stackalloc byte[bytes];
        int topBits = (int)(prime.GetBitLength() % 8);
        while (true)
        {
            RandomNumberGenerator.Fill(buf);
            if (topBits != 0) buf[0] &= (byte)((1 << topBits) - 1);
            var v = new BigInteger(buf, isUnsigned: true, isBigEndian: true);
            if (v < prime) return v;
        }
    }

    /// <summary>Shares of <paramref name="secret"/> for the points <paramref name="xs"/>; any <paramref name="threshold"/> of them reconstruct it.</summary>
    public static BigInteger[] Split(BigInteger secret, int threshold, ReadOnlySpan<int> xs)
    {
        if (threshold < 1 || xs.Length < threshold)
            throw new ArgumentException($"{xs.Length} share holders cannot carry a {threshold}-of-n sharing.", nameof(xs));
        var coefficients = new BigInteger[threshold - 1];
        for (int i = 0; i < coefficients.Length; i++) coefficients[i] = RandomElement();
        return Split(secret, coefficients, xs, Prime);
    }

    /// <summary>Evaluates secret + c1·x + … + c_{t−1}·x^{t−1} mod <paramref name="prime"/> at each x (randomness injected for tests).</summary>
    internal static BigInteger[] Split(BigInteger secret, ReadOnlySpan<BigInteger> coefficients, ReadOnlySpan<int> xs, BigInteger prime)
    {
        if (secret.Sign < 0 || secret >= prime) throw new ArgumentOutOfRangeException(nameof(secret), "The secret must lie in [0, p).");
        EnsureDistinctNonZero(xs, prime);
        var shares = new BigInteger[xs.Length];
        for (int i = 0; i < xs.Length; i++)
        {
            BigInteger x = xs[i], y = 0;
            for (int j = coefficients.Length - 1; j >= 0; j--) y = (y + coefficients[j]) * x % prime;
            shares[i] = (y + secret) % prime;
        }
        return shares;
    }

    /// <summary>Reconstructs the secret from shares (x, y): exact when at least t shares of one sharing are given.</summary>
    public static BigInteger Reconstruct(ReadOnlySpan<int> xs, ReadOnlySpan<BigInteger> ys) => Reconstruct(xs, ys, Prime);

    internal static BigInteger Reconstruct(ReadOnlySpan<int> xs, ReadOnlySpan<BigInteger> ys, BigInteger prime)
        => Combine(LagrangeAtZero(xs, prime), ys, prime);

    /// <summary>Σ λ_i·y_i mod p.</summary>
    internal static BigInteger Combine(ReadOnlySpan<BigInteger> lambdas, ReadOnlySpan<BigInteger> ys, BigInteger prime)
    {
        if (lambdas.Length != ys.Length) throw new ArgumentException("One coefficient per share.");
        BigInteger acc = 0;
        for (int i = 0; i < ys.Length; i++) acc += lambdas[i] * ys[i];
        return acc % prime;
    }

    /// <summary>Lagrange coefficients λ_i = Π_{j≠i} x_j / (x_j − x_i) at x = 0, with one modular inversion in all (batch inversion).</summary>
    internal static BigInteger[] LagrangeAtZero(ReadOnlySpan<int> xs, BigInteger prime)
    {
        EnsureDistinctNonZero(xs, prime);
        int t = xs.Length;
        var num = new BigInteger[t];
        var den = new BigInteger[t];
        for (int i = 0; i < t; i++)
        {
            BigInteger a = 1, b = 1;
            for (int j = 0; j < t; j++)
            {
                if (j == i) continue;
                a = a * xs[j] % prime;
                b = b * (((BigInteger)xs[j] - xs[i]) % prime + prime) % prime;
            }
            num[i] = a;
            den[i] = b;
        }
        // Batch inversion: prefix products, one Fermat inversion, walk back.
        var prefix = new BigInteger[t];
        BigInteger run = 1;
        for (int i = 0; i < t; i++) { prefix[i] = run; run = run * den[i] % prime; }
        BigInteger inv = BigInteger.ModPow(run, prime - 2, prime);
        var lambdas = new BigInteger[t];
        for (int i = t - 1; i >= 0; i--)
        {
            BigInteger denInv = inv * prefix[i] % prime;
            inv = inv * den[i] % prime;
            lambdas[i] = num[i] * denInv % prime;
        }
        return lambdas;
    }

    /// <summary>Fixed-width big-endian encoding of a field element.</summary>
    public static void WriteElement(BigInteger value, Span<byte> destination)
    {
        destination[..ElementBytes].Clear();
        int len = value.GetByteCount(isUnsigned: true);
        value.TryWriteBytes(destination.Slice(ElementBytes - len, len), out _, isUnsigned: true, isBigEndian: true);
    }

    /// <summary>Decodes a 32-byte big-endian element (not reduced; callers check &lt; p).</summary>
    public static BigInteger ReadElement(ReadOnlySpan<byte> source) => new(source[..ElementBytes], isUnsigned: true, isBigEndian: true);

    private static void EnsureDistinctNonZero(ReadOnlySpan<int> xs, BigInteger prime)
    {
        var seen = new HashSet<int>();
        foreach (int x in xs)
        {
            if (x <= 0 || x >= prime) throw new ArgumentException($"Share point x = {x} must lie in [1, p).");
            if (!seen.Add(x)) throw new ArgumentException($"Share point x = {x} appears twice.");
        }
    }
}
