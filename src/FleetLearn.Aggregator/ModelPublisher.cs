using FleetLearn.Core.Model;
using FleetLearn.Onnx;
using FleetLearn.Transport.Mqtt;
using Microsoft.Extensions.Logging;

namespace FleetLearn.Aggregator;

/// <summary>Publishes global models (retained, chunked, once per version; superseded ones cleared) and exports each as ONNX.</summary>
internal sealed class ModelPublisher(MqttConnection mqtt, AggregatorStatus status, string? onnxFolder, ILogger logger)
{
    private readonly Dictionary<long, int> _published = [];

    /// <summary>Publishes <paramref name="model"/> unless already published; clears versions older than the previous one.</summary>
    public async Task PublishAsync(Checkpoint model, byte[] modelBytes, CancellationToken cancellationToken)
    {
        var topics = mqtt.Topics;
        if (_published.ContainsKey(model.Version)) return;
        var chunks = ChunkCodec.Split(modelBytes, mqtt.Options.MaxPacketSize);
        for (int i = 0; i < chunks.Count; i++)
        {
            await mqtt.PublishReliablyAsync(topics.ModelChunk(model.Version, i), chunks[i], retain: true, cancellationToken: cancellationToken).ConfigureAwait(false);
            status.Sent(chunks[i].Length);
        }
        _published[model.Version] = chunks.Count;
        foreach (var (old, count) in _published.Where(p => p.Key < model.Version - 1).ToList())
        {
            for (int i = 0; i < count; i++)
                await mqtt.PublishReliablyAsync(topics.ModelChunk(old, i), ReadOnlyMemory<byte>.Empty, retain: true, cancellationToken: cancellationToken).ConfigureAwait(false);
            _published.Remove(old);
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
