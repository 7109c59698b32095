using FleetLearn.Core.Model;
using FleetLearn.Onnx;
using FleetLearn.Transport.Mqtt;
using Microsoft.Extensions.Logging;

namespace FleetLearn.Aggregator;

/// <summary>Publishes global models (retained, chunked, expiring, once per version; superseded ones cleared), serves one on demand, and exports each as ONNX.</summary>
/// <remarks>
/// Retained model chunks carry an MQTT 5 message expiry (<c>Aggregator:ModelRetention</c>, default 1 hour). Versions left
/// retained by an earlier run, which this run cannot clear because it does not know them, therefore leave the broker on
/// their own. The current model is published again once half its retention has passed. A vehicle that lacks the model
/// of the round it joined asks for it on <c>vehicles/{id}/up/model</c> and gets the chunks in its inbox
/// (docs/reliability.md, "Bandwidth on reconnect").
/// </remarks>
internal sealed class ModelPublisher(MqttConnection mqtt, AggregatorStatus status, string? onnxFolder, ILogger logger, TimeProvider? time = null, TimeSpan? retention = null, int keep = 2)
{
    private readonly Dictionary<long, int> _published = [];
    private readonly Dictionary<string, DateTimeOffset> _served = new(StringComparer.Ordinal);
    private readonly TimeProvider _time = time ?? TimeProvider.System;
    private readonly TimeSpan _retention = retention ?? TimeSpan.FromHours(1);
    private (long Version, IReadOnlyList<byte[]> Chunks, DateTimeOffset At)? _current;

    /// <summary>How often one vehicle is served one model version at most (a vehicle cannot make the aggregator flood the broker).</summary>
    public static readonly TimeSpan ServeInterval = TimeSpan.FromSeconds(10);

    /// <summary>Models sent to vehicles on demand.</summary>
    public int Served { get; private set; }

    /// <summary>Publishes <paramref name="model"/> unless already published (and not half expired); clears versions older than the newest <c>keep</c> (default 2: this one and the previous one; FedBuff keeps its maximum staleness + 1).</summary>
    public async Task PublishAsync(Checkpoint model, byte[] modelBytes, CancellationToken cancellationToken)
    {
        var topics = mqtt.Topics;
        var now = _time.GetUtcNow();
        if (_published.ContainsKey(model.Version) && _current is { } c && c.Version == model.Version && now - c.At < _retention / 2) return;
        var chunks = ChunkCodec.Split(modelBytes, mqtt.Options.MaxPacketSize);
        for (int i = 0; i < chunks.Count; i++)
        {
            await mqtt.PublishReliablyAsync(topics.ModelChunk(model.Version, i), chunks[i], retain: true, expiry: _retention, cancellationToken: cancellationToken).ConfigureAwait(false);
            status.Sent(chunks[i].Length);
        }
        _current = (model.Version, chunks, now);
        _published[model.Version] = chunks.Count;
        foreach (var (old, count) in _published.Where(p => p.Key <= model.Version - Math.Max(1, keep)).ToList())
        {
            for (int i = 0; i < count; i++)
                await mqtt.PublishReliablyAsync(topics.ModelChunk(old, i), ReadOnlyMemory<byte>.Empty, retain: true, cancellationToken: cancellationToken).ConfigureAwait(false);
            _published.Remove(old);
        }
    }

    /// <summary>
    /// A request of <paramref name="vehicle"/> for a model version (8 bytes, little endian): the current model is sent to its
    /// inbox when the vehicle is in <paramref name="cohort"/> and was not served that version in the last
    /// <see cref="ServeInterval"/>. Anything else is ignored (returns false). The chunks are sent in the background and expire after the retention.
    /// </summary>
    public Task<bool> ServeAsync(string vehicle, ReadOnlyMemory<byte> request, IReadOnlyList<string>? cohort, CancellationToken cancellationToken)
    {
        if (request.Length != 8 || _current is not { } current || cohort?.Contains(vehicle) != true) return Task.FromResult(false);
        long version = System.Buffers.Binary.BinaryPrimitives.ReadInt64LittleEndian(request.Span);
        var now = _time.GetUtcNow();
        string key = FormattableString.Invariant($"{vehicle}/{version}");
        if (version != current.Version || _served.TryGetValue(key, out var last) && now - last < ServeInterval) return Task.FromResult(false);
        if (Volatile.Read(ref _queuedServes) >= MaxQueuedServes) return Task.FromResult(false); // the broker is behind: the vehicle asks again later
        if (_served.Count > 4 * cohort.Count) _served.Clear(); // bounded: at most a few entries per cohort member
        _served[key] = now;
        Served++;
        // Sent beside the message pump, a few at a time: awaited in the pump, the serves of 1,000 vehicles whose retained copy
        // had not arrived yet (the broker still fanning it out) held every other message back for tens of seconds (docs/scale.md).
        _ = ServeInBackgroundAsync(vehicle, version, current.Chunks, cancellationToken); // never throws: failures are logged
        return Task.FromResult(true);
    }

    private const int MaxQueuedServes = 64;
    private readonly SemaphoreSlim _serveSlots = new(4, 4);
    private int _queuedServes;

    private async Task ServeInBackgroundAsync(string vehicle, long version, IReadOnlyList<byte[]> chunks, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _queuedServes);
        try
        {
            await _serveSlots.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                foreach (var chunk in chunks)
                {
                    await mqtt.PublishReliablyAsync(mqtt.Topics.InboxModel(vehicle, version), chunk, expiry: _retention, cancellationToken: cancellationToken).ConfigureAwait(false);
                    status.Sent(chunk.Length);
                }
            }
            finally
            {
                _serveSlots.Release();
            }
            logger.LogInformation("aggregator: sent model {Version} to {Vehicle} on request ({Chunks} chunks): it lacked the retained copy.", version, vehicle, chunks.Count);
        }
        catch (Exception e) when (e is OperationCanceledException || MqttConnection.IsTransient(e) || e is MqttRefusedException)
        {
            logger.LogDebug("aggregator: model {Version} for {Vehicle} not sent ({Error}); the vehicle asks again.", version, vehicle, e.Message);
        }
        finally
        {
            Interlocked.Decrement(ref _queuedServes);
        }
    }

    /// <summary>
    /// Writes the model as ONNX (head only, with version and parameter hash in its metadata) so that vehicles and any other
    /// runtime can run it. A failed export is logged, never fatal: the LiteDB copy is the model of record.
    /// </summary>
    public void ExportOnnx(Checkpoint model) => ExportOnnx(model, onnxFolder, logger);

    /// <summary>The same, without a broker connection (at start-up).</summary>
    public static void ExportOnnx(Checkpoint model, string? folder, ILogger logger)
    {
        if (string.IsNullOrWhiteSpace(folder)) return;
        var path = Path.Combine(folder, FormattableString.Invariant($"model-v{model.Version}.onnx"));
        try
        {
            Directory.CreateDirectory(folder);
            var result = OnnxExporter.ExportToFile(model, path);
            logger.LogInformation("aggregator: exported model {Version} to {Path} ({Hash}).", model.Version, path, result.Metadata[OnnxExporter.Keys.ParametersSha256]);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidOperationException or ArgumentException)
        {
            logger.LogError(e, "aggregator: could not export model {Version} to {Path}.", model.Version, path);
        }
    }
}
