using FleetLearn.Core.Compression;

namespace FleetLearn.Simulation.Tests;

public sealed class IngestBenchmarkTests
{
    [Fact]
    public void Plain_EveryUpdateThroughTheReceivePath_BytesAndStagesAccountedFor()
    {
        var r = IngestBenchmark.Plain(updates: 6, dimension: 3_000, CodecSpec.None, chunkBytes: 4096, repeats: 1);
        Assert.Equal(("plain", 6, 3_000), (r.Path, r.Updates, r.Dimension));
        // float32 updates of 3,000 parameters, chunked at 4 KiB: every chunk of every update counted once.
        Assert.InRange(r.WireBytes, 6L * 3_000 * 4, 6L * 3_000 * 4 + 6 * 4 * 200);
        Assert.True(r.Seconds > 0 && r.MemcpySeconds > 0);
        Assert.True(r.Stages.Reassembly + r.Stages.Decode + r.Stages.Receive <= r.Seconds * 1.01, $"{r.Stages} exceeds {r.Seconds}");
        Assert.Equal(r.Updates / r.Seconds, r.UpdatesPerSecond, 6);
    }

    [Fact]
    public void Masked_SecAggPlusInputsThroughTheReceivePath()
    {
        var r = IngestBenchmark.Masked(updates: 5, dimension: 2_000, CodecSpec.Parse("q8"), neighbors: 4, chunkBytes: 4096, repeats: 1);
        Assert.Equal(("masked", 5), (r.Path, r.Updates));
        Assert.True(r.WireBytes >= 5L * 2_000, $"{r.WireBytes} bytes cannot carry five 2,000-coordinate masked inputs");
        Assert.True(r.Seconds > 0 && r.RatioToMemcpy > 0);
    }

    [Fact]
    public void Masked_FewerThanThreeVehicles_Refused() =>
        Assert.Throws<ArgumentOutOfRangeException>(() => IngestBenchmark.Masked(2, 100, CodecSpec.None, 1, 4096));
}
