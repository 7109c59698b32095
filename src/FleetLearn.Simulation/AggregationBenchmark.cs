using System.Diagnostics;
using System.Runtime.InteropServices;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Random;

namespace FleetLearn.Simulation;

/// <summary>Result of <see cref="AggregationBenchmark.Run"/>.</summary>
/// <param name="InputGigabytesPerSecond">Update bytes folded per second by the streaming aggregator.</param>
/// <param name="MemcpyGigabytesPerSecond">Bytes copied per second by a plain memory copy of the same payloads, same run.</param>
/// <param name="PeakManagedMegabytes">Largest managed heap seen while folding (MiB).</param>
/// <param name="ModelMegabytes">Size of one update (MiB), for comparison.</param>
public sealed record AggregationBenchmarkResult(double InputGigabytesPerSecond, double MemcpyGigabytesPerSecond, double PeakManagedMegabytes, double ModelMegabytes);

/// <summary>
/// Throughput of the server's streaming fold (FedAvg's weighted mean) against memcpy on the same
/// payloads in the same run. Each update arrives as a wire payload (float32 little-endian bytes);
/// the aggregator folds it in place from the payload, never holding the cohort. Two distinct
/// payloads alternate so consecutive updates differ; memcpy copies the same payloads in the same
/// order into one destination buffer. Both run on one thread. Updates are drained in groups of
/// up to <c>drain</c> (default 8), as the aggregator's receive loop drains whatever has arrived,
/// and each group is folded in one pass over the accumulator.
/// </summary>
public static class AggregationBenchmark
{
    /// <summary>Runs the benchmark; <paramref name="progress"/> receives a line per phase.</summary>
    public static AggregationBenchmarkResult Run(int updates, int dimension, int repeats = 3, Action<string>? progress = null, int drain = 8)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(updates);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(dimension);
        var payloads = new byte[2][];
        var rng = new DeterministicRandom(42);
        for (int p = 0; p < payloads.Length; p++)
        {
            payloads[p] = new byte[4L * dimension <= int.MaxValue ? 4 * dimension : throw new ArgumentOutOfRangeException(nameof(dimension))];
            var floats = MemoryMarshal.Cast<byte, float>(payloads[p].AsSpan());
            for (int i = 0; i < floats.Length; i++) floats[i] = (float)(rng.NextGaussian() * 1e-3);
        }
        double bytes = 4.0 * dimension * updates;

        // Passes alternate (memcpy, fold, memcpy, fold, …) so that noise from other processes on a
        // shared machine hits both alike; the best pass of each is reported.
        double bestCopy = double.MaxValue, bestFold = double.MaxValue;
        long peak = 0;
        var strategy = StrategyCatalog.Parse("fedavg");
        var combined = new float[dimension];
        var views = payloads.Select(p => (ReadOnlyMemory<float>)new ByteFloatMemory(p).Memory).ToArray();
        var group = new ReadOnlyMemory<float>[Math.Max(1, drain)];
        var weights = new double[group.Length];
        // Warm-up (not timed): lets the JIT promote the fold and copy loops to optimized code, as they
        // are in a long-running aggregator.
        {
            var warm = strategy.CreateAggregator(dimension);
            for (int u = 0; u < Math.Min(updates, 64); u++) warm.AddMany([views[u & 1]], [1.0]);
            var scratch = new byte[payloads[0].Length];
            for (int u = 0; u < Math.Min(updates, 64); u++) payloads[u & 1].AsSpan().CopyTo(scratch);
        }
        GC.Collect();
        for (int r = 0; r < repeats; r++)
        {
            {
                var destination = new byte[payloads[0].Length];
                var copy = Stopwatch.StartNew();
                for (int u = 0; u < updates; u++) payloads[u & 1].AsSpan().CopyTo(destination);
                bestCopy = Math.Min(bestCopy, copy.Elapsed.TotalSeconds);
            }
            GC.Collect();
            var aggregator = strategy.CreateAggregator(dimension);
            var sw = Stopwatch.StartNew();
            for (int u = 0; u < updates;)
            {
                int n = Math.Min(group.Length, updates - u);
                for (int k = 0; k < n; k++, u++)
                {
                    group[k] = views[u & 1];
                    weights[k] = 1 + (u % 7);
                }
                aggregator.AddMany(group.AsSpan(0, n), weights.AsSpan(0, n));
                if ((u & 31) < n) peak = Math.Max(peak, GC.GetTotalMemory(false));
            }
            aggregator.Complete(combined);
            double fold = sw.Elapsed.TotalSeconds;
            bestFold = Math.Min(bestFold, fold);
            peak = Math.Max(peak, GC.GetTotalMemory(false));
            progress?.Invoke($"pass {r + 1}/{repeats}: fold {bytes / fold / 1e9:F2} GB/s, memcpy best {bytes / bestCopy / 1e9:F2} GB/s");
            GC.Collect();
        }
        return new AggregationBenchmarkResult(bytes / bestFold / 1e9, bytes / bestCopy / 1e9, peak / (1024.0 * 1024.0), 4.0 * dimension / (1024.0 * 1024.0));
    }
}

/// <summary>Views a little-endian float32 wire payload as floats without copying.</summary>
internal sealed class ByteFloatMemory(byte[] bytes) : System.Buffers.MemoryManager<float>
{
    public override Span<float> GetSpan() => MemoryMarshal.Cast<byte, float>(bytes.AsSpan());

    public override System.Buffers.MemoryHandle Pin(int elementIndex = 0) => throw new NotSupportedException();

    public override void Unpin()
    {
    }

    protected override void Dispose(bool disposing)
    {
    }
}
