using CsCheck;
using FleetLearn.Core.Model;

namespace FleetLearn.Core.Tests.Model;

public sealed class CheckpointTests
{
    private static readonly Gen<ModelSpec> GenSpec =
        Gen.Int[1, 9].Array[2, 4].Where(a => a[^1] >= 2).Select(a => new ModelSpec(a));

    [Fact]
    public void ToBytes_FromBytes_RoundTripsExactly()
    {
        Gen.Select(GenSpec, Gen.Long, Gen.Int).Sample((spec, version, seed) =>
        {
            var p = ModelInitializer.Initialize(spec, (ulong)seed);
            var original = new Checkpoint(spec, version, p, "{\"round\":3}");
            var back = Checkpoint.FromBytes(original.ToBytes());
            Assert.Equal(spec, back.Spec);
            Assert.Equal(version, back.Version);
            Assert.Equal(p, back.Parameters);
            Assert.Equal("{\"round\":3}", back.MetadataJson);
        }, iter: 200);
    }

    [Fact]
    public void FromBytes_AnyFlippedByteOrTruncation_IsRejected()
    {
        var spec = ModelSpec.Parse("5-4-3");
        var bytes = new Checkpoint(spec, 7, ModelInitializer.Initialize(spec, 1)).ToBytes();
        Gen.Int[0, bytes.Length - 1].Select(Gen.Byte[1, 255]).Sample((index, flip) =>
        {
            var corrupt = bytes.ToArray();
            corrupt[index] ^= flip;
            Assert.Throws<CheckpointFormatException>(() => Checkpoint.FromBytes(corrupt));
        });
        Gen.Int[0, bytes.Length - 1].Sample(length =>
            Assert.Throws<CheckpointFormatException>(() => Checkpoint.FromBytes(bytes.AsSpan(0, length))));
    }

    [Fact]
    public void FromBytes_RandomBytes_OnlyEverThrowsFormatException()
    {
        Gen.Byte.Array[0, 200].Sample(bytes =>
        {
            try
            {
                Checkpoint.FromBytes(bytes);
            }
            catch (CheckpointFormatException)
            {
            }
        });
    }

    [Fact]
    public void FromBytes_NaNParameterWithValidHash_IsRejected()
    {
        var spec = ModelSpec.Parse("3-2");
        var p = new float[spec.ParameterCount];
        p[1] = float.NaN;
        var bytes = new Checkpoint(spec, 0, p).ToBytes();
        var e = Assert.Throws<CheckpointFormatException>(() => Checkpoint.FromBytes(bytes));
        Assert.Contains("Parameter 1 is NaN", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Save_Load_RoundTripsThroughAFile()
    {
        var spec = ModelSpec.Parse("6-5-2");
        var dir = Directory.CreateTempSubdirectory("fleetlearn-ckpt-");
        try
        {
            var path = Path.Combine(dir.FullName, "sub", "model.ckpt");
            var ckpt = new Checkpoint(spec, 12, ModelInitializer.Initialize(spec, 3));
            ckpt.Save(path);
            var back = Checkpoint.Load(path);
            Assert.Equal(ckpt.Parameters, back.Parameters);
            Assert.False(File.Exists(path + ".tmp"));
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }
}
