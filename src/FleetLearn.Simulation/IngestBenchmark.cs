using System.Diagnostics;
using System.Security.Cryptography;
using FleetLearn.Core.Compression;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Random;
using FleetLearn.Core.Rounds;
using FleetLearn.Core.SecureAggregation;
using FleetLearn.Transport.Mqtt;

namespace FleetLearn.Simulation;

/// <summary>One path of <see cref="IngestBenchmark"/>: wire bytes taken in per second next to memcpy of the same bytes, same run.</summary>
/// <param name="Path">"plain" or "masked".</param>
/// <param name="Updates">Updates (one per vehicle) received per pass.</param>
/// <param name="Dimension">Model parameters.</param>
/// <param name="WireBytes">Bytes of every chunk of every update, as MQTT delivers them.</param>
/// <param name="Seconds">Best pass of the receive path.</param>
/// <param name="MemcpySeconds">Best pass of copying the same chunks, in the same order, into one reused, cache-hot, message-sized buffer (the demanding peer).</param>
/// <param name="Stages">Where the best pass spent its time: chunk reassembly, envelope and message decoding, and the coordinator's receive (admission, decode, fold), in seconds.</param>
/// <param name="Sha256Seconds">Best pass of SHA-256 alone over the same payloads (format 1's transfer check, which bounded the path before format 2).</param>
/// <param name="AllocatedBytes">Bytes the receive path allocated in the best pass (managed heap, this thread).</param>
/// <param name="MemcpyFreshSeconds">Best pass of copying the same chunks into a freshly allocated array per message (what a receive path that materialises each update pays).</param>
/// <param name="ChecksumSeconds">Best pass of XXH3-128 alone over the same payloads (format 2's transfer check).</param>
public sealed record IngestPathResult(string Path, int Updates, int Dimension, long WireBytes, double Seconds, double MemcpySeconds, IngestStages Stages,
    double Sha256Seconds = double.NaN, long AllocatedBytes = 0, double MemcpyFreshSeconds = double.NaN, double ChecksumSeconds = double.NaN)
{
    /// <summary>memcpy into fresh memory over the same bytes, same run.</summary>
    public double MemcpyFreshMegabytesPerSecond => WireBytes / MemcpyFreshSeconds / 1e6;

    /// <summary>XXH3-128's throughput over the same payloads, same run.</summary>
    public double ChecksumMegabytesPerSecond => WireBytes / ChecksumSeconds / 1e6;

    /// <summary>The most <see cref="RatioToMemcpy"/> can be while every transfer's XXH3-128 is checked: memcpy ÷ XXH3-128 alone.</summary>
    public double RatioBoundByChecksum => MemcpySeconds / ChecksumSeconds;

    /// <summary>SHA-256's throughput over the same payloads, same run.</summary>
    public double Sha256MegabytesPerSecond => WireBytes / Sha256Seconds / 1e6;

    /// <summary>The most <see cref="RatioToMemcpy"/> can be while every transfer's SHA-256 is checked: memcpy ÷ SHA-256 alone.</summary>
    public double RatioBoundBySha256 => MemcpySeconds / Sha256Seconds;

    /// <summary>Bytes allocated per wire byte received.</summary>
    public double AllocatedPerWireByte => (double)AllocatedBytes / WireBytes;

    /// <summary>Receive-path throughput in MB (10^6 bytes) of wire bytes per second.</summary>
    public double MegabytesPerSecond => WireBytes / Seconds / 1e6;

    /// <summary>Updates received per second.</summary>
    public double UpdatesPerSecond => Updates / Seconds;

    /// <summary>memcpy's throughput over the same bytes.</summary>
    public double MemcpyMegabytesPerSecond => WireBytes / MemcpySeconds / 1e6;

    /// <summary>Receive path ÷ memcpy (1 = as fast as copying the bytes once).</summary>
    public double RatioToMemcpy => MemcpySeconds / Seconds;
}

/// <summary>Seconds one pass of <see cref="IngestBenchmark"/> spent in each stage of the receive path.</summary>
public sealed record IngestStages(double Reassembly, double Decode, double Receive);

/// <summary>
/// The aggregator's receive path without the network (issue 16 item 2): pre-encoded chunked update messages in memory go
/// through what <c>AggregatorWorker</c> does with each MQTT message — <see cref="ChunkAssembler.TryAdd"/> (with the worker's
/// caps; it keeps slices of the message arrays and checks the transfer's XXH3-128), <see cref="Envelope.DecodeInPlace(in System.Buffers.ReadOnlySequence{byte}, int, long?)"/>,
/// <see cref="UplinkDecoder.Decode"/>, and <see cref="RoundCoordinator.Receive"/> (dedupe, admission checks, decode, fold from
/// the segments) — timed against memcpy of the same chunks in the same run. Plain: float updates through
/// the round's codec, folded by the strategy. Masked: SecAgg+ masked inputs folded into the ring sum; the key phases before
/// them run untimed, and the unmasking after the last input is not part of the fold. Not included: the journal's copy and
/// fsync per accepted plain update (storage: the store joins the segments into its document; measured apart) and the broker. Passes alternate (memcpy, receive, …); the best of each counts.
/// </summary>
public static class IngestBenchmark
{
    private const string Topic = "fleetlearn/v1/bench/vehicles/v/up/update";
    private const int MaxWarmupPasses = 20;
    private static readonly TimeSpan WarmupQuiet = TimeSpan.FromSeconds(1);

    /// <summary>The plain path: <paramref name="updates"/> updates of a <paramref name="dimension"/>-parameter model through <paramref name="codec"/>.</summary>
    public static IngestPathResult Plain(int updates, int dimension, CodecSpec codec, int chunkBytes, int repeats = 3, Action<string>? progress = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(updates, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(dimension, 1);
        var pipeline = new UpdatePipeline(new UpdatePipelineOptions { Codec = codec, Dimension = dimension, ClipNorm = codec.SharedRange ? 10 : null });
        var round = pipeline.ForRound(1, 1);
        var vehicles = Vehicles(updates);
        var messages = new List<byte[]>[updates];
        for (int v = 0; v < updates; v++)
        {
            var delta = Delta(dimension, v);
            var body = round.EncodePlain(delta, 1, (ulong)v, Guid.NewGuid(), new SeededNoiseSource((ulong)v), new SeededNoiseSource((ulong)v + 1_000_000), null, out _);
            var envelope = new Envelope(EnvelopeKind.Update, vehicles[v], 1, Guid.NewGuid(), new PlainUpdate(0.5, 100, body).Encode());
            messages[v] = ChunkCodec.Split(envelope.Encode(), chunkBytes);
        }
        progress?.Invoke($"plain: {updates} updates of {dimension:N0} parameters ({codec}) encoded, {Bytes(messages)} on the wire");
        var global = new float[dimension];
        return Measure("plain", updates, dimension, messages, repeats, progress, () =>
        {
            var clock = new ManualTimeProvider();
            var coordinator = new RoundCoordinator(new RoundSetup
            {
                Round = 1,
                Cohort = vehicles,
                Global = global,
                Strategy = StrategyCatalog.Parse("fedavg", null),
                Codec = round,
                Rules = new RoundRules { CohortSize = updates, MinParticipants = 1, MaxWeight = 100 },
                Deadline = clock.GetUtcNow() + TimeSpan.FromHours(1),
            }, clock);
            return (coordinator, () => { });
        });
    }

    /// <summary>
    /// The masked path: <paramref name="updates"/> SecAgg+ vehicles (<paramref name="neighbors"/> neighbours each) of a
    /// <paramref name="dimension"/>-parameter model through <paramref name="codec"/>; each pass runs a fresh round's key phases untimed.
    /// </summary>
    public static IngestPathResult Masked(int updates, int dimension, CodecSpec codec, int neighbors, int chunkBytes, int repeats = 3, Action<string>? progress = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(updates, 3);
        var pipeline = new UpdatePipeline(new UpdatePipelineOptions
        {
            Codec = codec, Dimension = dimension, ClipNorm = 1, SecureAggregation = SecureAggregationMode.Plus, Neighbors = Math.Min(neighbors, updates - 1), CohortSize = updates,
        });
        var round = pipeline.ForRound(1, 1, 1);
        var inputs = new uint[updates][];
        for (int v = 0; v < updates; v++)
            inputs[v] = round.EncodeSecure(Delta(dimension, v), 1, new SeededNoiseSource((ulong)v), new SeededNoiseSource((ulong)v + 1_000_000), out _);
        var vehicles = Vehicles(updates);
        var keys = Enumerable.Range(0, updates).Select(_ => ECDsa.Create(ECCurve.NamedCurves.nistP256)).ToArray();
        try
        {
            List<byte[]>[]? messages = null;
            return Measure("masked", updates, dimension, () => messages!, repeats, progress, pass =>
            {
                // The key phases of a fresh round (untimed), up to the masked inputs the timed part receives.
                var clock = new ManualTimeProvider();
                var parameters = pipeline.CreateSecAggParameters(1, updates, RandomNumberGenerator.GetBytes(32), TimeSpan.FromHours(1));
                var registry = new DeviceKeyRegistry();
                for (int v = 0; v < updates; v++) registry.Add(v, keys[v].ExportSubjectPublicKeyInfo());
                var coordinator = new RoundCoordinator(new RoundSetup
                {
                    Round = 1,
                    Cohort = vehicles,
                    Global = new float[dimension],
                    Strategy = StrategyCatalog.Parse("fedavg", null),
                    Codec = round,
                    Rules = new RoundRules { CohortSize = updates, UniformWeights = true, MaxWeight = 1 },
                    Deadline = clock.GetUtcNow() + TimeSpan.FromHours(2),
                    Secure = new SecureRoundSetup(parameters, registry),
                }, clock);
                var clients = Enumerable.Range(0, updates).Select(v => new SecAggVehicle(parameters, v, keys[v], registry, clock)).ToArray();
                var routed = new List<SecAggMessage>();
                for (int v = 0; v < updates; v++) routed.AddRange(Route(coordinator.Receive(vehicles[v], Guid.NewGuid(), new SecureUpdateMessage(clients[v].Start()))));
                var next = new List<SecAggMessage>();
                foreach (var d in routed.OfType<KeyDirectoryMessage>()) next.AddRange(Route(coordinator.Receive(vehicles[d.VehicleId], Guid.NewGuid(), new SecureUpdateMessage(clients[d.VehicleId].HandleKeyDirectory(d)))));
                messages = new List<byte[]>[updates];
                foreach (var f in next.OfType<ForwardedSharesMessage>())
                {
                    var masked = clients[f.VehicleId].HandleForwardedShares(f, inputs[f.VehicleId]);
                    var envelope = new Envelope(EnvelopeKind.SecAgg, vehicles[f.VehicleId], 1, Guid.NewGuid(), SecAggCodec.Encode(masked));
                    messages[f.VehicleId] = ChunkCodec.Split(envelope.Encode(), chunkBytes);
                }
                if (messages.Any(m => m is null)) throw new InvalidOperationException("A vehicle got no forwarded shares: the key phases did not complete.");
                if (pass == 0) progress?.Invoke($"masked: {updates} SecAgg+ vehicles (k = {parameters.Neighbors}, m = {parameters.BitWidth} bits) of {dimension:N0} parameters ({codec}), {Bytes(messages)} of masked inputs on the wire");
                return (coordinator, () =>
                {
                    foreach (var c in clients) c.Dispose();
                    registry.Dispose();
                });
            });
        }
        finally
        {
            foreach (var k in keys) k.Dispose();
        }

        static IEnumerable<SecAggMessage> Route(RoundStep step) =>
            step.Admission.Status == AckStatus.Accepted ? step.Effects.OfType<RouteEffect>().Select(r => r.Message)
            : throw new InvalidOperationException($"The benchmark's key phase was refused: {step.Admission.Why}");
    }

    private static IngestPathResult Measure(string path, int updates, int dimension, List<byte[]>[] messages, int repeats, Action<string>? progress,
        Func<(RoundCoordinator Coordinator, Action Dispose)> open) =>
        Measure(path, updates, dimension, () => messages, repeats, progress, _ => open());

    private static IngestPathResult Measure(string path, int updates, int dimension, Func<List<byte[]>[]> messagesOf, int repeats, Action<string>? progress,
        Func<int, (RoundCoordinator Coordinator, Action Dispose)> open)
    {
        double bestReceive = double.MaxValue, bestCopy = double.MaxValue, bestHash = double.MaxValue, bestFresh = double.MaxValue, bestChecksum = double.MaxValue;
        long bestAllocated = 0;
        IngestStages bestStages = new(0, 0, 0);
        long wire = 0;
        // Untimed warm-up passes first, until the JIT has settled: no method compiled (at tier 0, or promoted to tier 1) for
        // WarmupQuiet of passes, at most MaxWarmupPasses. A long-running aggregator runs tier-1 code; one warm-up pass was not
        // enough (XxHash128.Append was still at instrumented tier 0 after it and the three timed passes, and the timed
        // passes measured the JIT's promotion schedule rather than the receive path).
        int warmups = 0;
        bool warming = true;
        long compiled = System.Runtime.JitInfo.GetCompiledMethodCount(), quietSince = Stopwatch.GetTimestamp();
        for (int pass = 0, timed = 0; timed < repeats; pass++)
        {
            var (coordinator, dispose) = open(pass);
            var messages = messagesOf();
            wire = messages.Sum(m => m.Sum(c => (long)c.Length));
            var scratch = new byte[messages.Max(m => m.Sum(c => c.Length))];
            var copy = Stopwatch.StartNew();
            foreach (var chunks in messages)
            {
                int at = 0;
                foreach (var chunk in chunks)
                {
                    chunk.CopyTo(scratch.AsSpan(at));
                    at += chunk.Length;
                }
            }
            copy.Stop();
            // The second peer: each message copied into memory allocated for it, as a receive path that materialises every update must.
            var fresh = Stopwatch.StartNew();
            foreach (var chunks in messages)
            {
                var whole = GC.AllocateUninitializedArray<byte>(chunks.Sum(c => c.Length));
                int at = 0;
                foreach (var chunk in chunks)
                {
                    chunk.CopyTo(whole.AsSpan(at));
                    at += chunk.Length;
                }
            }
            fresh.Stop();
            // The transfer checks over each whole payload, same bytes: XXH3-128 (format 2, what ChunkAssembler verifies) and SHA-256 (format 1).
            byte[][]? payloads = [.. messages.Select(Payload)];
            var checksum = Stopwatch.StartNew();
            foreach (var payload in payloads) System.IO.Hashing.XxHash128.HashToUInt128(payload);
            checksum.Stop();
            var hash = Stopwatch.StartNew();
            foreach (var payload in payloads) SHA256.HashData(payload);
            hash.Stop();
            long maxUpdate = messages.Max(m => m.Sum(c => (long)c.Length));
            long allocated;
            var assembler = new ChunkAssembler(maxUpdate, Math.Max(64, 4 * updates), 2, maxUpdate + maxUpdate / 16 + 65536);
            long reassembly = 0, decode = 0, fold = 0;
            // The peers above left ~2 × the wire bytes of garbage (fresh copies, joined payloads): collected now, so that a
            // background collection of it does not compete with the timed receive pass for the cores and memory bandwidth.
            payloads = null;
            GC.Collect();
            GC.WaitForPendingFinalizers();
            long allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
            var receive = Stopwatch.StartNew();
            using (coordinator)
            {
                for (int m = 0; m < messages.Length; m++)
                {
                    string owner = coordinator.Cohort[m]; // the MQTT topic names the vehicle: message m is vehicle m's
                    foreach (var chunk in messages[m])
                    {
                        long t0 = Stopwatch.GetTimestamp();
                        bool complete = assembler.TryAdd(owner, Topic, chunk, out var whole);
                        long t1 = Stopwatch.GetTimestamp();
                        reassembly += t1 - t0;
                        if (!complete) continue;
                        var envelope = Envelope.DecodeInPlace(whole, checked((int)maxUpdate));
                        var message = UplinkDecoder.Decode(envelope);
                        long t2 = Stopwatch.GetTimestamp();
                        var step = coordinator.Receive(envelope.Vehicle, envelope.UpdateId, message);
                        long t3 = Stopwatch.GetTimestamp();
                        (decode, fold) = (decode + t2 - t1, fold + t3 - t2);
                        if (step.Admission.Status != AckStatus.Accepted) throw new InvalidOperationException($"The benchmark's update was refused: {step.Admission.Why}");
                    }
                }
                receive.Stop();
                allocated = GC.GetAllocatedBytesForCurrentThread() - allocatedBefore;
                if (path == "plain" && coordinator.Phase is not Closed) throw new InvalidOperationException("The plain round did not close after its last update.");
            }
            dispose();
            if (warming)
            {
                warmups++;
                long now = System.Runtime.JitInfo.GetCompiledMethodCount();
                if (now != compiled) (compiled, quietSince) = (now, Stopwatch.GetTimestamp());
                warming = Stopwatch.GetElapsedTime(quietSince) < WarmupQuiet && warmups < MaxWarmupPasses;
                if (!warming) progress?.Invoke($"{path}: {warmups} untimed warm-up passes{(warmups >= MaxWarmupPasses ? " (the most; the JIT was still compiling)" : "")}");
                continue;
            }
            timed++;
            bestCopy = Math.Min(bestCopy, copy.Elapsed.TotalSeconds);
            bestHash = Math.Min(bestHash, hash.Elapsed.TotalSeconds);
            bestFresh = Math.Min(bestFresh, fresh.Elapsed.TotalSeconds);
            bestChecksum = Math.Min(bestChecksum, checksum.Elapsed.TotalSeconds);
            var stages = new IngestStages(Seconds(reassembly), Seconds(decode), Seconds(fold));
            if (receive.Elapsed.TotalSeconds < bestReceive) (bestReceive, bestStages, bestAllocated) = (receive.Elapsed.TotalSeconds, stages, allocated);
            progress?.Invoke(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"{path} pass {timed}/{repeats}: receive {wire / receive.Elapsed.TotalSeconds / 1e6:N0} MB/s (reassembly {stages.Reassembly:F3} s, decode {stages.Decode:F3} s, admit and fold {stages.Receive:F3} s; {allocated / 1e6:N1} MB allocated), memcpy {wire / copy.Elapsed.TotalSeconds / 1e6:N0} MB/s, into fresh memory {wire / fresh.Elapsed.TotalSeconds / 1e6:N0} MB/s, XXH3-128 alone {wire / checksum.Elapsed.TotalSeconds / 1e6:N0} MB/s, SHA-256 alone {wire / hash.Elapsed.TotalSeconds / 1e6:N0} MB/s"));
        }
        return new IngestPathResult(path, updates, dimension, wire, bestReceive, bestCopy, bestStages, bestHash, bestAllocated, bestFresh, bestChecksum);

        static double Seconds(long ticks) => (double)ticks / Stopwatch.Frequency;
    }

    /// <summary>The whole payload a message's chunks (format 2) carry (their data after the chunk header), as the assembler checks it.</summary>
    private static byte[] Payload(List<byte[]> chunks)
    {
        var whole = new byte[chunks.Sum(c => c.Length - ChunkCodec.HeaderSize)];
        int at = 0;
        foreach (var c in chunks)
        {
            c.AsSpan(ChunkCodec.HeaderSize).CopyTo(whole.AsSpan(at));
            at += c.Length - ChunkCodec.HeaderSize;
        }
        return whole;
    }

    private static string[] Vehicles(int n) => [.. Enumerable.Range(0, n).Select(v => $"vehicle-{v}")];

    private static float[] Delta(int dimension, int vehicle)
    {
        var rng = DeterministicRandom.Derive(16, 2, (ulong)vehicle);
        var delta = new float[dimension];
        double scale = 0.5 / Math.Sqrt(dimension); // ‖Δ‖₂ ≈ 0.5: inside every clip and norm bound
        for (int i = 0; i < delta.Length; i++) delta[i] = (float)(rng.NextGaussian() * scale);
        return delta;
    }

    private static string Bytes(List<byte[]>[] messages) => $"{messages.Sum(m => m.Sum(c => (long)c.Length)) / 1e6:N1} MB";
}
