using System.Buffers.Binary;
using System.Security.Cryptography;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Core.Tests.SecureAggregation;

public sealed class MaskPrgTests
{
    [Fact]
    public void Keystream_NistSp800_38A_F55CtrAes256_MatchesPublishedVector()
    {
        // NIST SP 800-38A, Appendix F.5.5 (CTR-AES256.Encrypt): keystream = plaintext XOR ciphertext.
        var key = Convert.FromHexString("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4");
        var counter = Convert.FromHexString("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff");
        var plaintext = Convert.FromHexString(
            "6bc1bee22e409f96e93d7e117393172a" + "ae2d8a571e03ac9c9eb76fac45af8e51" +
            "30c81c46a35ce411e5fbc1191a0a52ef" + "f69f2445df4f9b17ad2b417be66c3710");
        var ciphertext = Convert.FromHexString(
            "601ec313775789a5b7a7f504bbf3d228" + "f443e3ca4d62b59aca84e990cacaf5c5" +
            "2b0930daa23de94ce87017ba2d84988d" + "dfc9c58db67aada613c2dd08457941a6");
        var keystream = new byte[64];

        MaskPrg.Keystream(key, counter, keystream);

        for (int i = 0; i < 64; i++) plaintext[i] ^= keystream[i];
        Assert.Equal(ciphertext, plaintext);
    }

    [Fact]
    public void Apply_AcrossSeveralChunks_EqualsHandBuiltCounterBlocksEncryptedOneByOne()
    {
        var seed = Convert.FromHexString("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
        const int words = 4096 * 4 * 2 + 7; // two full 64 KiB chunks and a partial block
        var acc = new uint[words];

        MaskPrg.Apply(seed, acc, subtract: false);

        using var aes = Aes.Create();
        aes.Key = seed;
        var block = new byte[16];
        for (int b = 0; b * 4 < words; b++)
        {
            var ctr = new byte[16];
            BinaryPrimitives.WriteUInt64BigEndian(ctr.AsSpan(8), (ulong)b); // counter b as a 128-bit big-endian integer
            aes.EncryptEcb(ctr, block, PaddingMode.None);
            for (int j = 0; j < 4 && b * 4 + j < words; j++)
                Assert.Equal(BinaryPrimitives.ReadUInt32LittleEndian(block.AsSpan(4 * j)), acc[b * 4 + j]);
        }
    }

    [Theory]
    [InlineData("0000000000000000fffffffffffffffe")] // carry from the low into the high 64 bits
    [InlineData("fffffffffffffffffffffffffffffffe")] // wrap mod 2^128
    public void Keystream_CounterCarries_IncrementsAs128BitInteger(string start)
    {
        var key = new byte[32];
        key[0] = 42;
        var counter = Convert.FromHexString(start);
        var keystream = new byte[48];

        MaskPrg.Keystream(key, counter, keystream);

        using var aes = Aes.Create();
        aes.Key = key;
        var c = BinaryPrimitives.ReadUInt128BigEndian(counter);
        for (int b = 0; b < 3; b++)
        {
            var ctr = new byte[16];
            BinaryPrimitives.WriteUInt128BigEndian(ctr, unchecked(c + (UInt128)b));
            Assert.Equal(aes.EncryptEcb(ctr, PaddingMode.None), keystream.AsSpan(16 * b, 16).ToArray());
        }
    }

    [Theory]
    [InlineData(8, 256, 330.52)] // χ²(0.999, 255)
    [InlineData(4, 16, 37.70)]   // χ²(0.999, 15)
    [InlineData(1, 2, 10.83)]    // χ²(0.999, 1)
    public void Generate_LowBitWidths_PassChiSquareUniformity(int bitWidth, int bins, double critical)
    {
        var seed = SHA256.HashData(BitConverter.GetBytes(bitWidth));
        const int perBin = 400;

        var masks = MaskPrg.Generate(seed, bins * perBin, bitWidth);

        var counts = new int[bins];
        foreach (uint m in masks) counts[m]++; // also proves every mask < 2^m
        double chi2 = counts.Sum(c => (c - perBin) * (double)(c - perBin) / perBin);
        Assert.True(chi2 < critical, $"χ² = {chi2:F1} ≥ {critical}");
        Assert.True(counts[^1] > 0, "the top value 2^m − 1 must occur");
    }

    [Fact]
    public void Generate_FullWidthWords_TopAndBottomBytesPassChiSquare()
    {
        var masks = MaskPrg.Generate(SHA256.HashData("full"u8), 256 * 400, 32);

        foreach (int shift in new[] { 0, 24 })
        {
            var counts = new int[256];
            foreach (uint m in masks) counts[(m >> shift) & 0xFF]++;
            double chi2 = counts.Sum(c => (c - 400.0) * (c - 400.0) / 400.0);
            Assert.True(chi2 < 330.52, $"byte at bit {shift}: χ² = {chi2:F1}");
        }
    }

    [Fact]
    public void Apply_AddThenSubtractSameSeed_RestoresAccumulator()
    {
        var seed = SHA256.HashData("x"u8);
        var original = Enumerable.Range(0, 1001).Select(i => (uint)(i * 2654435761u)).ToArray();
        var acc = (uint[])original.Clone();

        MaskPrg.Apply(seed, acc, subtract: false);
        Assert.NotEqual(original, acc);
        MaskPrg.Apply(seed, acc, subtract: true);

        Assert.Equal(original, acc);
    }

    [Fact]
    public void Apply_ShortSeed_Throws()
    {
        var e = Assert.Throws<ArgumentException>(() => MaskPrg.Apply(new byte[16], new uint[4], false));
        Assert.StartsWith("A mask seed must be 32 bytes.", e.Message);
    }
}
